"""One trace replayed in folio buckets (replay/fleet_partition.py) gives the whole
replay's verdict, findings (rule, seq, folio, memcg, kind, inconclusive), ledger
rows, held rows, coverage and per-driver figures: every shipped trace, mutated traces, and
hypothesis-generated event streams with transfers, device frees, splits,
migrate windows, counters and samples, each in 2, 3 and 7 buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MEMCG, PID, meta_for, rows_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import write_rows

from chargetrace.replay import replay
from chargetrace.replay.fleet_partition import plan_buckets, replay_partitioned
from chargetrace.replay.mutate import FAULTS, Mutation, eligible_events, mutate
from chargetrace.traces import Trace, read_trace, write_table

TRACES = Path(__file__).resolve().parent.parent / "traces"
SHIPPED = sorted(TRACES.glob("*.parquet")) + sorted((TRACES / "bugs").glob("*.parquet"))
BUCKETS = (2, 3, 7)


def outcome(report) -> dict:
    def f(findings):
        # The report orders findings by (seq, rule); among end-of-trace findings of one rule
        # (R4, R10: one per folio or memcg at the last seq) the order is the model's dict order.
        return sorted((x.rule, x.seq, x.folio, x.memcg, x.kind, x.inconclusive) for x in findings)

    return {"verdict": report.verdict, "violations": f(report.violations), "inconclusive": f(report.inconclusive),
            "candidates": f(report.candidates), "memcgs": [vars(m) for m in report.memcgs],
            "held": [vars(h) for h in report.held], "rules": [vars(r) for r in report.rules],
            "kinds": report.kinds, "events": report.events, "notes": sorted(report.notes),
            "drivers": [d.to_dict() for d in report.drivers]}


def assert_same(trace: Trace, buckets=BUCKETS) -> dict:
    whole = outcome(replay(trace))
    for k in buckets:
        parted = outcome(replay_partitioned(trace, k))
        for name in whole:
            assert parted[name] == whole[name], f"{trace.path} in {k} buckets: {name} differs"
    return whole


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_trace_partitioned_is_identical(path):
    whole = assert_same(read_trace(path))
    assert whole["events"] > 0


def _mutated(tmp_path: Path, source: Path, fault: str, n: int) -> Trace | None:
    trace = read_trace(source)
    if len(eligible_events(trace, fault)) < n:
        return None
    table, meta = mutate(trace, [Mutation(fault, n)])
    out = tmp_path / f"{source.stem}-{fault}-{n}.parquet"
    write_table(table, out, meta)
    return read_trace(out)


@pytest.mark.parametrize("source", ["synthetic-hmm-lifecycle-6.7.parquet", "synthetic-hmm-lifecycle-5.18-6.6.parquet",
                                    "workload-6.1-limit-migrate.parquet"])
@pytest.mark.parametrize("fault", FAULTS)
def test_mutated_trace_partitioned_is_identical(tmp_path, source, fault):
    positions = (1, 7) if source.startswith("synthetic") else (3,)
    verdicts = set()
    for n in positions:
        trace = _mutated(tmp_path, TRACES / source, fault, n)
        if trace is None:
            continue
        verdicts.add(assert_same(trace)["verdict"])
    assert not verdicts or verdicts != {"balanced"}, "a mutation the replay does not notice proves nothing here"


def test_transfers_never_cross_buckets():
    trace = read_trace(TRACES / "workload-6.1-limit-migrate.parquet")
    plan = plan_buckets(trace.table, 7)
    kinds = trace.table.column("kind").to_pylist()
    folios = trace.table.column("folio").to_pylist()
    news = trace.table.column("folio_new").to_pylist()
    owner: dict[int, int] = {}
    for b, rows in enumerate(plan.rows):
        for r in rows.tolist():
            if kinds[r] in ("charge", "uncharge", "transfer", "lru_insert", "device_free"):
                for f in (folios[r], news[r]):
                    if f:
                        assert owner.setdefault(f, b) == b, f"folio {f} in buckets {owner[f]} and {b}"
    assert len(set(owner.values())) == 7 and plan.components > 0


# -- generated streams ------------------------------------------------------------------

FOLIOS = [0x1000 * i for i in range(1, 9)]
DEVICE = [0xD000 + 0x1000 * i for i in range(3)]
TIDS = [PID, PID + 1]
OTHER = MEMCG + 1


def _event(draw) -> list[tuple[str, dict]]:
    tid = draw(st.sampled_from(TIDS))
    folio = draw(st.sampled_from(FOLIOS + DEVICE))
    other = draw(st.sampled_from(FOLIOS + DEVICE))
    memcg = draw(st.sampled_from([MEMCG, MEMCG, OTHER, 0]))
    nr = draw(st.sampled_from([1, 1, 4]))
    kind = draw(st.sampled_from(["charge", "uncharge", "uncharge", "transfer", "replace", "device_free", "split",
                                 "lru_insert", "window", "fault_window", "stat", "usage", "fork", "exit", "fault",
                                 "lost", "page_migration"]))
    base = {"tid": tid, "pid": PID}
    if kind == "charge":
        ret = draw(st.sampled_from([0, 0, 0, -12]))
        return [(kind, {**base, "folio": folio, "memcg": memcg if ret == 0 else 0, "nr_pages": nr, "ret": ret})]
    if kind in ("uncharge", "lru_insert"):
        return [(kind, {**base, "folio": folio, "memcg": memcg, "nr_pages": nr})]
    if kind in ("transfer", "replace"):
        return [(kind, {**base, "folio": folio, "folio_new": other, "memcg": memcg,
                        "memcg_new": draw(st.sampled_from([memcg, memcg, OTHER, 0])), "nr_pages": nr})]
    if kind == "device_free":
        free = ("device_free", {**base, "folio": folio, "memcg": memcg, "nr_pages": 1, "value": 0})
        if draw(st.booleans()):
            return [free, ("uncharge", {**base, "folio": folio, "memcg": memcg, "nr_pages": 1})]
        return [free]
    if kind == "split":
        return [("split", {**base, "folio": folio, "memcg": memcg, "nr_pages": 4, "value": 1})]
    if kind == "window":
        inner = [("transfer", {**base, "folio": f, "folio_new": o, "memcg": memcg, "memcg_new": memcg,
                               "nr_pages": 1}) for f, o in draw(st.lists(st.tuples(st.sampled_from(FOLIOS),
                                                                                   st.sampled_from(DEVICE)),
                                                                         max_size=3))]
        moved = draw(st.sampled_from([len(inner), len(inner), len(inner) + 1, -1]))
        return [("migrate_setup", {**base, "item": "migrate_vma_setup"}), *inner,
                ("migrate_pages", {**base, "item": "migrate_vma_pages", "value": moved}),
                ("migrate_finalize", {**base, "item": "migrate_vma_finalize"})]
    if kind == "fault_window":
        return [("device_fault", {**base, "folio": folio}),
                ("charge", {**base, "folio": other, "memcg": 0, "nr_pages": 1, "ret": draw(st.sampled_from([0, -12]))}),
                ("device_fault_done", {**base, "ret": draw(st.sampled_from([0, 1]))})]
    if kind == "stat":
        return [("memcg_stat", {**base, "memcg": draw(st.sampled_from([MEMCG, OTHER])),
                                "item": draw(st.sampled_from(["PGPGIN", "PGPGOUT", "NR_ANON_MAPPED"])),
                                "value": draw(st.sampled_from([1, -1, 4]))})]
    if kind == "usage":
        rows = [("usage", {**base, "memcg": m, "item": "memory.usage_in_bytes",
                           "value": 4096 * draw(st.integers(0, 20))}) for m in (MEMCG, OTHER)]
        return rows + [("memstat", {**base, "memcg": MEMCG, "item": "cache", "value": 4096 * draw(st.integers(0, 4))})]
    if kind == "fork":
        return [("fork", {**base, "value": PID + 7})]
    if kind == "exit":
        return [("exit", {**base, "value": 1})]
    if kind == "lost":  # findings over its window become inconclusive
        return [("lost", {**base, "value": 2, "span_ns": 2500})]
    if kind == "page_migration":
        return [("page_migration", {**base, "item": "compaction", "value": 1})]
    return [("fault", {**base, "addr": 0x7000})]


_COUNTER = iter(range(1 << 30))


@st.composite
def streams(draw):
    events = []
    for _ in range(draw(st.integers(1, 40))):
        events.extend(_event(draw))
    return events


@settings(max_examples=int(__import__("os").environ.get("FLEET_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(events=streams(), era=st.sampled_from(["transfer", "force"]), closed=st.booleans())
def test_generated_streams_partitioned_are_identical(tmp_path, events, era, closed):
    path = tmp_path / f"gen-{next(_COUNTER)}.parquet"
    meta = meta_for(era, closed=closed, probes=None)
    meta.scope.memcgs = [{"memcg": MEMCG, "parent": 0, "path": "/a", "created_in_scope": True},
                         {"memcg": OTHER, "parent": MEMCG, "path": "/a/b", "created_in_scope": True}]
    write_rows(rows_of(*events), path, meta)
    assert_same(read_trace(path))
