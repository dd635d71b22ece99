"""Damage generators of the fuzz corpus: one per category of issue 8.

Each generator takes a seeded RNG, a balanced base trace and an output path,
writes one damaged, filtered or forged trace there and returns a one-line
detail and the path. A detail starting with :data:`VALID` declares damage that
stays within valid values (balanced may then be the right answer).
tests/fuzz/fuzz_corpus.py picks the generator and the base per case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chargetrace.traces import ARROW_SCHEMA
from chargetrace.traces.schema import METADATA_KEY

__all__ = ["VALID", "GENERATORS", "OTHER_BASES"]

#: Prefix of a case detail whose damage stays within valid values: balanced may be right.
VALID = "valid:"

#: Every base of the run, for generators that mix two recordings.
OTHER_BASES: list = []


# -- helpers -------------------------------------------------------------------------------------

def _write(table: pa.Table, meta: dict | bytes | None, out: Path) -> Path:
    kv = None if meta is None else {METADATA_KEY: meta if isinstance(meta, bytes) else json.dumps(meta)}
    pq.write_table(table.replace_schema_metadata(kv), out, write_page_checksum=True)
    return out


def _set_column(table: pa.Table, name: str, array: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _kinds(table: pa.Table) -> list[str]:
    return table.column("kind").cast(pa.string()).to_pylist()


# -- generators: (rng, base, out) -> (detail, path) ----------------------------------------------

def byte_flip(rng, base, out):
    data = bytearray(base.path.read_bytes())
    # Mostly data pages, sometimes the footer (metadata, statistics, offsets).
    pos = rng.randrange(4, len(data) - 8) if rng.random() < 0.8 else rng.randrange(max(4, len(data) - 6000), len(data) - 8)
    bit = rng.randrange(8)
    data[pos] ^= 1 << bit
    out.write_bytes(bytes(data))
    return f"bit {bit} of byte {pos}", out


def truncate(rng, base, out):
    data = base.path.read_bytes()
    cut = rng.choice([rng.randrange(0, len(data)), len(data) - rng.randrange(1, 64), rng.randrange(0, 16)])
    out.write_bytes(data[:cut])
    return f"first {cut} of {len(data)} bytes", out


def footer(rng, base, out):
    data = bytearray(base.path.read_bytes())
    how = rng.choice(["length", "magic", "append", "prepend", "zero-footer", "double-footer"])
    if how == "length":
        data[-8:-4] = rng.randrange(0, 1 << 32).to_bytes(4, "little")
    elif how == "magic":
        data[-4:] = rng.choice([b"PAR0", b"\0\0\0\0", b"PARE"])
    elif how == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
    elif how == "prepend":
        data = bytearray(b"PAR1" + bytes(rng.randrange(256) for _ in range(10))) + data
    elif how == "zero-footer":
        n = int.from_bytes(data[-8:-4], "little")
        data[-8 - n:-8] = bytes(n)
    else:
        data += data[-4096:]
    out.write_bytes(bytes(data))
    return how, out


def foreign(rng, base, out):
    how = rng.choice(["csv", "random", "empty", "foreign-parquet", "json", "directory", "fifo-like", "symlink-loop"])
    if how == "csv":
        out.write_text("seq,kind\n0,charge\n")
    elif how == "random":
        out.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))))
    elif how == "empty":
        out.write_bytes(b"")
    elif how == "foreign-parquet":
        pq.write_table(pa.table({"x": [1, 2, 3], "kind": ["a", "b", "c"]}), out)
    elif how == "json":
        out.write_text(json.dumps(base.meta))
    elif how == "directory":
        out.mkdir()
        (out / "seg-000000.parquet").write_bytes(b"PAR1")
    elif how == "fifo-like":
        out.mkdir()
        (out / "seg-000000.parquet").mkdir()
    else:
        out.symlink_to(out.name)  # a link to itself
    return how, out


def _columns(base) -> list[str]:
    """The schema's columns the base has (a version-2 base lacks the version-3 ones)."""
    return [n for n in ARROW_SCHEMA.names if n in base.table.column_names]


def drop_column(rng, base, out):
    name = rng.choice(_columns(base))
    return name, _write(base.table.drop_columns([name]), base.meta, out)


def rename_column(rng, base, out):
    name = rng.choice(_columns(base))
    names = [f"{n}_x" if n == name else n for n in base.table.column_names]
    return name, _write(base.table.rename_columns(names), base.meta, out)


