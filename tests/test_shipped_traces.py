"""The traces shipped in traces/: every one replays balanced, and the real
hmm-tests recordings prove the rules were exercised and that injected faults
in them are caught by the rule the mutation names."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.replay import ReplayConfig, replay
from chargetrace.replay.mutate import Mutation, mutate
from chargetrace.traces import read_trace, write_table

TRACES = Path(__file__).resolve().parent.parent / "traces"
SHIPPED = sorted(TRACES.glob("*.parquet"))
HMM = [p for p in SHIPPED if p.name.startswith("hmm-tests-")]

#: Rules a traced hmm-tests run exercises on every era (docs/rules.md).
EXERCISED = ("R1", "R3", "R3.usage", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11")


#: Golden coverage: the rules that must have checked something of substance in each shipped trace.
_DEVICE = {"R1", "R3", "R3.usage", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11"}
GOLDEN_SUBSTANCE = {
    # hmm-tests' anon_write_huge charges and frees a 512-page anon THP (R15) on every era
    "hmm-tests-6.1.parquet": _DEVICE | {"R15"},
    # re-recorded with the pagemap:mm_lru_insertion probe: R12 checked on a clean transfer-era kernel
    "hmm-tests-6.12.parquet": _DEVICE | {"R12", "R15"},
    # 5.10 lab: the <= 5.17 era (refcount-1 frees, R7), and LRU insertions probed (R12)
    "hmm-tests-5.10.parquet": _DEVICE | {"R12", "R15"},
    # 7.2 lab: device-private THPs (R15 on 512-page device folios), LRU insertions probed (R12)
    "hmm-tests-7.2.parquet": _DEVICE | {"R12", "R15"},
    "synthetic-hmm-lifecycle-5.18-6.6.parquet": _DEVICE - {"R11"} | {"R3.pgpg", "R13.anon"},
    "synthetic-hmm-lifecycle-6.7.parquet": _DEVICE - {"R11"} | {"R3.pgpg", "R13.anon"},
    # 6.18, cgroup v1, memcg tracepoints only (no kprobes under lockdown)
    "workload-6.18-counters.parquet": {"R3.pgpg", "R13.anon"},
    # 6.1 lab, lab/workloads/limit_migrate.c under a memory.max below the working set: a real
    # failed charge (R2), migrations back to RAM over the limit (R8), LRU insertions (R12).
    "workload-6.1-limit-migrate.parquet": _DEVICE - {"R9", "R11"} | {"R2", "R12"},
}


def test_every_shipped_trace_has_golden_coverage():
    assert {p.name for p in SHIPPED} == set(GOLDEN_SUBSTANCE)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_trace_is_balanced_and_says_what_it_is(path):
    trace = read_trace(path)
    assert trace.meta.synthetic == ("synthetic" in path.name)
    if not trace.meta.synthetic:
        assert trace.meta.kernel_release and trace.meta.provenance
    report = replay(trace)
    assert report.verdict == "balanced", [f.message for f in report.violations[:5]]
    assert report.lost_events == 0
    coverage = report.to_json()["coverage"]
    assert coverage["of_substance"]
    assert {rule for rule, c in coverage["rules"].items() if c["substance"]} == GOLDEN_SUBSTANCE[path.name]


def test_counters_trace_is_judged_in_folio_events():
    """workload-6.18-counters: 2,048 order-0 pages plus startup charges, recorded on
    cgroup v1: PGPGIN/PGPGOUT are folio events and balance; anon pages net to 0; the
    drained memcg's usage is 0 pages, as its counters say."""
    report = replay(read_trace(TRACES / "workload-6.18-counters.parquet"))
    (row,) = report.memcgs
    assert (row.pgpgin, row.pgpgout, row.split_extra, row.anon_mapped) == (2076, 2076, 0, 0)
    assert (row.kernel_pages, row.model_pages, row.reconcile) == (0, 0, "ok")
    rules = report.coverage()["rules"]
    assert rules["R3.pgpg"]["substance"] == 2149 and rules["R13.anon"]["pages"] == 4150
    assert not rules["R1"]["applies"] and report.held == [] and report.notes == []


@pytest.mark.parametrize("path", HMM, ids=lambda p: p.name)
def test_real_hmm_trace_exercises_the_rules(path):
    trace = read_trace(path)
    assert trace.meta.anonymized  # no kernel pointers in a shared trace
    checked = {r.rule: r.checked for r in replay(trace).rules}
    assert all(checked[rule] > 0 for rule in EXERCISED), checked


@pytest.mark.parametrize("path", HMM, ids=lambda p: p.name)
def test_real_hmm_trace_under_the_wrong_era_disagrees(path):
    trace = read_trace(path)
    wrong = "6.7+" if trace.meta.era.migrate == "force" else "5.18-6.6"
    report = replay(trace, ReplayConfig(era=wrong))
    assert "R4" in {f.rule for f in report.violations}


FAULTS = {
    "drop-device-free-uncharge": {"R6"},
    "duplicate-uncharge": {"R3", "R6"},
    "skip-transfer": {"R4"},
    "double-charge": {"R1"},
    # A recording with the probes' in-kernel ledger (schema 2, e.g. hmm-tests-6.12) catches a removed
    # row as L1 even where R10 cannot tell a 1-page leak from the page cache the memcg keeps.
    "drop-uncharge": {"R1", "R4", "R10", "L1"},
}


@pytest.mark.parametrize("path", HMM, ids=lambda p: p.name)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faults_injected_in_a_real_trace_are_caught(tmp_path, path, fault):
    from chargetrace.replay.mutate import eligible_events

    trace = read_trace(path)
    eligible = len(eligible_events(trace, fault)[0])
    assert eligible > 0
    # Three positions on each trace; one (the middle) on a trace of a million rows or more, whose
    # every replay costs 30-90 s on CI's two cores (the 7.2 recording: 1.3 M rows).
    positions = (1, eligible // 2, eligible) if trace.num_events < 1_000_000 else (max(1, eligible // 2),)
    for n in positions:
        table, meta = mutate(trace, [Mutation(fault, n)])
        out = tmp_path / f"{fault}-{n}.parquet"
        write_table(table, out, meta)
        report = replay(read_trace(out))
        assert report.verdict == "violations"
        assert {f.rule for f in report.violations} & FAULTS[fault], [f.message for f in report.violations]


def test_dropped_pgpgout_in_the_counters_trace_is_caught(tmp_path):
    trace = read_trace(TRACES / "workload-6.18-counters.parquet")
    table, meta = mutate(trace, [Mutation("drop-uncharge", 5)])
    write_table(table, tmp_path / "m.parquet", meta)
    report = replay(read_trace(tmp_path / "m.parquet"))
    assert [f.rule for f in report.violations] == ["R3.pgpg"]
    assert "31 folio(s) left charged" in report.violations[0].message
