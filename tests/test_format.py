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
                      "seq": pa.array([1, 0], pa.uint64()), "folio": pa.array([7, 7], pa.uint64())})
    meta = json.dumps({"schema_version": 1, "recorder": "older", "some_future_field": 3})
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: meta}), path)
    trace = read_trace(path)
    assert trace.table.column("kind").to_pylist() == ["charge", "uncharge"]  # sorted by seq
    assert trace.table.column("memcg").to_pylist() == [0, 0]  # default for a missing column
    assert trace.meta.extra == {"some_future_field": 3}
    # ... but a trace with columns filled in cannot be proven balanced.
    assert any("missing: filled with defaults" in p for p in trace.integrity.problems)


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
    with pytest.raises(ChargetraceError, match="column 'folio' has type string, expected uint64 \\(a lossy type\\)"):
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


# ---------------------------------------------------------------------------- integrity (issue 8)

from chargetrace.replay import replay as run_replay  # noqa: E402
from chargetrace.traces import ARROW_SCHEMA, write_table  # noqa: E402


def _balanced_trace(tmp_path, name="b.parquet"):
    """A small trace the replay calls balanced (one charge, its uncharge)."""
    path = tmp_path / name
    meta = TraceMeta(recorder="test", scope=__import__("chargetrace.traces", fromlist=["Scope"]).Scope(
        kind="command", memcg=5))
    with TraceWriter(path, meta) as w:
        w.append_rows([
            {"ts_ns": 10, "kind": "charge", "folio": 0xFFFFEA0000001000, "memcg": 5, "nr_pages": 1},
            {"ts_ns": 20, "kind": "fault", "addr": 0x1000},
            {"ts_ns": 30, "kind": "uncharge", "folio": 0xFFFFEA0000001000, "memcg": 5, "nr_pages": 1},
            {"ts_ns": 40, "kind": "exit", "pid": 1, "value": 1},
        ])
    return path


def _rewrite(path, out, *, table=None, meta=None):
    """Rewrite a trace file with pyarrow directly (no writer checks), as a forger would."""
    src = pq.read_table(path)
    raw = json.loads(src.schema.metadata[METADATA_KEY])
    table = (table if table is not None else src).replace_schema_metadata(None)
    meta = meta(raw) if callable(meta) else (raw if meta is None else meta)
    blob = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: blob}), out)
    return out


def test_clean_trace_is_clean_and_balanced(tmp_path):
    trace = read_trace(_balanced_trace(tmp_path))
    assert trace.integrity.clean, trace.integrity.problems
    assert trace.meta.complete and trace.meta.rows == 4 and trace.meta.recording_id
    assert run_replay(trace).verdict == "balanced"


@pytest.mark.parametrize("what", ["middle", "first", "last"])
def test_removed_rows_are_reported_never_balanced(tmp_path, what):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    keep = {"middle": [0, 2, 3], "first": [1, 2, 3], "last": [0, 1, 2]}[what]
    out = _rewrite(path, tmp_path / "cut.parquet", table=table.take(keep))
    trace = read_trace(out)
    assert not trace.integrity.clean
    report = run_replay(trace)
    assert report.verdict != "balanced"
    assert any("trace integrity" in n for n in report.notes)


def test_gap_accounted_for_by_a_lost_row_is_not_a_problem(tmp_path):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    kinds = table.column("kind").cast(pa.string()).to_pylist()
    values = table.column("value").to_pylist()
    kinds[3], values[3] = "lost", 2
    seq = pa.array([0, 1, 2, 5], pa.uint64())
    t = table.set_column(0, "seq", seq).set_column(6, "kind", pa.array(kinds).dictionary_encode())
    t = t.set_column(t.schema.get_field_index("value"), "value", pa.array(values, pa.int64()))
    out = _rewrite(path, tmp_path / "lost.parquet", table=t,
                   meta=lambda m: {**m, "drops": {"total": 2, "per_cpu": {"0": 2}}})
    problems = read_trace(out).integrity.problems
    assert not any("seq has gaps" in p for p in problems), problems


