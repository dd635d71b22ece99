"""Differential test: the compiled engine (replay/compiled/) and the reference
model (replay/model.py + replay/rules/) give the same report.

Same verdict, the same findings (rule, seq, folio, memcg, kind, inconclusive,
message, related seqs) in the same order, the same coverage per rule, the same
per-memcg ledger and held rows, the same per-driver figures (replay/drivers.py)
— the whole ``--json`` report — on every shipped trace, on shipped recordings
given drivers (schema 3, ``pgmap_ops`` on their device rows), on every
mutation kind at its first, middle and last eligible event, and on
hypothesis-generated streams of every kind with random metadata (scope, probes
attached, ledger, era, drivers), faults and all.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba", reason="the compiled engine needs numba (pip install numba)")

from chargetrace.replay import ReplayConfig, replay  # noqa: E402
from chargetrace.replay.compiled import Unsupported, replay_compiled  # noqa: E402
from chargetrace.replay.mutate import FAULTS, Mutation, eligible_events, mutate  # noqa: E402
from chargetrace.traces import Era, Scope, TraceMeta, read_trace, write_table  # noqa: E402
from synthetic import write_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "traces").glob("*.parquet")) + sorted((ROOT / "traces" / "bugs").glob("*.parquet")) \
    + sorted((ROOT / "tests" / "corpus").rglob("*.parquet"))


def _key(f) -> tuple:
    return (f.rule, f.seq, f.folio, f.memcg, f.kind, f.inconclusive, f.message, f.related_seqs, f.since_ts_ns)


def assert_same(compiled, reference) -> None:
    assert compiled.verdict == reference.verdict
    for name in ("violations", "inconclusive", "candidates"):
        assert [_key(f) for f in getattr(compiled, name)] == [_key(f) for f in getattr(reference, name)], name
    assert [vars(m) for m in compiled.memcgs] == [vars(m) for m in reference.memcgs]
    assert [vars(r) for r in compiled.rules] == [vars(r) for r in reference.rules]
    assert [d.to_dict() for d in compiled.drivers] == [d.to_dict() for d in reference.drivers], "drivers"
    assert compiled.to_json() == reference.to_json()


def both(path: Path, config: ReplayConfig | None = None):
    compiled = replay_compiled(path, config)
    assert_same(compiled, replay(read_trace(path), config))
    return compiled


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_traces_same_report(path):
    both(path)


@pytest.mark.parametrize("era", ["4.14-5.17", "5.18-6.6", "6.7+"])
def test_shipped_trace_same_report_under_every_era(era):
    both(ROOT / "traces" / "workload-6.1-limit-migrate.parquet", ReplayConfig(era=era))
    both(ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet", ReplayConfig(era=era))
    # device-private THPs (R15, splits); a force-charge profile disagrees with this recording
    both(ROOT / "traces" / "hmm-tests-7.2.parquet", ReplayConfig(era=era))


#: pgmap_ops ids the tests below give device rows; only DM is named in the metadata.
DM, NV = 0x11, 0x22
PGMAPS = [{"id": DM, "symbol": "dmirror_devmem_ops", "module": "test_hmm", "driver": "test_hmm (dmirror)"}]


def _with_drivers(source: Path, out: Path) -> Path:
    """``source`` (a recording of schema 1 or 2: no pgmap_ops) as a schema-3 trace whose
    device rows name drivers, assigned here, not recorded: a device free names DM or NV by
    its folio, or none (every fifth free: its folio's other frees, or nothing, attribute it);
    a device fault (and its done row) names DM or NV by its thread, or none. Both engines
    must then attribute the same pages to the same drivers."""
    trace = read_trace(source)
    table = trace.table
    kind = np.array(table.column("kind").cast(pa.string()).to_pylist(), dtype=object)
    folio, tid, seq = (table.column(c).to_numpy() for c in ("folio", "tid", "seq"))
    ops = np.zeros(table.num_rows, np.uint64)
    frees = kind == "device_free"
    ops[frees] = np.where(folio[frees] % 2 == 0, DM, NV).astype(np.uint64)
    ops[frees & (seq % 5 == 0)] = 0
    faults = (kind == "device_fault") | (kind == "device_fault_done")
    ops[faults] = np.where(tid[faults] % 3 == 0, 0, np.where(tid[faults] % 3 == 1, DM, NV)).astype(np.uint64)
    at = table.schema.get_field_index("pgmap_ops")
    table = table.set_column(at, table.schema.field(at), pa.array(ops, pa.uint64()))
    write_table(table, out, dataclasses.replace(trace.meta, schema_version=3, pgmaps=PGMAPS))
    return out


@pytest.mark.parametrize("name", ["hmm-tests-6.12.parquet", "bugs/hmm-tests-6.1-device-free-no-uncharge.parquet"])
def test_shipped_recording_with_drivers_same_report(tmp_path, name):
    report = both(_with_drivers(ROOT / "traces" / name, tmp_path / "drivers.parquet"))
    by = {d.pgmap: d for d in report.drivers}
    assert {0, DM, NV} <= set(by), by  # named, unnamed, unattributed: each a row
    assert all(by[i].device_faults and by[i].migrated_to_device and by[i].freed for i in (DM, NV))
    assert sum(d.migrated_from_device for d in report.drivers) > 0


#: The smallest shipped traces on which each fault has eligible events.
MUTATED = [ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet",
           ROOT / "traces" / "synthetic-hmm-lifecycle-5.18-6.6.parquet",
           ROOT / "traces" / "workload-6.18-counters.parquet"]


@pytest.mark.parametrize("fault", FAULTS)
def test_every_mutation_same_report(tmp_path, fault):
    hit = 0
    for path in MUTATED:
        trace = read_trace(path)
        eligible = len(eligible_events(trace, fault)[0])
        if not eligible:
            continue  # e.g. no device free in the counters-only trace
        for n in sorted({1, (eligible + 1) // 2, eligible} - {0}):
            table, meta = mutate(trace, [Mutation(fault, n)])
            out = tmp_path / f"{path.stem}-{fault}-{n}.parquet"
            write_table(table, out, meta)
            both(out)
            hit += 1
    assert hit >= 3, f"{fault}: fewer than three positions on the shipped traces"


def test_a_mutated_trace_really_differs(tmp_path):
    """The comparison can fail: a fault changes what both engines report."""
    path = ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet"
    table, meta = mutate(read_trace(path), [Mutation("double-charge", 1)])
    write_table(table, tmp_path / "m.parquet", meta)
    mutated, clean = replay_compiled(tmp_path / "m.parquet"), replay_compiled(path)
    assert mutated.verdict == "violations" and clean.verdict == "balanced"
    with pytest.raises(AssertionError):
        assert_same(mutated, clean)


def test_multi_segment_directory(tmp_path):
    trace = read_trace(ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet")
    seg = tmp_path / "t"
    seg.mkdir()
    half = trace.num_events // 2
    write_table(trace.table.slice(0, half), seg / "seg-000000.parquet", trace.meta)
    write_table(trace.table.slice(half), seg / "seg-000001.parquet", trace.meta)
    both(seg)


# -- generated streams: every kind, odd values, random metadata -------------------------------------
M, CHILD, OTHER = 4242, 4343, 77
ITEMS = {
    "memcg_stat": ["PGPGIN", "PGPGOUT", "NR_ANON_MAPPED", "NR_FILE_PAGES", "NR_SHMEM", "MEMCG_KMEM", "MEMCG_SOCK"],
    "usage": ["memory.current", "memory.usage_in_bytes", "memory.kmem.usage_in_bytes", "memory.stat:kernel"],
    "memstat": ["anon", "file", "shmem", "kernel", "rss", "cache", "total_rss", "total_cache", "kmem.usage"],
    "migrate_setup": ["migrate_vma_setup"], "migrate_pages": ["migrate_vma_pages", ""],
    "migrate_finalize": ["migrate_vma_finalize"], "page_migration": ["compaction"],
}
KINDS = ["fault", "device_fault", "device_fault_done", "migrate_setup", "migrate_pages", "migrate_finalize",
         "page_migration", "charge", "uncharge", "transfer", "replace", "device_free", "split", "memcg_stat",
         "usage", "lru_insert", "memstat", "fork", "exit", "lost"]
# Weighted toward the folio kinds, where the model's state lives.
kind_st = st.sampled_from(KINDS + ["charge", "uncharge", "transfer", "device_free"] * 3 + ["uncharge"] * 2)
row_st = st.tuples(
    kind_st, st.integers(1, 10), st.integers(0, 10), st.sampled_from([0, 1, 1, 1, 2, 4, 512]),
    st.sampled_from([0, M, M, M, CHILD, OTHER]), st.sampled_from([0, M, M, CHILD]),
    st.sampled_from([0, 0, 0, -12, 1, 0x1, 0x400]), st.integers(-3, 6), st.sampled_from([0, 0, 1, 5]),
    st.integers(0, 2), st.integers(0, 6), st.booleans(), st.sampled_from([0, 0, DM, NV, 7]),
)
#: Kinds whose rows carry pgmap_ops (the recorder reads it only on device pages).
DEVICE_KINDS = ("device_free", "device_fault", "device_fault_done")


def _rows_of(draws) -> list[dict]:
    rows, seq, ts = [], 0, 1000
    for kind, folio, folio_new, nr, memcg, memcg_new, ret, value, span, who, item, gap, pgmap in draws:
        pid = 100 + who
        tid = pid if who != 2 else 500
        ts += 10
        seq += 1 if not (gap and kind == "lost") else 3
        if kind == "lost":
            value, memcg = max(1, value), 0
        elif kind in ("usage", "memstat"):
            value = abs(value) * 4096 * 7
        elif kind == "fork":
            value = 100 + (value % 3)
        elif kind == "memcg_stat" and span:
            ret = abs(ret)  # an aggregated row's hit count (the metadata's ledger refuses negative counts)
        items = ITEMS.get(kind, [""])
        rows.append({"seq": seq, "ts_ns": ts, "cpu": who % 2, "pid": pid, "tid": tid, "comm": "gen", "kind": kind,
                     "probe": "gen", "folio": folio, "folio_new": folio_new if kind in ("transfer", "replace") else 0,
                     "nr_pages": nr, "memcg": memcg, "memcg_new": memcg_new, "ret": ret,
                     "item": items[item % len(items)], "value": value, "span_ns": span,
                     "pgmap_ops": pgmap if kind in DEVICE_KINDS else 0})
    return rows


def _large_folio(pick) -> list[tuple]:
    """A large folio's life as generator draws (``pick(options)`` chooses one): charged at its order,
    or at a size that is none, sometimes as a hole insertion inside a migrate_vma window; then split
    uniformly (a few pieces named) or one order at a time (``__split_unmapped_folio()``: the later
    step names a piece the trace never saw charged), transferred, freed as a device folio, its head
    and pieces uncharged — now and then at another size or memcg, or split with orders that do
    not fall (R15's findings), with a split row's memcg sometimes absent. Its folios are the random
    rows' (1..10) and pieces of theirs, so the two interleave."""
    head, nr, memcg, who = pick(range(1, 11)), pick([2, 4, 8, 16, 512, 512, 3, 6]), pick([M, M, CHILD]), pick([0, 1, 2])

    def row(kind, folio, n, m=memcg, value=0, new=0, m_new=None):
        return (kind, folio, new, n, m, memcg if m_new is None else m_new, 0, value, 0, who, 0, False,
                pick([0, DM]) if kind == "device_free" else 0)

    rows = [row("charge", head, nr)]
    if pick([False, True]):
        rows = [row("migrate_setup", 0, 0, 0)] + rows + [row("migrate_pages", 0, 0, 0, value=pick([-1, 1])),
                                                         row("migrate_finalize", 0, 0, 0)]
    size, pieces = nr, []
    for _ in range(pick(range(6))):
        step = pick(["split", "split", "step", "uncharge", "pieces", "transfer", "device_free", "odd"])
        if step == "split" and size > 1:
            piece = pick([p for p in (1, 2, 4, 8, 256) if p < size])
            rows.append(row("split", head, size, pick([memcg, memcg, 0]), value=piece))
            pieces += [(head * 1000 + len(pieces) + j, piece) for j in range(1, min(size // piece, 4))]
            size = piece
        elif step == "step" and size > 2:
            half, second = size // 2, head * 1000 + len(pieces) + 1
            rows += [row("split", head, size, value=half), row("split", second, half, value=half // 2)]
            pieces += [(second, half // 2), (second + 1, half // 2)]
            size = half
        elif step == "uncharge":
            rows.append(row("uncharge", head, pick([size, size, nr, 1, 3]), pick([memcg, memcg, CHILD])))
        elif step == "pieces":
            rows += [row("uncharge", folio, pick([n, n, 2 * n])) for folio, n in pieces]
            pieces = []
        elif step == "transfer":
            new = pick(range(1, 11))
            rows.append(row("transfer", head, pick([size, size, 0]), new=new, m_new=pick([memcg, 0])))
            head = new
        elif step == "device_free":
            rows += [row("device_free", head, pick([size, size, 1]), value=pick([0, 1])), row("uncharge", head, size)]
        elif step == "odd":
            rows.append(row("split", head, pick([size, 3, 2 * size]), pick([memcg, CHILD, OTHER, 0]),
                            value=pick([1, size, 3, 0, 2 * size])))
    return rows


#: Generator draws: a random row, or a large folio's life.
draws_st = st.lists(st.one_of(row_st.map(lambda r: [r]),
                              st.composite(lambda draw: _large_folio(lambda o: draw(st.sampled_from(o))))()),
                    min_size=1, max_size=40).map(lambda parts: [r for part in parts for r in part])


def _ledger_of(rows: list[dict], skew: bool) -> list[dict]:
    sums: dict = {}
    for r in rows:
        if r["kind"] in ("usage", "memstat", "lost"):
            continue
        key = (r["memcg"], r["kind"], r["item"] if r["kind"] == "memcg_stat" else "")
        acc = sums.setdefault(key, [0, 0])
        acc[0] += (r["ret"] if r["span_ns"] else 1) if r["kind"] == "memcg_stat" else 1
        acc[1] += r["value"] if r["kind"] == "memcg_stat" else r["nr_pages"]
    out = [{"memcg": m, "kind": k, "item": i, "events": e, "pages": p} for (m, k, i), (e, p) in sums.items()]
    if skew and out:
        out[0]["events"] += 1
    return out


meta_st = st.fixed_dictionaries({
    "era": st.sampled_from([("transfer", 0), ("force", 0), ("force", 1)]),
    "fresh": st.booleans(), "exited": st.booleans(), "settled": st.booleans(), "child": st.booleans(),
    "probes": st.one_of(st.none(), st.sets(st.sampled_from(KINDS), min_size=1)),
    "ledger": st.sampled_from([None, "exact", "skewed"]), "drops": st.booleans(),
    "tasks_left": st.booleans(), "pgmaps": st.booleans(),
})


def _meta(m: dict, rows: list[dict]) -> TraceMeta:
    memcgs = [{"memcg": M, "parent": 1, "path": "/w", "created_in_scope": False}]
    if m["child"]:
        memcgs.append({"memcg": CHILD, "parent": M, "path": "/w/c", "created_in_scope": True})
    lost = sum(r["value"] for r in rows if r["kind"] == "lost")
    return TraceMeta(
        recorder="tests/test_engines.py", synthetic=True, era=Era(m["era"][0], m["era"][1], "generated"),
        probes=[{"event": k, "kind": k, "probe": f"gen:{k}", "how": "tracepoint"} for k in sorted(m["probes"])]
        if m["probes"] else [],
        drops={"total": lost if m["drops"] else 0, "per_cpu": {}},
        scope=Scope(kind="command", memcg=M, fresh=m["fresh"], exited=m["exited"], settled="force_empty",
                    memcgs=memcgs, settle={"method": "force_empty", "done": m["settled"]},
                    tasks_left=[{"pid": 100, "comm": "gen"}] if m["tasks_left"] else []),
        ncpus=2, ledger=_ledger_of(rows, m["ledger"] == "skewed") if m["ledger"] else None,
        pgmaps=PGMAPS if m.get("pgmaps") else None,
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(draws=draws_st, meta=meta_st, era=st.sampled_from([None, "4.14-5.17", "5.18-6.6", "6.7+"]))
def test_generated_streams_same_report(tmp_path, draws, meta, era):
    rows = _rows_of(draws)
    path = write_rows(rows, tmp_path / f"gen-{len(list(tmp_path.iterdir()))}.parquet", _meta(meta, rows))
    both(path, ReplayConfig(era=era))


def test_generated_streams_reach_every_rule(tmp_path):
    """The generator is no tautology: over a fixed set of streams both engines
    report findings of most rules and every per-driver figure (so the comparison
    above compares something)."""
    import random

    rng = random.Random(7)
    drivers = random.Random(11)  # its own stream: the rows' draws stay those the rule set was chosen on
    rules: set[str] = set()
    figures: set[str] = set()
    for k in range(40):
        draws = [(rng.choice(KINDS + ["charge", "uncharge", "transfer"] * 4), rng.randint(1, 6), rng.randint(0, 6),
                  rng.choice([0, 1, 2, 512]), rng.choice([0, M, M, CHILD]), rng.choice([0, M, CHILD]),
                  rng.choice([0, 0, -12, 1]), rng.randint(-3, 6), rng.choice([0, 1]), rng.randint(0, 2),
                  rng.randint(0, 6), rng.random() < 0.2, drivers.choice([0, DM, NV])) for _ in range(120)]
        rows = _rows_of(draws)
        meta = {"era": rng.choice([("transfer", 0), ("force", 0), ("force", 1)]), "fresh": True, "exited": True,
                "settled": True, "child": True, "probes": None, "ledger": "skewed", "drops": True, "pgmaps": True,
                "tasks_left": False}
        report = both(write_rows(rows, tmp_path / f"g{k}.parquet", _meta(meta, rows)))
        rules |= {f.rule for f in report.violations + report.inconclusive + report.candidates}
        figures |= {name for d in report.drivers for name in ("device_faults", "migrated_to_device",
                                                                "migrated_from_device", "freed", "charged_at_end")
                    if getattr(d, name)}
    assert {"R1", "R3", "R4", "R6", "R7", "R12", "L1"} <= rules, rules
    assert figures == {"device_faults", "migrated_to_device", "migrated_from_device", "freed", "charged_at_end"}


def test_generated_large_folios_reach_r15_and_the_split_credit(tmp_path):
    """The large-folio lives are no tautology either: over a fixed set of them both engines give
    every R15 message (naming each kind of row), and a memcg whose split folio's pieces all
    uncharge from the model's split credit (split extra folios, nothing pre-trace, nothing live)."""
    import random

    rng = random.Random(15)
    kinds = {": not 1 << order": "order", "and not split since": "size", "orders must fall": "split order",
             "a split moves no charge": "split memcg", "split of a ": "split size"}
    seen: set[str] = set()
    rows_named: set[str] = set()  # the row a size finding names: charge, uncharge, transfer, device-private free
    credited = 0
    for k in range(30):
        draws = [r for _ in range(6) for r in _large_folio(rng.choice)]
        rows = _rows_of(draws)
        meta = {"era": rng.choice([("transfer", 0), ("force", 0)]), "fresh": True, "exited": True, "settled": True,
                "child": True, "probes": None, "ledger": "exact", "drops": False, "pgmaps": True, "tasks_left": False}
        report = both(write_rows(rows, tmp_path / f"lf{k}.parquet", _meta(meta, rows)))
        for f in report.violations + report.inconclusive:
            if f.rule == "R15":
                seen |= {name for words, name in kinds.items() if words in f.message}
                if not f.message.startswith("split"):
                    rows_named.add(f.message.split(" of ")[0])
        credited += sum(1 for m in report.memcgs if m.split_extra and not m.live and not m.pre_trace_uncharged
                        and m.uncharged)
    assert seen == set(kinds.values()), seen
    assert rows_named == {"charge", "uncharge", "transfer", "device-private free"}, rows_named
    assert credited, "no memcg's pieces were all credited"


#: A window of the 7.2 recording around its first device-THP splits: 512-page folios charged by hole
#: insertion, transferred, split into order-0 pieces and freed piece by piece.
WINDOW_72 = (988_000, 1_010_000)


@pytest.fixture(scope="module")
def window_72(tmp_path_factory) -> Path:
    trace = read_trace(ROOT / "traces" / "hmm-tests-7.2.parquet")
    out = tmp_path_factory.mktemp("w72") / "hmm-tests-7.2-window.parquet"
    start, stop = WINDOW_72
    write_table(trace.table.slice(start, stop - start), out, dataclasses.replace(trace.meta, ledger=None))
    return out


@pytest.mark.parametrize("fault", FAULTS)
def test_every_mutation_at_large_folios_same_report(tmp_path, window_72, fault):
    """Each fault at the first and last large-folio event it may hit (and its first event) in the
    7.2 window; the whole 7.2 trace is left to the test above (a mutation of its 1.3 M rows takes
    about 30 s in mutate alone)."""
    trace = read_trace(window_72)
    eligible = eligible_events(trace, fault)[0]
    nr = trace.table.column("nr_pages").to_numpy()
    large = [n + 1 for n, row in enumerate(eligible) if nr[row] > 1]
    positions = sorted({1, *large[:1], *large[-1:]} & set(range(1, len(eligible) + 1)))
    assert positions, f"{fault}: nothing eligible in the window"
    for n in positions:
        table, meta = mutate(trace, [Mutation(fault, n)])
        out = tmp_path / f"w72-{fault}-{n}.parquet"
        write_table(table, out, meta)
        both(out)


# -- bounded memory, fallbacks, the command line --------------------------------------------------
def test_forgetting_uncharged_folios_is_reported(monkeypatch):
    """Past the cap of remembered uncharged folios the engine says what it forgot."""
    monkeypatch.setenv("CHARGETRACE_FORGET_AFTER", "16")
    report = replay_compiled(ROOT / "traces" / "workload-6.1-limit-migrate.parquet")
    assert any("were forgotten" in note for note in report.notes)


def test_unsorted_rows_are_left_to_the_reference(tmp_path):
    trace = read_trace(ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet")
    import pyarrow as pa

    table = trace.table
    swapped = pa.concat_tables([table.slice(10), table.slice(0, 10)])
    write_table(swapped, tmp_path / "u.parquet", trace.meta)
    with pytest.raises(Unsupported):
        replay_compiled(tmp_path / "u.parquet")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chargetrace.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_replays_a_shipped_trace_with_the_compiled_engine():
    """CI checks the compile works: the compiled engine through the command line."""
    path = str(ROOT / "traces" / "hmm-tests-6.1.parquet")
    compiled = _cli("replay", path, "--engine", "compiled", "--json")
    reference = _cli("replay", path, "--engine", "reference", "--json")
    assert compiled.returncode == reference.returncode == 0, compiled.stderr
    assert json.loads(compiled.stdout) == json.loads(reference.stdout)
    assert "notice" not in compiled.stderr


def test_cli_falls_back_with_one_line_notice(tmp_path):
    trace = read_trace(ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet")
    import pyarrow as pa

    table = trace.table
    write_table(pa.concat_tables([table.slice(10), table.slice(0, 10)]), tmp_path / "u.parquet", trace.meta)
    out = _cli("replay", str(tmp_path / "u.parquet"), "--engine", "compiled", "--json")
    assert out.returncode in (0, 1, 3, 4), out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "reference engine" in lines[0], out.stderr
    assert json.loads(out.stdout)["verdict"]


def test_small_replay_imports_neither_pandas_nor_numba():
    """Start-up of a small trace's replay (BENCHMARKS.md): no pandas (pyarrow.compute and
    pyarrow's array builders import it), no numba, no process pool; a schema-1 trace's
    missing pgmap_ops column is filled without them too."""
    probe = ("import sys\nfrom chargetrace.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('pandas', 'pyarrow.compute', 'numba', 'concurrent.futures.process') "
             "if m in sys.modules), file=sys.stderr)\n")
    for name in ("synthetic-hmm-lifecycle-6.7.parquet", "workload-6.1-limit-migrate.parquet"):
        out = subprocess.run([sys.executable, "-c", probe, "replay", "--json", str(ROOT / "traces" / name)],
                             capture_output=True, text=True, timeout=300)
        assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr
