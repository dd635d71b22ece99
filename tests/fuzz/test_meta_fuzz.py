"""Property test: any JSON as trace metadata is either accepted with the
declared types or refused in one line — never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from chargetrace.traces import ChargetraceError, TraceMeta

_SCALARS = st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=True) | st.text(max_size=8)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                             max_size=4), max_leaves=20)
_FIELDS = ["schema_version", "probes", "drops", "scope", "era", "page_size", "ncpus", "anonymized", "rows",
           "complete", "recording_id", "mutations", "provenance", "armed_ns", "host"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6), st.booleans())
def test_any_metadata_is_typed_or_one_line(fields, with_version):
    if with_version:
        fields = {"schema_version": 2, **fields}
    raw = json.dumps(fields).encode()
    try:
        meta = TraceMeta.from_json(raw, "t.parquet")
    except ChargetraceError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("t.parquet: ")
        return
    assert isinstance(meta.schema_version, int) and not isinstance(meta.schema_version, bool)
    assert isinstance(meta.page_size, int) and isinstance(meta.ncpus, int)
    assert isinstance(meta.drops, dict) and isinstance(meta.probes, list)
    assert meta.rows is None or isinstance(meta.rows, int)