def test_duplicated_seq_and_negative_lost_are_refused(tmp_path):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    with pytest.raises(ChargetraceError, match="seq 1 appears more than once"):
        read_trace(_rewrite(path, tmp_path / "dup.parquet", table=table.take([0, 1, 1, 2, 3])))
    kinds = pa.array(["lost", "lost", "fault", "fault"]).dictionary_encode()
    t = table.set_column(6, "kind", kinds).set_column(16, "value", pa.array([7, -7, 0, 0], pa.int64()))
    with pytest.raises(ChargetraceError, match="negative count"):
        read_trace(_rewrite(path, tmp_path / "neg.parquet", table=t))


def test_unknown_kinds_and_drop_mismatch_are_reported(tmp_path):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    renamed = table.set_column(6, "kind", pa.array(["Charge"] * 4).dictionary_encode())
    trace = read_trace(_rewrite(path, tmp_path / "k.parquet", table=renamed))
    assert any("unknown kind" in p and "'Charge' x4" in p for p in trace.integrity.problems)
    assert run_replay(trace).verdict != "balanced"
    drops = read_trace(_rewrite(path, tmp_path / "d.parquet",
                                meta=lambda m: {**m, "drops": {"total": 5000, "per_cpu": {"0": 5000}}}))
    assert any("5000 dropped" in p for p in drops.integrity.problems)
    assert run_replay(drops).verdict != "balanced"


@pytest.mark.parametrize("column,typ,message", [
    ("folio", pa.float64(), "type double, expected uint64 \\(a lossy type\\)"),
    ("value", pa.int8(), "type int8, expected int64"),
    ("memcg", pa.string(), "type string"),
])
def test_lossy_or_foreign_column_types_are_refused(tmp_path, column, typ, message):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    i = table.schema.get_field_index(column)
    col = table.column(i).cast(pa.string()) if typ == pa.string() else table.column(i).cast(typ, safe=False)
    with pytest.raises(ChargetraceError, match=message):
        read_trace(_rewrite(path, tmp_path / "t.parquet", table=table.set_column(i, column, col)))


def test_seq_up_to_2_64_minus_1(tmp_path):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    top = (1 << 64) - 1
    t = table.set_column(0, "seq", pa.array([top - 3, top - 2, top - 1, top], pa.uint64()))
    trace = read_trace(_rewrite(path, tmp_path / "top.parquet", table=t))
    assert trace.table.column("seq").to_pylist()[-1] == top
    assert any("seq starts at" in p for p in trace.integrity.problems)  # rows before it are missing
    assert run_replay(trace).verdict != "balanced"


def test_duplicated_column_names_invalid_utf8_and_huge_strings(tmp_path):
    path = _balanced_trace(tmp_path)
    table = pq.read_table(path)
    with pytest.raises(ChargetraceError, match="'kind' appear more than once"):
        read_trace(_rewrite(path, tmp_path / "dupcol.parquet", table=table.append_column("kind", table["kind"])))
    bad = pa.array([b"ok", b"\xff\xfe", b"ok", b"ok"], pa.binary()).view(pa.string())
    with pytest.raises(ChargetraceError, match="corrupt or truncated data"):
        read_trace(_rewrite(path, tmp_path / "utf8.parquet", table=table.set_column(5, "comm", bad)))
    huge = pa.array(["x" * 10_000, "a", "a", "a"]).dictionary_encode()
    with pytest.raises(ChargetraceError, match="string of 10000 bytes"):
        read_trace(_rewrite(path, tmp_path / "huge.parquet", table=table.set_column(5, "comm", huge)))


