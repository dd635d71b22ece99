"""Which driver a device-private page belongs to: its pgmap's ops, named.

Scope: the probes record ``page_pgmap(page)->ops`` (a ``struct
dev_pagemap_ops *``) on every device event they read a device page for
(``device_free``, ``device_fault``, ``device_fault_done``; the ``pgmap_ops``
column, traces/SCHEMA.md). Every driver that hands out device-private memory
passes ``memremap_pages()`` a pgmap whose ``ops`` points to a static const
table of its own, so the pointer names the driver. This module resolves it
at record time through /proc/kallsyms (``dmirror_devmem_ops [test_hmm]``) and
a catalogue of the known tables (:data:`CATALOGUE`, docs/drivers.md), and
keeps the metadata's ``pgmaps`` table (id -> symbol, module, driver) as new
pointers appear; the raw pointer never goes into the trace unless the
recording keeps raw pointers.

Limits: a ``static const`` table is a data symbol, listed in /proc/kallsyms
only with CONFIG_KALLSYMS_ALL (Debian's kernels and the lab's have it);
without it the entry has no symbol and says so in ``driver``. A symbol the
catalogue does not know is kept as its name (and module). A table in a
module loaded after the pointer was seen is found by reading kallsyms again,
once per new pointer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chargetrace.traces import TraceMeta

__all__ = ["KnownDriver", "CATALOGUE", "driver_name", "KallsymsData", "PgmapTable", "UNNAMED"]


@dataclass(frozen=True)
class KnownDriver:
    """A driver's ``struct dev_pagemap_ops`` table and where its name comes from."""

    symbol: str
    module: str  # as /proc/kallsyms shows it ("-" becomes "_"); "" when built in
    driver: str
    source: str  # file that defines the table


#: The known tables (docs/drivers.md says where each name was checked).
CATALOGUE: tuple[KnownDriver, ...] = (
    KnownDriver("dmirror_devmem_ops", "test_hmm", "test_hmm (dmirror)", "lib/test_hmm.c"),
    KnownDriver("nouveau_dmem_pagemap_ops", "nouveau", "nouveau", "drivers/gpu/drm/nouveau/nouveau_dmem.c"),
    KnownDriver("svm_migrate_pgmap_ops", "amdgpu", "amdgpu (kfd svm)", "drivers/gpu/drm/amd/amdkfd/kfd_migrate.c"),
    KnownDriver("drm_pagemap_pagemap_ops", "drm_gpusvm_helper", "drm_pagemap (xe)", "drivers/gpu/drm/drm_pagemap.c"),
    KnownDriver("uvm_devmem_ops", "nvidia_uvm", "nvidia-uvm", "kernel-open/nvidia-uvm/uvm_devmem.c"),
    KnownDriver("uvm_pmm_devmem_ops", "nvidia_uvm", "nvidia-uvm", "kernel-open/nvidia-uvm/uvm_pmm_gpu.c"),
)

_BY_SYMBOL = {d.symbol: d for d in CATALOGUE}

#: ``driver`` of a pointer that no data symbol in /proc/kallsyms starts at.
UNNAMED = "unknown (no symbol: kallsyms lists no data symbol there; CONFIG_KALLSYMS_ALL?)"


def driver_name(symbol: str, module: str) -> str:
    """The catalogue's name for an ops table, else the symbol itself (with its module)."""
    known = _BY_SYMBOL.get(symbol)
    if known is not None:
        return known.driver
    if not symbol:
        return UNNAMED
    return f"{symbol} [{module}]" if module else symbol


class KallsymsData:
    """Data symbols of /proc/kallsyms by address, read when first asked."""

    #: Symbol types of data (initialised, read-only, bss; upper case = global).
    _DATA_TYPES = frozenset(b"dDrRbB")

    def __init__(self, path: Path = Path("/proc/kallsyms")) -> None:
        self.path = path
        self._table: dict[int, tuple[str, str]] | None = None

    def _read(self) -> dict[int, tuple[str, str]]:
        table: dict[int, tuple[str, str]] = {}
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) < 3 or len(parts[1]) != 1 or parts[1][0] not in self._DATA_TYPES:
                        continue
                    try:
                        addr = int(parts[0], 16)
                    except ValueError:
                        continue
                    if not addr:
                        continue  # kptr_restrict hides addresses: nothing to match
                    module = parts[3].strip(b"[]").decode("ascii", "replace") if len(parts) > 3 else ""
                    table.setdefault(addr, (parts[2].decode("ascii", "replace"), module))
        except OSError:
            pass
        return table

    def lookup(self, address: int) -> tuple[str, str]:
        """(symbol, module) starting at ``address``; ("", "") if none. A miss
        re-reads the file once (a module loaded since the last read)."""
        if self._table is None:
            self._table = self._read()
        found = self._table.get(address)
        if found is None:
            self._table = self._read()
            found = self._table.get(address, ("", ""))
        return found


class PgmapTable:
    """Keeps ``meta.pgmaps`` up to date with the ``pgmap_ops`` values decoded.

    ``id_of`` gives the value a raw pointer has in the trace (the writer's
    :meth:`TraceWriter.pgmap_id`: an opaque id, or the pointer itself with raw
    pointers); entries are keyed by it.
    """

    def __init__(self, meta: TraceMeta, id_of: Callable[[int], int], kallsyms: KallsymsData | None = None) -> None:
        self.meta = meta
        self._id_of = id_of
        self._kallsyms = kallsyms or KallsymsData()
        self._seen: set[int] = set()
        # [] = recorded, no device page seen yet (None would mean "not recorded").
        meta.pgmaps = []

    def note(self, columns: dict[str, Any]) -> None:
        """Name the new raw pointers of a decoded batch's ``pgmap_ops`` column.
        Call before the batch goes to the writer, which replaces them by ids."""
        column = columns.get("pgmap_ops")
        if column is None or len(column) == 0:
            return
        values = np.unique(column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column, np.uint64))
        for raw in values.tolist():
            if not raw or raw in self._seen:
                continue
            self._seen.add(raw)
            symbol, module = self._kallsyms.lookup(raw)
            assert self.meta.pgmaps is not None
            self.meta.pgmaps.append({"id": self._id_of(raw), "symbol": symbol, "module": module,
                                     "driver": driver_name(symbol, module)})
