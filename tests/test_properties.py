"""Property tests over generated event streams (tests/synthetic.py).

A clean lifecycle never violates; every injected fault is caught by a rule
the mutation names; a lost event never turns into a violation.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargetrace.replay import ReplayConfig, replay
from chargetrace.replay.mutate import FAULTS, Mutation, mutate
from chargetrace.traces import Trace, read_trace, write_table
from synthetic import SyntheticKernel, synthetic_meta, write_rows

ERAS = ["6.7+", "5.18-6.6", "4.14-5.17"]
MEMCG = 4242

ops = st.lists(
    st.one_of(
        st.tuples(st.just("fault_in"), st.integers(1, 12)),
        st.tuples(st.just("to_device"), st.integers(0, 10), st.integers(0, 3)),
        st.tuples(st.just("fault_back"), st.integers(1, 6)),
        st.tuples(st.just("unmap"), st.integers(1, 6)),
        st.tuples(st.just("fork"), st.just(0)),
        st.tuples(st.just("usage"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


def simulate(era: str, seed: int, program) -> SyntheticKernel:
    sim = SyntheticKernel(era, seed=seed)
    procs = [sim.spawn(1000, MEMCG)]
    sim.sample_usage(MEMCG)
    for op, a, *rest in program:
        proc = procs[seed % len(procs)]
        if op == "fault_in":
            sim.fault_in(proc, a)
        elif op == "to_device":
            sim.migrate_to_device(proc, a, holes=rest[0])
        elif op == "fault_back":
            for _ in range(a):
                sim.fault_back(proc)
        elif op == "unmap":
            sim.unmap(proc, a)
        elif op == "fork" and len(procs) < 3:
            procs.append(sim.fork(proc, 1000 + len(procs)))
        elif op == "usage":
            sim.sample_usage(MEMCG)
    for proc in procs:
        sim.exit(proc)
    sim.sample_usage(MEMCG)
    return sim


def trace_of(sim: SyntheticKernel, era: str, tmp_path) -> Trace:
    path = tmp_path / f"synthetic-{len(list(tmp_path.iterdir()))}.parquet"
    write_rows(sim.rows, path, synthetic_meta(era, MEMCG))
    return read_trace(path)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(era=st.sampled_from(ERAS), seed=st.integers(0, 10_000), program=ops)
def test_clean_lifecycle_is_balanced(tmp_path, era, seed, program):
    report = replay(trace_of(simulate(era, seed, program), era, tmp_path))
    assert report.violations == [] and report.inconclusive == [], [f.message for f in report.violations]
    # a program that charged nothing (e.g. only a fork) checks nothing of substance
    charged = any(r["kind"] == "charge" for r in simulate(era, seed, program).rows)
    assert report.verdict == ("balanced" if charged or report.of_substance else "unchecked")
    assert report.of_substance or not charged
    assert all(m.live == 0 for m in report.memcgs)


@SETTINGS
@given(era=st.sampled_from(ERAS), seed=st.integers(0, 10_000), program=ops,
       fault=st.sampled_from(FAULTS), pick=st.integers(0, 10_000))
def test_every_injected_fault_is_caught_by_the_named_rule(tmp_path, era, seed, program, fault, pick):
    trace = trace_of(simulate(era, seed, program), era, tmp_path)
    from chargetrace.replay.mutate import eligible_events

    hits, _ = eligible_events(trace, fault)
    if not hits:
        return
    table, meta = mutate(trace, [Mutation(fault, 1 + pick % len(hits))])
    out = tmp_path / "mutated.parquet"
    write_table(table, out, meta)
    report = replay(read_trace(out), ReplayConfig())
    expect = meta.mutations[-1]["expect"]
    if fault == "lose-charge":
        assert report.violations == [], [f.message for f in report.violations]
    else:
        rules = {f.rule for f in report.violations}
        assert rules & set(expect.replace(",", " ").replace(" or ", " ").split()), (expect, rules)
        assert report.exit_code == 1


def test_wrong_era_profile_disagrees(tmp_path):
    for era, wrong in (("6.7+", "5.18-6.6"), ("5.18-6.6", "6.7+")):
        trace = trace_of(simulate(era, 1, [("fault_in", 8), ("to_device", 6, 0), ("fault_back", 3)]), era, tmp_path)
        assert replay(trace).verdict == "balanced"
        wrong_report = replay(trace, ReplayConfig(era=wrong))
        assert "R4" in {f.rule for f in wrong_report.violations}
