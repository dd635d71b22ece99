"""Probe runs the kernel skipped (``drops.missed``, the BPF recursion guard) make the verdict
honest: the events they would have written are missing at unknown places, so a finding is
inconclusive, not a violation, and nothing is called balanced when a folio probe missed runs.

Found on a real recording: thp_churn on the 7.2 lab kernel (docs/lab.md, "thp_churn on 7.2")
reported 1,024 R4 findings ("migration into a destination still charged") while the kernel had
skipped 3,072 runs of the transfer probe (kretprobe:mem_cgroup_migrate); the transfers that
moved those pages' charges away were among them. Counter-probe misses touch only the counter rules.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chargetrace.replay import replay  # noqa: E402
from chargetrace.replay.compiled import replay_compiled  # noqa: E402
from chargetrace.replay.engine import missed_windows  # noqa: E402
from chargetrace.replay.mutate import Mutation, mutate  # noqa: E402
from chargetrace.traces import read_trace, write_table  # noqa: E402

SYNTHETIC = ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet"
RECORDED = ROOT / "traces" / "hmm-tests-6.12.parquet"
#: A recording without the in-kernel ledger (schema 1): no L1, so a forged row is judged by the
#: folio rules alone (with a ledger, L1 catches it whatever runs were skipped: the skipped run
#: wrote neither the row nor the ledger).
NO_LEDGER = ROOT / "traces" / "hmm-tests-6.1.parquet"


def _probe_of(meta, kind: str) -> str:
    return next(p["probe"] for p in meta.probes if p.get("kind") == kind)


def _with_missed(tmp_path: Path, source: Path, missed_kind: str, faults=()) -> Path:
    trace = read_trace(source)
    table, meta = mutate(trace, list(faults)) if faults else (trace.table, trace.meta)
    probe = _probe_of(trace.meta, missed_kind) if trace.meta.probes else f"kprobe:{missed_kind}"
    probes = meta.probes or [{"event": missed_kind, "probe": probe, "kind": missed_kind, "how": "kprobe"}]
    drops = dict(meta.drops or {})
    drops["missed"] = {probe: 3}
    out = tmp_path / f"{source.stem}-missed-{missed_kind}.parquet"
    write_table(table, out, dataclasses.replace(meta, drops=drops, probes=probes))
    return out


def _both(path: Path):
    """The reference engine's report, after checking the compiled engine gives the same."""
    report = replay(read_trace(path))
    assert replay_compiled(path).to_json() == report.to_json()
    return report


def test_a_missed_transfer_probe_turns_violations_inconclusive(tmp_path) -> None:
    trace = read_trace(NO_LEDGER)
    assert not trace.meta.ledger
    table, meta = mutate(trace, [Mutation("double-charge", 1)])
    write_table(table, tmp_path / "plain.parquet", meta)
    assert _both(tmp_path / "plain.parquet").verdict == "violations"  # without skipped runs: R1
    path = _with_missed(tmp_path, NO_LEDGER, "transfer", [Mutation("double-charge", 1)])
    report = _both(path)
    assert report.verdict == "inconclusive"
    assert not report.violations and report.inconclusive
    assert any("skipped 3 run(s)" in n and "BPF recursion guard" in n for n in report.notes)


def test_a_forged_row_stays_a_violation_where_the_ledger_sees_it(tmp_path) -> None:
    path = _with_missed(tmp_path, RECORDED, "transfer", [Mutation("double-charge", 1)])
    report = _both(path)
    assert report.verdict == "violations" and {f.rule for f in report.violations} == {"L1"}


def test_nothing_is_balanced_when_a_folio_probe_missed_runs(tmp_path) -> None:
    report = _both(_with_missed(tmp_path, RECORDED, "uncharge"))
    assert report.verdict == "inconclusive" and report.lost_events == 3


def test_counter_probe_misses_leave_the_balance_provable(tmp_path) -> None:
    trace = read_trace(RECORDED)
    meta = dataclasses.replace(trace.meta, drops={**(trace.meta.drops or {}),
                                                  "missed": {"tp:memcg:mod_memcg_state": 5}},
                               probes=[*trace.meta.probes, {"event": "memcg_state", "probe": "tp:memcg:mod_memcg_state",
                                                             "kind": "memcg_stat", "how": "tracepoint"}])
    out = tmp_path / "counters-missed.parquet"
    write_table(trace.table, out, meta)
    report = _both(out)
    assert report.verdict == "balanced" and report.lost_events == 0
    assert any("mod_memcg_state" in n for n in report.notes)
    (window,) = missed_windows(meta)
    assert window.rules is not None and "R3.pgpg" in window.rules and "R4" not in window.rules
    assert not window.hides_folios and "L1" not in window.rules  # the ledger skips with the stream


@pytest.mark.parametrize("missed", [None, {}, {"kprobe:x": 0}])
def test_no_skipped_runs_no_window(missed) -> None:
    meta = read_trace(SYNTHETIC).meta
    drops = {**(meta.drops or {})}
    if missed is not None:
        drops["missed"] = missed
    assert missed_windows(dataclasses.replace(meta, drops=drops)) == []