_RETYPES = ["float64", "float32", "string", "int8", "bool", "binary", "uint64", "int64", "large_string", "decimal"]


def retype_column(rng, base, out):
    name = rng.choice(_columns(base))
    to = rng.choice(_RETYPES)
    col = base.table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    try:
        if to == "decimal":
            new = col.cast(pa.decimal128(38, 0))
        elif to in ("string", "large_string", "binary"):
            new = col.cast(pa.string()).cast(getattr(pa, to)())
        elif to == "bool":
            new = pa.array([bool(v) for v in col.to_pylist()])
        else:
            new = col.cast(getattr(pa, to)(), safe=False)
    except (pa.ArrowException, ValueError):
        new = pa.array([str(v) for v in col.to_pylist()])
        to = "string (fallback)"
    return f"{name} as {to}", _write(_set_column(base.table, name, new), base.meta, out)


def null_column(rng, base, out):
    name = rng.choice(_columns(base))
    col = base.table.column(name).combine_chunks()
    values = col.to_pylist()
    for _ in range(rng.randrange(1, 5)):
        values[rng.randrange(len(values))] = None
    return name, _write(_set_column(base.table, name, pa.array(values, col.type)), base.meta, out)


def duplicate_column(rng, base, out):
    name = rng.choice(_columns(base))
    table = base.table.append_column(name, base.table.column(name))
    return name, _write(table, base.meta, out)


def odd_values(rng, base, out):
    t = base.table
    n = t.num_rows
    how = rng.choice(["seq-top", "seq-shift", "negative-lost", "huge-kind", "huge-comm", "bad-utf8",
                      "ts-max", "nr-pages-max", "memcg-max", "value-min"])
    if how == "seq-top":  # seq up to 2**64 - 1, no row missing in between
        start = (1 << 64) - n
        t = _set_column(t, "seq", pa.array(np.arange(n, dtype=np.uint64) + np.uint64(start)))
        if rng.random() < 0.5:  # and a finding to render near the top (its context passes 2**64)
            kinds = _kinds(t)
            last = max(i for i, k in enumerate(kinds) if k == "uncharge")
            kinds[last] = "charge"
            t = _set_column(t, "kind", pa.array(kinds).dictionary_encode())
            how += " + finding"
        return how, _write(t, base.meta, out)
    if how == "seq-shift":
        shift = rng.randrange(1, 1 << 40)
        return how, _write(_set_column(t, "seq", pa.array(t.column("seq").to_numpy() + np.uint64(shift))),
                           base.meta, out)
    if how == "negative-lost":
        kinds = _kinds(t)
        i, j = rng.randrange(n), rng.randrange(n)
        kinds[i], kinds[j] = "lost", "lost"
        values = t.column("value").to_pylist()
        values[i], values[j] = 7, -7
        t = _set_column(_set_column(t, "kind", pa.array(kinds).dictionary_encode()), "value", pa.array(values, pa.int64()))
        return how, _write(t, base.meta, out)
    if how in ("huge-kind", "huge-comm"):
        name = how.split("-")[1]
        words = t.column(name).cast(pa.string()).to_pylist()
        words[rng.randrange(n)] = "C" * rng.choice([5000, 1 << 20])
        return how, _write(_set_column(t, name, pa.array(words).dictionary_encode()), base.meta, out)
    if how == "bad-utf8":
        name = rng.choice(["comm", "kind", "item", "probe"])
        words = [w.encode() for w in t.column(name).cast(pa.string()).to_pylist()]
        words[rng.randrange(n)] = b"\xff\xfe" + rng.choice([b"abc", b"\xc3"])
        # Write binary, then relabel it as UTF-8 in the file's Arrow schema.
        arr = pa.array(words, pa.binary()).view(pa.string())
        return f"{how} in {name}", _write(_set_column(t, name, arr), base.meta, out)
    # In range, so possibly harmless (a memcg on a fault row is not read): the
    # reader must survive them; a verdict of balanced may be right.
    name, value = {"ts-max": ("ts_ns", (1 << 64) - 1), "nr-pages-max": ("nr_pages", (1 << 32) - 1),
                   "memcg-max": ("memcg", (1 << 64) - 1), "value-min": ("value", -(1 << 63))}[how]
    col = t.column(name).to_pylist()
    col[rng.randrange(n)] = value
    return f"{VALID} {how}", _write(_set_column(t, name, pa.array(col, t.column(name).type)), base.meta, out)


