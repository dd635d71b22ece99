"""Bulk decoding of raw BPF records into trace columns.

The BPF side emits fixed-size ``struct ct_event`` records (tracer/bpf/common.h).
The transport copies them back to back into one buffer; :func:`decode`
views that buffer with a numpy structured dtype and builds Arrow columns
(dictionary-encoded strings via ``numpy.unique``), so no Python object is
made per event. The record layout (:data:`EVENT_DTYPE`) and the kind codes
are both parsed from common.h, the C side's single source for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from chargetrace.traces import KINDS, ChargetraceError

__all__ = ["EVENT_DTYPE", "EVENT_SIZE", "KIND_CODES", "C_TYPES", "NUMERIC_FIELDS", "decode", "dict_array",
           "parse_event_struct"]

_COMMON_H = Path(__file__).with_name("bpf") / "common.h"

#: C type in struct ct_event -> numpy type (little-endian, x86-64 / arm64).
C_TYPES: dict[str, str] = {"u64": "<u8", "s64": "<i8", "u32": "<u4", "s32": "<i4", "u16": "<u2", "char": "S"}


def parse_event_struct(path: Path = _COMMON_H) -> list[tuple[str, str, int]]:
    """(field, C type, array length or 0) of ``struct ct_event``, in order."""
    m = re.search(r"struct ct_event\s*\{(.*?)\};", path.read_text(), re.S)
    if not m:
        raise ChargetraceError(f"{path}: no struct ct_event")
    fields = []
    for ctype, name, length in re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;", m.group(1), re.M):
        if ctype not in C_TYPES:
            raise ChargetraceError(f"{path}: struct ct_event.{name}: type {ctype} has no numpy mirror")
        fields.append((name, ctype, int(length or 0)))
    return fields


def _dtype_from_c(fields: list[tuple[str, str, int]]) -> np.dtype:
    spec = [(name, f"S{n}" if ctype == "char" else C_TYPES[ctype]) for name, ctype, n in fields]
    # align=True lays the fields out as the C compiler does (natural alignment).
    return np.dtype(spec, align=True)


#: The record layout, generated from struct ct_event in bpf/common.h (the one
#: definition; tests/test_event_layout.py checks it against a C compiler, the
#: Arrow schema and replay's Event).
EVENT_DTYPE = _dtype_from_c(parse_event_struct())
EVENT_SIZE = EVENT_DTYPE.itemsize


def _parse_kind_codes(path: Path = _COMMON_H) -> dict[int, str]:
    codes = {int(num): name for name, num in re.findall(r"#define CT_KIND_(\w+) (\d+)", path.read_text())}
    unknown = set(codes.values()) - set(KINDS)
    if unknown:
        raise ChargetraceError(f"{path}: kinds not in the trace schema: {sorted(unknown)}")
    return codes


#: Record fields copied to the column of the same name as numbers; the others
#: (kind, probe, item, comm) are codes turned into dictionary strings.
NUMERIC_FIELDS: tuple[str, ...] = tuple(n for n in EVENT_DTYPE.names if n not in ("kind", "probe", "item", "comm"))

#: kind code -> schema kind name.
KIND_CODES: dict[int, str] = _parse_kind_codes()

_DICT = pa.dictionary(pa.int32(), pa.string())


def dict_array(indices: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    """A dictionary-encoded string column from int indices into ``names``."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32, copy=False)), pa.array(names, pa.string()))


def _lookup_column(codes: np.ndarray, table: Mapping[int, str]) -> pa.DictionaryArray:
    """Codes (small ints) -> names; codes absent from ``table`` become ``"?<n>"``."""
    uniq, inv = np.unique(codes, return_inverse=True)
    names = [table.get(int(c), f"?{int(c)}") for c in uniq]
    return dict_array(inv, names)


def decode(
    raw: bytes | bytearray | memoryview,
    probe_names: Mapping[int, str],
    item_tables: Mapping[int, Mapping[int, str]],
) -> dict[str, object]:
    """Columns for :meth:`TraceWriter.append_columns` from packed records.

    ``probe_names``: probe id -> probe string; ``item_tables``: probe id ->
    (item number -> name). Rows whose probe has no item table get ``item=""``
    (their item field is unused) or the number as text (unknown enum).
    """
    if len(raw) % EVENT_SIZE:
        raise ChargetraceError(f"event buffer of {len(raw)} bytes is not a multiple of {EVENT_SIZE}")
    ev = np.frombuffer(raw, dtype=EVENT_DTYPE)
    n = len(ev)
    cols: dict[str, object] = {}
    for name in NUMERIC_FIELDS:
        cols[name] = pa.array(np.ascontiguousarray(ev[name]))
    cols["kind"] = _lookup_column(ev["kind"], KIND_CODES)
    cols["probe"] = _lookup_column(ev["probe"], probe_names)
    # comm: unique 16-byte names -> dictionary.
    uniq, inv = np.unique(ev["comm"], return_inverse=True)
    cols["comm"] = dict_array(inv, [bytes(c).split(b"\0", 1)[0].decode("utf-8", "replace") for c in uniq])
    # item: named per (probe, number) pair.
    if n:
        key = (ev["probe"].astype(np.int64) << 32) | (ev["item"].astype(np.int64) & 0xFFFFFFFF)
        ukeys, inv = np.unique(key, return_inverse=True)
        names = []
        for k in ukeys.tolist():
            probe, item = k >> 32, k & 0xFFFFFFFF
            if item >= 1 << 31:
                item -= 1 << 32
            table = item_tables.get(probe)
            if table is None:
                names.append("")
            else:
                names.append(table.get(item, str(item)))
        cols["item"] = dict_array(inv, names)
    else:
        cols["item"] = dict_array(np.zeros(0, np.int32), [])
    return cols
