"""Kernel pointers -> stable opaque ids: the one owner of that numbering.

Folio ids are ``struct folio *`` values: shared as they are, they would reveal
the recorded kernel's memory layout (vmemmap base, KASLR). Each distinct
pointer becomes a small id, numbered by first appearance (``folio`` before
``folio_new`` within a row), the same in both columns, so every relation the
replay needs (same folio, transfer from/to) survives. 0 stays 0.

The writer keeps one :class:`PointerMap` across all segments of a recording
(pointers are hidden at record time by default); ``chargetrace anonymize``
runs one over an older trace. Limits: ids are only stable within one trace.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["PointerMap", "POINTER_COLUMNS"]

POINTER_COLUMNS = ("folio", "folio_new")


class PointerMap:
    """Pointer -> opaque id, numbered by first appearance, kept across batches."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {0: 0}

    def map_table(self, table: pa.Table) -> pa.Table:
        """The table with its pointer columns replaced by ids."""
        if table.num_rows == 0:
            return table
        cols = [table.column(name).to_numpy() for name in POINTER_COLUMNS]
        # Interleave so that ids follow first appearance row by row.
        both = np.column_stack(cols).ravel()
        uniq, first, inverse = np.unique(both, return_index=True, return_inverse=True)
        ids = np.empty(len(uniq), np.uint64)
        known = self._ids
        for j in np.argsort(first, kind="stable"):
            key = int(uniq[j])
            got = known.get(key)
            if got is None:
                got = known[key] = len(known)  # 0 is taken by "no folio"
            ids[j] = got
        mapped = ids[inverse.ravel()].reshape(-1, 2)
        for i, name in enumerate(POINTER_COLUMNS):
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(mapped[:, i], pa.uint64()))
        return table