def _meta_edits(rng, meta):
    m = json.loads(json.dumps(meta))
    how = rng.choice(["no-version", "version-true", "version-float", "version-string", "probes-strings",
                      "page-size-string", "ncpus-huge", "drops-list", "deep", "not-json", "array", "scope-list",
                      "era-number", "drops-negative", "scope-pid-float", "nan", "huge-key", "no-meta",
                      "anonymized-int", "mutations-dict"])
    if how == "no-version":
        m.pop("schema_version", None)
    elif how == "version-true":
        m["schema_version"] = True
    elif how == "version-float":
        m["schema_version"] = float(m.get("schema_version", 1))
    elif how == "version-string":
        m["schema_version"] = str(m.get("schema_version", 1))
    elif how == "probes-strings":
        m["probes"] = ["charge"]
    elif how == "page-size-string":
        m["page_size"] = "4096"
    elif how == "ncpus-huge":
        m["ncpus"] = 1e300
    elif how == "drops-list":
        m["drops"] = []
    elif how == "deep":
        depth = rng.choice([40, 5000, 100000])
        return how, ("[" * depth + "]" * depth).encode() if rng.random() < 0.5 else (
            json.dumps(m)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}").encode()
    elif how == "not-json":
        return how, b"{nope" + bytes([rng.randrange(256)])
    elif how == "array":
        return how, b"[1, 2]"
    elif how == "scope-list":
        m["scope"] = []
    elif how == "era-number":
        m["era"] = {"migrate": 7}
    elif how == "drops-negative":
        m["drops"] = {"total": -3, "per_cpu": {}}
    elif how == "scope-pid-float":
        m.setdefault("scope", {})["pid"] = 1.5
    elif how == "nan":
        return how, json.dumps(m)[:-1].encode() + b', "ncpus": NaN}'
    elif how == "huge-key":
        m["x" * 100] = "y" * (5 << 20)  # beyond the 4 MiB accepted
        return how, json.dumps(m).encode()
    elif how == "no-meta":
        return how, None
    elif how == "anonymized-int":
        m["anonymized"] = 1
    else:
        m["mutations"] = {"a": 1}
    return how, json.dumps(m).encode()


def broken_metadata(rng, base, out):
    how, raw = _meta_edits(rng, base.meta)
    return how, _write(base.table, raw, out)


def _copy_segdir(base, out) -> Path:
    shutil.copytree(base.segdir, out)
    return out


def _seg_with_meta(seg: Path, meta: dict) -> None:
    table = pq.read_table(seg)
    _write(table.replace_schema_metadata(None), meta, seg)


def mixed_segments(rng, base, out):
    d = _copy_segdir(base, out)
    segs = sorted(d.glob("seg-*.parquet"))
    how = rng.choice(["two-recordings", "one-without-id", "missing-middle", "duplicated-segment", "other-trace"])
    for i, seg in enumerate(segs):
        _seg_with_meta(seg, {**base.meta, "recording_id": "r1"})
    if how == "two-recordings":
        _seg_with_meta(segs[rng.randrange(len(segs))], {**base.meta, "recording_id": "r2"})
    elif how == "one-without-id":
        meta = dict(base.meta)
        meta.pop("recording_id", None)
        _seg_with_meta(segs[rng.randrange(len(segs))], meta)
    elif how == "missing-middle":
        segs[1].unlink()
    elif how == "duplicated-segment":
        shutil.copy(segs[0], d / "seg-000009.parquet")
    else:
        other = [b for b in OTHER_BASES if b is not base][0]
        table = other.table.slice(0, 200)
        _write(table, {**other.meta, "recording_id": "r1"}, d / "seg-000009.parquet")
    return how, d


def removed_rows(rng, base, out):
    kinds = _kinds(base.table)
    present = sorted(set(kinds) - {"lost"})
    how = rng.choice(["kind", "random", "first", "last", "one"])
    keep = np.ones(len(kinds), bool)
    if how == "kind":
        victim = rng.choice(present)
        keep &= np.array([k != victim for k in kinds])
        how = f"every {victim}"
    elif how == "random":
        keep[rng.sample(range(len(kinds)), rng.randrange(1, 50))] = False
    elif how == "first":
        keep[: rng.randrange(1, 20)] = False
    elif how == "last":
        keep[len(kinds) - rng.randrange(1, 20):] = False
    else:
        keep[rng.randrange(len(kinds))] = False
    if how == "last" and "rows" not in base.meta:
        # Known limit: a version 1 trace has no row count, so rows cut from its
        # end leave no trace; version 2 records ``rows``.
        how = f"{VALID} last (version 1: no row count)"
    return how, _write(base.table.filter(pa.array(keep)), base.meta, out)


