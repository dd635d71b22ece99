"""The in-kernel ledger on the running kernel: it equals the stream's sums when
nothing was dropped, and stays exact when a tiny ring buffer drops most rows."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from chargetrace.traces import read_trace

from .conftest import cli, record

pytestmark = pytest.mark.live

PAGES, ROUNDS = 16384, 2


def _stream_sums(trace) -> dict[tuple[int, str, str], tuple[int, int]]:
    cols = trace.table.select(["kind", "probe", "memcg", "item", "value", "nr_pages", "ret", "span_ns"]).to_pydict()
    sums: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for kind, probe, memcg, item, value, nr, ret, span in zip(*cols.values()):
        if probe == "recorder" or probe.startswith("sample:"):  # rows the recorder made, not the probes
            continue
        acc = sums[(memcg, kind, item if kind == "memcg_stat" else "")]
        if kind == "memcg_stat":
            acc[0] += ret if span else 1
            acc[1] += value
        else:
            acc[0] += 1
            acc[1] += nr
    return {k: (e, p) for k, (e, p) in sums.items()}


def _ledger(trace) -> dict[tuple[int, str, str], tuple[int, int]]:
    assert trace.meta.ledger is not None
    return {(e["memcg"], e["kind"], e["item"]): (e["events"], e["pages"]) for e in trace.meta.ledger}


def _replay(path: Path) -> tuple[int, dict]:
    proc = subprocess.run(cli("replay", "--json", str(path)), capture_output=True, text=True, timeout=300)
    return proc.returncode, json.loads(proc.stdout)


def _workload_counters(ledger, memcg: int) -> dict[str, int]:
    return {item: pages for (m, kind, item), (_, pages) in ledger.items() if m == memcg and kind == "memcg_stat"}


def test_ledger_equals_the_rows_without_drops(tmp_path: Path, workload: Path) -> None:
    run = record(tmp_path, "--", str(workload), str(PAGES), str(ROUNDS))
    assert run.returncode == 0, run.stderr
    t = read_trace(run.trace)
    assert t.meta.drops["total"] == 0, t.meta.drops
    ledger = _ledger(t)
    assert _stream_sums(t) == ledger
    counters = _workload_counters(ledger, t.meta.scope.memcg)
    assert counters["PGPGIN"] == counters["PGPGOUT"] >= PAGES * ROUNDS
    assert counters["NR_ANON_MAPPED"] == 0
    assert ledger[(0, "fault", "")][0] >= PAGES * ROUNDS
    code, report = _replay(run.trace)
    assert code == 0 and report["verdict"] == "balanced", report["violations"]
    assert {r["rule"]: r["checked"] for r in report["rules"]}["L1"] == len(ledger)


def test_tiny_ring_drops_but_the_ledger_balances(tmp_path: Path, workload: Path) -> None:
    # 64 KiB of ring for ~1 M records: most are dropped
    run = record(tmp_path, "--ringbuf-mb", "0.0625", "--", str(workload), str(PAGES), str(ROUNDS))
    assert run.returncode == 0, run.stderr
    t = read_trace(run.trace)
    drops = t.meta.drops
    assert drops["total"] > PAGES, drops
    assert drops["rescued"]["ledger_full"] == 0
    ledger = _ledger(t)
    memcg = t.meta.scope.memcg
    counters = _workload_counters(ledger, memcg)
    # exact for the workload although the stream lost most rows
    assert counters["PGPGIN"] == counters["PGPGOUT"] >= PAGES * ROUNDS
    assert counters["NR_ANON_MAPPED"] == 0
    stream = _stream_sums(t)
    assert stream[(memcg, "memcg_stat", "PGPGIN")][1] < counters["PGPGIN"]  # the rows did lose some
    code, report = _replay(run.trace)
    assert code == 3 and report["verdict"] == "inconclusive" and not report["violations"]
    notes = " ".join(report["notes"])
    assert f"R3.pgpg (memcg {memcg})" in notes and "in-kernel ledger balances" in notes


def test_aggregated_counters_one_record_per_fault(tmp_path: Path, workload: Path) -> None:
    run = record(tmp_path, "--aggregate-counters", "--", str(workload), str(PAGES), str(ROUNDS))
    assert run.returncode == 0, run.stderr
    t = read_trace(run.trace)
    assert t.meta.drops["total"] == 0
    ledger = _ledger(t)
    assert _stream_sums(t) == ledger
    kinds = t.table.column("kind").cast("string").to_pylist()
    faults = kinds.count("fault")
    # Counter rows are what aggregation folds; samples, drop rows and the per-folio LRU
    # insertions R12 needs (one per faulted page, never aggregated) are not counted.
    records = sum(1 for k in kinds if k not in ("usage", "memstat", "lost", "lru_insert"))
    assert faults >= PAGES * ROUNDS and records / faults < 1.1
    spans = [s for k, s in zip(kinds, t.table.column("span_ns").to_pylist()) if k == "memcg_stat"]
    assert spans and all(s > 0 for s in spans)
    code, report = _replay(run.trace)
    assert code == 0 and report["verdict"] == "balanced", report["violations"]
