"""``chargetrace anonymize``: replace the kernel pointers of an older trace.

Traces recorded by this release hold opaque ids already (the writer maps them,
traces/pointers.py); this rewrites a trace that still holds raw
``struct folio *`` values, with the same numbering.
"""

from __future__ import annotations

import copy

import pyarrow as pa

from .metadata import TraceMeta
from .pointers import PointerMap
from .reader import Trace

__all__ = ["anonymize"]


def anonymize(trace: Trace) -> tuple[pa.Table, TraceMeta]:
    table = PointerMap().map_table(trace.table)
    meta = copy.deepcopy(trace.meta)
    meta.anonymized = True
    return table, meta