def duplicated_seq(rng, base, out):
    n = base.table.num_rows
    idx = list(range(n))
    how = rng.choice(["row", "block", "whole"])
    if how == "row":
        i = rng.randrange(n)
        idx.insert(i, i)
    elif how == "block":
        i = rng.randrange(n - 100)
        idx[i + 50:i + 50] = range(i, i + 50)
    else:
        idx = idx + idx
    return how, _write(base.table.take(pa.array(idx)), base.meta, out)


def renamed_kinds(rng, base, out):
    kinds = _kinds(base.table)
    how = rng.choice(["all-Charge", "one-kind", "case", "random-row", "empty"])
    if how == "all-Charge":
        kinds = ["Charge"] * len(kinds)
    elif how == "one-kind":
        victim = rng.choice(sorted(set(kinds)))
        kinds = [f"{k}_v2" if k == victim else k for k in kinds]
    elif how == "case":
        kinds = [k.upper() for k in kinds]
    elif how == "random-row":
        kinds[rng.randrange(len(kinds))] = rng.choice(["memcg_stat2", "[/x]", "lost ", ""])
    else:
        kinds = [""] * len(kinds)
    return how, _write(_set_column(base.table, "kind", pa.array(kinds).dictionary_encode()), base.meta, out)


def drops_vs_lost(rng, base, out):
    t, m = base.table, json.loads(json.dumps(base.meta))
    how = rng.choice(["drops-no-lost", "lost-no-drops", "plus-minus", "per-cpu-mismatch", "lost-zero-drops"])
    if how == "drops-no-lost":
        m["drops"] = {"total": rng.choice([1, 5000]), "per_cpu": {"0": 0}}
        m["drops"]["per_cpu"]["0"] = m["drops"]["total"]
        return how, _write(t, m, out)
    if how == "per-cpu-mismatch":
        m["drops"] = {"total": 0, "per_cpu": {"1": 4}}
        return how, _write(t, m, out)
    kinds, values = _kinds(t), t.column("value").to_pylist()
    i = rng.randrange(len(kinds))
    kinds[i] = "lost"
    values[i] = {"lost-no-drops": 3, "plus-minus": 7, "lost-zero-drops": 0}[how]
    if how == "plus-minus":
        j = rng.randrange(len(kinds))
        kinds[j], values[j] = "lost", -7
    t = _set_column(_set_column(t, "kind", pa.array(kinds).dictionary_encode()), "value", pa.array(values, pa.int64()))
    return how, _write(t, m, out)


def float_folio(rng, base, out):
    name = rng.choice(["folio", "folio_new", "memcg", "seq", "value"])
    col = base.table.column(name).cast(pa.float64(), safe=False)
    return name, _write(_set_column(base.table, name, col), base.meta, out)


def markup(rng, base, out):
    m = json.loads(json.dumps(base.meta))
    text = rng.choice(["[/x]", "[bold red]x[/]", "[link=file:///etc]a[/link]", ":smile: [", "\x1b[31mred", "a\nb"])
    where = rng.choice(["host", "kernel_release", "command", "comm", "kind"])
    t = base.table
    if where == "command":
        m.setdefault("scope", {})["command"] = ["python3", "-c", f"print({text!r})"]
    elif where in ("comm", "kind"):
        words = t.column(where).cast(pa.string()).to_pylist()
        words[rng.randrange(len(words))] = text
        t = _set_column(t, where, pa.array(words).dictionary_encode())
    else:
        m[where] = text
    return f"{text!r} in {where}", _write(t, m, out)


GENERATORS = {
    "byte flips": byte_flip,
    "truncation": truncate,
    "footers": footer,
    "foreign files": foreign,
    "dropped columns": drop_column,
    "renamed columns": rename_column,
    "retyped columns": retype_column,
    "null columns": null_column,
    "duplicated columns": duplicate_column,
    "odd values": odd_values,
    "broken metadata": broken_metadata,
    "mixed segment dirs": mixed_segments,
    "removed rows": removed_rows,
    "duplicated seq": duplicated_seq,
    "renamed kinds": renamed_kinds,
    "drops vs lost rows": drops_vs_lost,
    "float folio": float_folio,
    "markup in text": markup,
}
