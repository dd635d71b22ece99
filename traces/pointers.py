"""Kernel pointers -> stable opaque ids: the one owner of that numbering.

Folio ids are ``struct folio *`` values: shared as they are, they would reveal
the recorded kernel's memory layout (vmemmap base, KASLR). Each distinct
pointer becomes a small id, numbered by first appearance (``folio`` before
``folio_new`` within a row), the same in both columns, so every relation the
replay needs (same folio, transfer from/to) survives. 0 stays 0.

``pgmap_ops`` (schema 3) holds ``struct dev_pagemap_ops *`` values: addresses
inside a driver module or the kernel image, which would reveal where they were
loaded. They get ids of their own, numbered the same way; the metadata's
``pgmaps`` table (symbol, module, driver per id) is keyed by the same ids
(:meth:`PointerMap.pgmap_id`, :meth:`PointerMap.map_pgmaps`).

The writer keeps one :class:`PointerMap` across all segments of a recording
(pointers are hidden at record time by default); ``chargetrace anonymize``
runs one over an older trace. Limits: ids are only stable within one trace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["PointerMap", "POINTER_COLUMNS", "PGMAP_COLUMN"]

POINTER_COLUMNS = ("folio", "folio_new")
#: The column of driver ops pointers (its own id space).
PGMAP_COLUMN = "pgmap_ops"


def _assign(known: dict[int, int], values: np.ndarray) -> np.ndarray:
    """Ids for ``values`` (numbered by first appearance, new ones added to ``known``)."""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    ids = np.empty(len(uniq), np.uint64)
    for j in np.argsort(first, kind="stable"):
        key = int(uniq[j])
        got = known.get(key)
        if got is None:
            got = known[key] = len(known)  # 0 is taken by "none"
        ids[j] = got
    return ids[inverse.ravel()]


class PointerMap:
    """Pointer -> opaque id, numbered by first appearance, kept across batches."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {0: 0}
        self._pgmap_ids: dict[int, int] = {0: 0}

    def pgmap_id(self, pointer: int) -> int:
        """The id ``pointer`` has (or gets now) in the ``pgmap_ops`` column."""
        return int(_assign(self._pgmap_ids, np.array([pointer], np.uint64))[0])

    def map_pgmaps(self, entries: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """The metadata ``pgmaps`` table with its raw ``id`` pointers replaced by ids."""
        if entries is None:
            return None
        return [{**e, "id": self.pgmap_id(int(e["id"]))} for e in entries]

    def map_table(self, table: pa.Table) -> pa.Table:
        """The table with its pointer columns replaced by ids."""
        if table.num_rows == 0:
            return table
        cols = [table.column(name).to_numpy() for name in POINTER_COLUMNS]
        # Interleave so that ids follow first appearance row by row.
        mapped = _assign(self._ids, np.column_stack(cols).ravel()).reshape(-1, 2)
        for i, name in enumerate(POINTER_COLUMNS):
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(mapped[:, i], pa.uint64()))
        index = table.schema.get_field_index(PGMAP_COLUMN)
        if index >= 0:
            ops = _assign(self._pgmap_ids, table.column(PGMAP_COLUMN).to_numpy())
            table = table.set_column(index, PGMAP_COLUMN, pa.array(ops, pa.uint64()))
        return table
