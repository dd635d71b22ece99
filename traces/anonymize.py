"""Replace kernel pointers in a trace with stable opaque ids.

Folio ids are ``struct folio *`` values: shared as they are, they would reveal
the recorded kernel's memory layout (vmemmap base, KASLR). Each distinct
pointer becomes a small id, numbered by first appearance (``folio`` before
``folio_new`` within a row), the same in both columns, so every relation the
replay needs (same folio, transfer from/to) survives. 0 stays 0.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa

from .metadata import TraceMeta
from .reader import Trace

__all__ = ["anonymize"]

_POINTER_COLUMNS = ("folio", "folio_new")


def anonymize(trace: Trace) -> tuple[pa.Table, TraceMeta]:
    table = trace.table
    cols = [table.column(name).to_numpy() for name in _POINTER_COLUMNS]
    # Interleave so that ids follow first appearance row by row.
    both = np.column_stack(cols).ravel()
    uniq, first, inverse = np.unique(both, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    # 0 (no folio) keeps id 0; real pointers are numbered from 1.
    zero = np.searchsorted(uniq, 0)
    has_zero = zero < len(uniq) and uniq[zero] == 0
    ids = rank.astype(np.uint64) + 1
    if has_zero:
        ids = np.where(rank > rank[zero], rank, rank + 1).astype(np.uint64)
        ids[zero] = 0
    mapped = ids[inverse].reshape(-1, 2)
    for i, name in enumerate(_POINTER_COLUMNS):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(mapped[:, i], pa.uint64()))
    meta = copy.deepcopy(trace.meta)
    meta.anonymized = True
    return table, meta
