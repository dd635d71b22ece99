"""Shared helpers for the pure tests: build small traces row by row and replay them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/synthetic.py

from chargetrace.replay import ReplayConfig, replay  # noqa: E402
from chargetrace.traces import Era, Scope, TraceMeta, read_trace  # noqa: E402
from synthetic import write_rows  # noqa: E402

MEMCG = 77
PID = 500


def rows_of(*events: tuple[str, dict]) -> list[dict]:
    """Rows with increasing ts and sensible defaults (one process, one memcg)."""
    rows = []
    for i, (kind, fields) in enumerate(events):
        row = {"ts_ns": 1000 * (i + 1), "pid": PID, "tid": PID, "comm": "t", "kind": kind}
        row.update(fields)
        rows.append(row)
    return rows


def meta_for(era: str = "transfer", refcount: int = 0, *, fresh: bool = False, closed: bool = False,
             probes: list[dict] | None = None, ncpus: int = 2) -> TraceMeta:
    return TraceMeta(
        recorder="tests",
        synthetic=True,
        era=Era(era, refcount, "tests"),
        scope=Scope(kind="command", memcg=MEMCG, fresh=fresh or closed, exited=closed,
                    settled="test" if closed else ""),
        probes=probes or [],
        ncpus=ncpus,
    )


@pytest.fixture
def replay_rows(tmp_path):
    """replay_rows(rows, meta=None, era=None) -> Report."""
    counter = iter(range(10_000))

    def run(rows, meta=None, era=None):
        path = tmp_path / f"t{next(counter)}.parquet"
        write_rows(rows, path, meta or meta_for())
        return replay(read_trace(path), ReplayConfig(era=era))

    return run


def rules_of(report) -> list[str]:
    return [f.rule for f in report.violations]
