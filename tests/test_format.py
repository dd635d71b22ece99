"""The trace format: round trips, segments, and every kind of bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chargetrace.traces import (
    SCHEMA_VERSION,
    ChargetraceError,
    TraceMeta,
    TraceWriter,
    read_meta,
    read_trace,
)
from chargetrace.traces.schema import METADATA_KEY


def rows(n, start=0):
    return [{"ts_ns": 10 * i, "kind": "charge", "folio": 0x1000 + i, "memcg": 5, "nr_pages": 1}
            for i in range(start, start + n)]


def test_round_trip_single_file(tmp_path):
    path = tmp_path / "t.parquet"
    meta = TraceMeta(recorder="test", kernel_release="6.18.0")
    with TraceWriter(path, meta, flush_rows=3) as w:
        w.append_rows(rows(5))
        w.append_rows(rows(2, 5))
    assert not (tmp_path / "t.parquet.partial").exists()
    trace = read_trace(path)
    assert trace.num_events == 7
    assert trace.table.column("seq").to_pylist() == list(range(7))
    assert trace.table.column("kind").to_pylist() == ["charge"] * 7
    assert trace.meta.kernel_release == "6.18.0" and trace.meta.schema_version == SCHEMA_VERSION
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_segment_directory_and_final_meta(tmp_path):
    target = tmp_path / "tdir"
    meta = TraceMeta(recorder="test")
    w = TraceWriter(target, meta, flush_rows=2)
    for i in range(5):
        w.append_rows(rows(1, i))
    w.meta.drops = {"total": 4, "per_cpu": {"0": 4}}
    w.close()
    segs = sorted(target.glob("seg-*.parquet"))
    assert len(segs) == 3
    assert read_trace(target).num_events == 5
    assert read_meta(target).drops["total"] == 4  # the last segment carries the final meta


def test_killed_recording_keeps_flushed_segments(tmp_path):
    path = tmp_path / "t.parquet"
    w = TraceWriter(path, TraceMeta(recorder="test"), flush_rows=2)
    for i in range(5):
        w.append_rows(rows(1, i))  # 4 rows flushed in 2 segments, 1 still buffered
    # no close(): as if the recorder were SIGKILLed
    with pytest.raises(ChargetraceError, match="unfinished recording"):
        read_trace(path)
    assert read_trace(tmp_path / "t.parquet.partial").num_events == 4


def test_older_files_are_read_by_column_name(tmp_path):
    path = tmp_path / "old.parquet"
    table = pa.table({"kind": ["uncharge", "charge"], "ts_ns": pa.array([2, 1], pa.uint64()),
                      "seq": pa.array([1, 0], pa.uint64()), "folio": pa.array([7, 7], pa.int64())})
    meta = json.dumps({"schema_version": 1, "recorder": "older", "some_future_field": 3})
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: meta}), path)
    trace = read_trace(path)
    assert trace.table.column("kind").to_pylist() == ["charge", "uncharge"]  # sorted by seq
    assert trace.table.column("memcg").to_pylist() == [0, 0]  # default for a missing column
    assert trace.meta.extra == {"some_future_field": 3}


BAD = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty file"),
    "csv": (b"seq,kind\n1,charge\n", "not a Parquet file"),
    "garbage": (b"PAR1" + b"\0" * 100, "not a Parquet file"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_one_line(tmp_path, name):
    content, message = BAD[name]
    path = tmp_path / f"{name}.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ChargetraceError, match=message) as err:
        read_trace(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _good(tmp_path):
    path = tmp_path / "good.parquet"
    with TraceWriter(path, TraceMeta(recorder="test")) as w:
        w.append_rows(rows(2000))
    return path


def test_truncated_file(tmp_path):
    path = _good(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ChargetraceError, match="not a Parquet file, or truncated"):
        read_trace(cut)


def test_foreign_parquet(tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(ChargetraceError, match="not a chargetrace trace"):
        read_trace(path)


def test_wrong_versions_and_types(tmp_path):
    def write(meta_obj, table=None):
        path = tmp_path / f"v{len(list(tmp_path.iterdir()))}.parquet"
        table = table or pa.table({"seq": pa.array([0], pa.uint64()), "ts_ns": pa.array([0], pa.uint64()),
                                   "kind": ["charge"]})
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta_obj)}), path)
        return path

    with pytest.raises(ChargetraceError, match="newer than this chargetrace reads"):
        read_trace(write({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ChargetraceError, match="older than this chargetrace reads"):
        read_trace(write({"schema_version": 0}))
    with pytest.raises(ChargetraceError, match="schema_version must be an integer"):
        read_trace(write({"schema_version": "one"}))
    with pytest.raises(ChargetraceError, match="missing column"):
        read_trace(write({"schema_version": 1}, pa.table({"kind": ["charge"]})))
    bad_type = pa.table({"seq": pa.array([0], pa.uint64()), "ts_ns": pa.array([0], pa.uint64()),
                         "kind": ["charge"], "folio": ["not a number"]})
    with pytest.raises(ChargetraceError, match="column 'folio' has type string"):
        read_trace(write({"schema_version": 1}, bad_type))
    path = tmp_path / "badjson.parquet"
    pq.write_table(pa.table({"seq": [0]}).replace_schema_metadata({METADATA_KEY: b"{nope"}), path)
    with pytest.raises(ChargetraceError, match="metadata is not valid JSON"):
        read_trace(path)


def test_empty_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ChargetraceError, match="no trace segments"):
        read_trace(tmp_path / "d")


def test_writer_refuses_to_mix_with_an_existing_recording(tmp_path):
    path = tmp_path / "t.parquet"
    w = TraceWriter(path, TraceMeta(), flush_rows=1)
    w.append_rows(rows(1))
    with pytest.raises(ChargetraceError, match="already exists"):
        TraceWriter(path, TraceMeta())


def test_anonymize_keeps_relations_and_hides_pointers(tmp_path):
    from chargetrace.replay import replay
    from chargetrace.traces import write_table
    from chargetrace.traces.anonymize import anonymize

    path = tmp_path / "t.parquet"
    k1, k2 = 0xFFFFEA0001234540, 0xFFFFEA0009876500
    with TraceWriter(path, TraceMeta()) as w:
        w.append_rows([
            {"kind": "charge", "folio": k1, "memcg": 3, "nr_pages": 1},
            {"kind": "transfer", "folio": k1, "folio_new": k2, "memcg": 3, "memcg_new": 3, "nr_pages": 1},
            {"kind": "fault"},
            {"kind": "uncharge", "folio": k2, "memcg": 3, "nr_pages": 1},
        ])
    table, meta = anonymize(read_trace(path))
    assert table.column("folio").to_pylist() == [1, 1, 0, 2]
    assert table.column("folio_new").to_pylist() == [0, 2, 0, 0]
    assert meta.anonymized
    out = tmp_path / "anon.parquet"
    write_table(table, out, meta)
    assert replay(read_trace(out)).verdict == replay(read_trace(path)).verdict == "balanced"
