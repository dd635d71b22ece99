"""bench/tile.py: a recorded trace tiled with fresh seq, time, folio ids and memcgs
is a whole, consistent trace (traces/integrity.py clean) that replays balanced
when its source does, with its metadata (rows, recording id, memcgs, ledger,
drops) made consistent; a mutation in it is still caught."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chargetrace.replay import replay
from chargetrace.replay.mutate import Mutation, mutate
from chargetrace.traces import ChargetraceError, read_trace, write_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from tile import FOLIO_SHIFT, MEMCG_SHIFT, tile, tile_meta  # noqa: E402

SOURCE = ROOT / "traces" / "workload-6.18-counters.parquet"


def test_tiled_trace_is_whole_and_balanced(tmp_path):
    source = read_trace(SOURCE)
    out = tile(SOURCE, tmp_path / "t.parquet", 3 * source.num_events - 5)
    trace = read_trace(out)
    assert trace.integrity.problems == []
    assert trace.num_events == 3 * source.num_events and trace.meta.rows == trace.num_events
    assert trace.meta.recording_id and trace.meta.recording_id != source.meta.recording_id
    memcgs = {m["memcg"] for m in trace.meta.scope.memcgs}
    root = source.meta.scope.memcg
    assert {root, root + (1 << MEMCG_SHIFT), root + (2 << MEMCG_SHIFT)} <= memcgs
    seq = trace.table.column("seq").to_numpy()
    assert (seq == range(trace.num_events)).all()
    report = replay(trace)
    assert replay(source).verdict == report.verdict == "balanced"
    assert {row.memcg for row in report.memcgs} >= {root + (2 << MEMCG_SHIFT)}
    # A tile is judged like the recording: a fault put into the tiled trace is caught.
    table, meta = mutate(trace, [Mutation("drop-uncharge", 2)])
    write_table(table, tmp_path / "m.parquet", meta)
    assert replay(read_trace(tmp_path / "m.parquet")).verdict == "violations"


def test_folio_ids_are_fresh_per_tile(tmp_path):
    source = ROOT / "traces" / "workload-6.1-limit-migrate.parquet"
    rows = read_trace(source).num_events
    trace = read_trace(tile(source, tmp_path / "t.parquet", rows + 1))
    folio = trace.table.column("folio").to_numpy()
    first, second = folio[:rows], folio[rows:]
    assert ((second == 0) == (first == 0)).all()
    assert (second[second != 0] == first[first != 0] + (1 << FOLIO_SHIFT)).all()
    ts = trace.table.column("ts_ns").to_numpy()
    assert ts[rows] > ts[rows - 1]
    assert replay(trace).verdict == "balanced"


def test_tile_meta_multiplies_ledger_and_drops():
    meta = read_trace(SOURCE).meta
    meta.ledger = [{"memcg": 5, "kind": "charge", "item": "", "events": 2, "pages": 3}]
    meta.drops = {"total": 4, "per_cpu": {"0": 4}}
    out = tile_meta(meta, 3, 10, 10, "x")
    assert [e["memcg"] for e in out.ledger] == [5, 5 + (1 << MEMCG_SHIFT), 5 + (2 << MEMCG_SHIFT)]
    assert out.drops["total"] == 12 and out.drops["per_cpu"] == {"0": 12} and out.rows == 30


def test_raw_pointer_source_is_refused(tmp_path):
    with pytest.raises(ChargetraceError, match="too large to tile"):
        tile(ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet", tmp_path / "t.parquet", 1e4)
