"""The lru_insert probe (raw_tp mm_lru_insertion, R12) on the running kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.replay import replay
from chargetrace.traces import read_trace

from .conftest import record

pytestmark = pytest.mark.live

N = 2048


def test_lru_insertions_carry_the_scope_memcg_and_r12_checks_them(tmp_path: Path, workload: Path) -> None:
    run = record(tmp_path, "--", str(workload), str(N))
    assert run.returncode == 0, run.stderr
    t = read_trace(run.trace)
    probe = next(p for p in t.meta.probes if p["event"] == "lru_insert")
    assert probe["probe"] == "raw_tp:mm_lru_insertion" and probe["kind"] == "lru_insert", probe
    df = t.table.to_pandas()
    lru = df[df.kind == "lru_insert"]
    # Every anonymous page of the buffer goes on an LRU once it leaves the per-CPU batch, charged
    # to the workload's memcg (the charge comes first in the fault path).
    ours = lru[lru.memcg == t.meta.scope.memcg]
    assert len(ours) >= N // 2, (len(ours), lru.memcg.value_counts().head().to_dict())
    assert (ours.folio != 0).all()
    report = replay(t)
    row = next(r for r in report.rules if r.rule == "R12")
    assert row.checked == len(lru) and row.violations == 0
