"""``chargetrace anonymize``: replace the kernel pointers of an older trace.

Traces recorded by this release hold opaque ids already (the writer maps them,
traces/pointers.py); this rewrites a trace that still holds raw
``struct folio *`` (and ``struct dev_pagemap_ops *``) values, with the same numbering.
"""

from __future__ import annotations

import copy

import pyarrow as pa

from .metadata import TraceMeta
from .pointers import PointerMap
from .reader import Trace

__all__ = ["anonymize"]


def anonymize(trace: Trace) -> tuple[pa.Table, TraceMeta]:
    pointers = PointerMap()
    table = pointers.map_table(trace.table)
    meta = copy.deepcopy(trace.meta)
    # The pgmaps table is keyed by the column's values: renumber it the same way.
    meta.pgmaps = pointers.map_pgmaps(meta.pgmaps)
    meta.anonymized = True
    return table, meta