@pytest.mark.parametrize("edit,message", [
    (lambda m: {k: v for k, v in m.items() if k != "schema_version"}, "schema_version is missing"),
    (lambda m: {**m, "schema_version": True}, "schema_version must be an integer, not a boolean"),
    (lambda m: {**m, "schema_version": 1.0}, "schema_version must be an integer, not the number 1.0"),
    (lambda m: {**m, "probes": ["charge"]}, r"probes\[0\] must be an object"),
    (lambda m: {**m, "page_size": "4096"}, "page_size must be an integer, not a string"),
    (lambda m: {**m, "ncpus": 1e300}, "ncpus must be an integer"),
    (lambda m: {**m, "drops": []}, "drops must be an object, not a list"),
    (lambda m: {**m, "scope": {**m["scope"], "unseen_fault_share": 2}}, "unseen_fault_share = 2 is out of range"),
    (lambda m: {**m, "scope": {**m["scope"], "phases": {"start": -1}}}, "phases.start = -1 is out of range"),
    (lambda m: ("[" * 100_000 + "]" * 100_000).encode(), "nests deeper than"),
    (lambda m: json.dumps(m)[:-1].encode() + b', "x": ' + b"[" * 50 + b"]" * 50 + b"}", "nests deeper than"),
])
def test_metadata_is_typed(tmp_path, edit, message):
    path = _balanced_trace(tmp_path)
    with pytest.raises(ChargetraceError, match=message) as err:
        read_trace(_rewrite(path, tmp_path / "m.parquet", meta=edit))
    assert "\n" not in str(err.value)


def test_contract_fields_of_version_2_are_accepted(tmp_path):
    path = _balanced_trace(tmp_path)

    def v2(m):
        scope = {**m["scope"], "phases": {"start": 0, "exit": 2, "settled": 3},
                 "memcgs": [{"memcg": 5, "parent": 1, "path": "/x", "created_in_scope": True}],
                 "tasks_left": [], "exited": True, "moved_out": [{"pid": 9, "memcg": 8, "followed": False}],
                 "unseen_fault_share": 0.0, "exit_status": 137, "oom_kills": None,
                 "settle": {"method": "force_empty", "done": True, "unreclaimed_bytes": 0, "why": ""}}
        return {**m, "scope": scope, "armed_ns": 5}

    trace = read_trace(_rewrite(path, tmp_path / "v2.parquet", meta=v2))
    assert trace.integrity.clean, trace.integrity.problems
    early = read_trace(_rewrite(path, tmp_path / "early.parquet", meta=lambda m: {**v2(m), "armed_ns": 25}))
    assert any("before the recorder armed" in p for p in early.integrity.problems)


def test_memstat_kind_is_known(tmp_path):
    path = tmp_path / "m.parquet"
    with TraceWriter(path, TraceMeta()) as w:
        w.append_rows([{"kind": "memstat", "memcg": 5, "item": "rss", "value": 4096, "probe": "sample:memory.stat"}])
    assert read_trace(path).integrity.clean


def test_segments_of_two_recordings_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for target in (a, b):
        with TraceWriter(target, TraceMeta(), flush_rows=2) as w:
            w.append_rows(rows(2))
            w.append_rows(rows(2, 2))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "seg-000000.parquet").write_bytes((a / "seg-000000.parquet").read_bytes())
    (mixed / "seg-000001.parquet").write_bytes((b / "seg-000001.parquet").read_bytes())
    with pytest.raises(ChargetraceError, match="segments of different recordings"):
        read_trace(mixed)


def test_page_checksums_catch_a_flipped_bit_in_data(tmp_path):
    path = tmp_path / "t.parquet"
    with TraceWriter(path, TraceMeta()) as w:
        w.append_rows({"ts_ns": i, "kind": "fault", "addr": i * 4096} for i in range(5000))
    md = pq.ParquetFile(path).metadata.row_group(0).column(ARROW_SCHEMA.get_field_index("addr"))
    data = bytearray(path.read_bytes())
    data[md.data_page_offset + md.total_compressed_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ChargetraceError, match="corrupt or truncated data"):
        read_trace(path)


