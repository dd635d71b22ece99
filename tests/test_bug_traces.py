"""The shipped recordings of kernel bug variants (traces/bugs/, lab/bugs.py): each replays to a
violation of the rule its variant is expected to trip, naming folio, memcg and seq; the clean
recordings of the same kernels stay balanced (tests/test_shipped_traces.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.lab.bugs import VARIANTS
from chargetrace.replay import replay
from chargetrace.traces import read_trace

BUGS = sorted((Path(__file__).resolve().parent.parent / "traces" / "bugs").glob("*.parquet"))


def test_there_are_shipped_bug_traces() -> None:
    assert len(BUGS) >= 2, BUGS


@pytest.mark.parametrize("path", BUGS, ids=lambda p: p.name)
def test_bug_trace_replays_to_its_rule(path: Path) -> None:
    trace = read_trace(path)
    assert trace.meta.anonymized and not trace.meta.synthetic and trace.meta.drops["total"] == 0
    prov = trace.meta.provenance["bug_variant"]
    v = VARIANTS[prov["name"]]
    assert prov["expected_rule"] == v.rule and trace.meta.kernel_release.startswith(v.series + ".")
    report = replay(trace)
    assert report.verdict == "violations" and report.lost_events == 0
    hits = [f for f in report.violations if f.rule == v.rule]
    assert hits, {f.rule for f in report.violations}
    first = hits[0]
    assert first.folio != 0 and first.memcg == trace.meta.scope.memcg and first.seq > 0
