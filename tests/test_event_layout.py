"""The event row has one source of truth: struct ct_event in tracer/bpf/common.h.

The numpy dtype is generated from it (tracer/decode.py); these tests fail when
the C compiler lays the struct out differently from the dtype, or when the
Arrow schema (traces/schema.py) or replay's Event (replay/events.py) disagree
with it in name, type or order.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import typing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from chargetrace.replay.events import Event
from chargetrace.traces.schema import ARROW_SCHEMA, COLUMNS
from chargetrace.tracer.decode import _COMMON_H, C_TYPES, EVENT_DTYPE, NUMERIC_FIELDS, parse_event_struct

# Record fields that become dictionary strings (codes looked up in Python).
_CODED = {"kind", "probe", "item", "comm"}
_ARROW_OF_C = {"u64": pa.uint64(), "s64": pa.int64(), "u32": pa.uint32(), "s32": pa.int32(), "u16": pa.uint16()}


def _c_layout(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """field -> (offset, size) as gcc lays out struct ct_event."""
    text = _COMMON_H.read_text()
    struct = re.search(r"struct ct_event\s*\{.*?\};", text, re.S)
    assert struct
    fields = [name for name, _c, _n in parse_event_struct()]
    src = "\n".join([
        "#include <stdio.h>", "#include <stddef.h>", "#include <stdint.h>",
        "typedef uint64_t u64; typedef int64_t s64; typedef uint32_t u32; typedef int32_t s32;",
        "typedef uint16_t u16;",
        struct.group(0),
        "int main(void) {",
        *(f'  printf("{f} %zu %zu\\n", offsetof(struct ct_event, {f}), sizeof(((struct ct_event *)0)->{f}));'
          for f in fields),
        '  printf("SIZE %zu 0\\n", sizeof(struct ct_event));',
        "  return 0; }",
    ])
    (tmp_path / "layout.c").write_text(src)
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(tmp_path / "layout.c")], check=True)
    out = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout
    return {name: (int(off), int(size)) for name, off, size in (ln.split() for ln in out.splitlines())}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to lay out the C struct")
def test_dtype_matches_the_c_compilers_layout(tmp_path: Path) -> None:
    layout = _c_layout(tmp_path)
    assert layout.pop("SIZE")[0] == EVENT_DTYPE.itemsize
    assert list(layout) == list(EVENT_DTYPE.names)
    for name, (offset, size) in layout.items():
        dt, dt_off = EVENT_DTYPE.fields[name][:2]
        assert (dt_off, dt.itemsize) == (offset, size), name


def test_every_c_field_has_a_column_of_its_type() -> None:
    for name, ctype, _n in parse_event_struct():
        assert name in COLUMNS, f"struct ct_event.{name} has no trace column"
        col = ARROW_SCHEMA.field(name).type
        if name in _CODED:
            assert pa.types.is_dictionary(col) and col.value_type == pa.string(), name
        else:
            # Same signedness and width (the decoder copies the numbers as they are).
            assert col == _ARROW_OF_C[ctype], f"{name}: C {ctype}, Arrow {col}"
            assert np.dtype(C_TYPES[ctype]) == EVENT_DTYPE.fields[name][0], name
    assert set(NUMERIC_FIELDS) == {n for n, _c, _l in parse_event_struct()} - _CODED


def test_event_fields_are_the_columns_in_order() -> None:
    assert Event._fields == COLUMNS
    hints = typing.get_type_hints(Event)
    for fld in ARROW_SCHEMA:
        assert hints[fld.name] is (str if pa.types.is_dictionary(fld.type) else int), fld.name


def test_an_unknown_c_type_is_refused(tmp_path: Path) -> None:
    from chargetrace.traces import ChargetraceError

    h = tmp_path / "common.h"
    h.write_text("struct ct_event {\n    u64 ts_ns;\n    float x;\n};\n")
    with pytest.raises(ChargetraceError, match="float"):
        parse_event_struct(h)