def test_row_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    path = _good(tmp_path)
    monkeypatch.setenv("CHARGETRACE_MAX_EVENTS", "1000")
    with pytest.raises(ChargetraceError, match="2000 events, more than the 1000"):
        read_trace(path)
    monkeypatch.setenv("CHARGETRACE_MAX_EVENTS", "x")
    with pytest.raises(ChargetraceError, match="not a positive integer"):
        read_trace(path)


# ---------------------------------------------------------------------------- writes (issue 8)


def test_files_and_segments_are_private(tmp_path):
    path = _balanced_trace(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    seg_dir = tmp_path / "d"
    w = TraceWriter(seg_dir, TraceMeta(), flush_rows=1)
    w.append_rows(rows(2))
    assert seg_dir.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in seg_dir.iterdir()} == {0o600}


def test_pointers_are_opaque_ids_by_default_and_raw_on_request(tmp_path):
    k = 0xFFFFEA0001234540
    hidden, raw = tmp_path / "h.parquet", tmp_path / "r.parquet"
    for path, keep in ((hidden, False), (raw, True)):
        with TraceWriter(path, TraceMeta(), flush_rows=1, raw_pointers=keep) as w:
            w.append_rows([{"kind": "charge", "folio": k, "memcg": 3, "nr_pages": 1}])
            w.append_rows([{"kind": "transfer", "folio": k, "folio_new": k + 64, "memcg": 3}])  # next segment
    h = read_trace(hidden)
    assert h.table.column("folio").to_pylist() == [1, 1] and h.table.column("folio_new").to_pylist() == [0, 2]
    assert h.meta.anonymized is True
    r = read_trace(raw)
    assert r.table.column("folio").to_pylist() == [k, k] and r.meta.anonymized is False


def test_write_table_refuses_existing_and_replaces_symlinks_without_following(tmp_path):
    trace = read_trace(_balanced_trace(tmp_path))
    out = tmp_path / "out.parquet"
    out.write_bytes(b"keep")
    with pytest.raises(ChargetraceError, match="already exists"):
        write_table(trace.table, out, trace.meta, overwrite=False)
    assert out.read_bytes() == b"keep"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "link.parquet"
    link.symlink_to(victim)
    write_table(trace.table, link, trace.meta, overwrite=True)
    assert victim.read_bytes() == b"precious" and not link.is_symlink()
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_only_directory_is_one_line(tmp_path):
    import os

    if os.geteuid() == 0:
        # root ignores directory permissions: a file in place of the directory does the same job.
        target = tmp_path / "file" / "out.parquet"
        (tmp_path / "file").write_bytes(b"")
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "out.parquet"
    trace = read_trace(_balanced_trace(tmp_path))
    with pytest.raises(ChargetraceError, match="cannot write") as err:
        write_table(trace.table, target, trace.meta)
    assert "\n" not in str(err.value)


def test_failed_recording_never_reads_as_complete(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    w = TraceWriter(path, TraceMeta(), flush_rows=2)
    w.append_rows(rows(2))  # one segment on disk
    import chargetrace.traces.writer as writer_mod

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_mod.pq, "write_table", full_disk)
    with pytest.raises(ChargetraceError, match="No space left"):
        w.append_rows(rows(2, 2))
    with pytest.raises(ChargetraceError, match="recording not finished"):
        w.close()
    monkeypatch.undo()
    assert not path.exists()
    partial = read_trace(tmp_path / "t.parquet.partial")
    assert any("did not finish" in p for p in partial.integrity.problems)
    assert run_replay(partial).verdict != "balanced"
    assert not list(tmp_path.rglob("*.tmp"))


def test_writer_context_aborts_on_error(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError):
        with TraceWriter(path, TraceMeta()) as w:
            w.append_rows(rows(3))
            raise RuntimeError("recorder failed")
    assert not path.exists()
    assert not read_trace(tmp_path / "t.parquet.partial").integrity.clean


def test_metadata_checksum_catches_a_flipped_bit_in_the_footer(tmp_path):
    path = _balanced_trace(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.rindex(b'"kernel_release"') + 3  # inside a key name: valid JSON either way
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChargetraceError, match="damaged footer"):
        read_trace(path)
