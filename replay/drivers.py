"""Per-driver figures of device-private memory: what each driver's pages did.

Scope: device events name the driver whose pgmap a device page belongs to
through the ``pgmap_ops`` id (schema 3; the metadata's ``pgmaps`` table names
each id, tracer/drivers.py). The recorder reads it on device frees and on
device faults; a migration row carries none (a migrate_vma call is per
range, not per page), so migrated pages are attributed here per folio:

* a device folio's driver is the ``pgmap_ops`` of its ``device_free`` rows
  (a device page never changes pgmap while its memory is mapped);
* a transfer (``mem_cgroup_migrate``) *to* a device folio migrates a page to
  that driver's memory; one *from* a device folio, or made inside a device
  fault (the driver's ``migrate_to_ram``), migrates a page back from it.

The model feeds :class:`DriverTally` from its transitions (it owns the fault
windows and the folio states); :func:`driver_rows` reads the tally and the
model's end state. Id 0 collects device events nothing attributes (a trace
recorded before schema 3, or a device folio never freed in the trace).

Limits: a device page migrated to the device and neither freed nor faulted
back in the trace cannot be attributed (id 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from chargetrace.traces.arrays import kind_mask, numpy_of

from .events import Event

if TYPE_CHECKING:
    from chargetrace.traces import TraceMeta

    from .model import Model

__all__ = ["DriverRow", "DriverTally", "device_drivers", "driver_rows", "UNATTRIBUTED"]

#: Name of id 0: device events no pgmap_ops attributes.
UNATTRIBUTED = "unattributed (no pgmap_ops recorded)"


def device_drivers(table: pa.Table) -> dict[int, int]:
    """Device folio -> its ``pgmap_ops`` id, from the trace's device frees."""
    ops = numpy_of(table.column("pgmap_ops"))
    rows = kind_mask(table.column("kind"), "device_free") & (ops != 0)
    if not rows.any():
        return {}
    return dict(zip(numpy_of(table.column("folio"))[rows].tolist(), ops[rows].tolist()))


@dataclass
class DriverRow:
    """One driver's figures (pages unless said otherwise)."""

    pgmap: int  # the trace's pgmap_ops id (0 = unattributed)
    driver: str
    symbol: str
    module: str
    device_faults: int = 0  # device_fault rows (CPU faults on its pages)
    migrated_to_device: int = 0
    migrated_from_device: int = 0
    freed: int = 0
    charged_at_end: int = 0  # its device pages the model holds charged at the end

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriverTally:
    """Counts per ``pgmap_ops`` id, fed by the model's transitions."""

    def __init__(self, folio_driver: dict[int, int]) -> None:
        self.folio_driver = folio_driver
        self.faults: dict[int, int] = {}
        self.to_device: dict[int, int] = {}
        self.from_device: dict[int, int] = {}
        self.freed: dict[int, int] = {}

    @staticmethod
    def _add(counts: dict[int, int], key: int, n: int) -> None:
        counts[key] = counts.get(key, 0) + n

    def device_fault(self, ev: Event) -> None:
        self._add(self.faults, ev.pgmap_ops, 1)

    def device_free(self, ev: Event) -> None:
        self._add(self.freed, ev.pgmap_ops or self.folio_driver.get(ev.folio, 0), ev.nr_pages or 1)

    def folio_figures(self) -> dict[str, dict[int, int]]:
        """The figures counted from folio rows (transfers, frees): each folio's rows
        are in one bucket of a partitioned replay (replay/fleet_partition.py), so
        buckets' figures add up. Faults are not among them: every bucket replays
        the device fault rows (their windows attribute migrations back)."""
        return {"to_device": dict(self.to_device), "from_device": dict(self.from_device), "freed": dict(self.freed)}

    def add(self, figures: dict[str, dict[int, int]]) -> None:
        """Add another bucket's :meth:`folio_figures`."""
        for name, counts in figures.items():
            for key, n in counts.items():
                self._add(getattr(self, name), key, n)

    def transfer(self, ev: Event, nr: int, fault_pgmap: int | None, device_folios: frozenset[int]) -> None:
        """A mem_cgroup_migrate(folio -> folio_new) of ``nr`` pages; ``fault_pgmap``:
        the pgmap_ops of the device fault open on its thread (None: none open)."""
        new_driver = self.folio_driver.get(ev.folio_new)
        if new_driver is not None or ev.folio_new in device_folios:
            self._add(self.to_device, new_driver or 0, nr)
        elif ev.folio in self.folio_driver:
            self._add(self.from_device, self.folio_driver[ev.folio], nr)
        elif fault_pgmap is not None or ev.folio in device_folios:
            # Inside a driver's migrate_to_ram the source is the faulting device page.
            self._add(self.from_device, fault_pgmap or 0, nr)


def driver_rows(model: "Model", meta: "TraceMeta") -> list[DriverRow]:
    """One row per driver the trace names or that has device events, by id."""
    tally = model.drivers
    named = {int(e["id"]): e for e in (meta.pgmaps or [])}
    held: dict[int, int] = {}
    for folio, state in model.folios.items():
        if state.memcg and folio in model.device_folios:
            held[tally.folio_driver.get(folio, 0)] = held.get(tally.folio_driver.get(folio, 0), 0) + state.nr
    ids = set(named) | set(tally.faults) | set(tally.to_device) | set(tally.from_device) | set(tally.freed) | set(held)
    rows = []
    for pgmap in sorted(ids):
        entry = named.get(pgmap, {})
        driver = entry.get("driver") or (UNATTRIBUTED if pgmap == 0 else f"pgmap_ops id {pgmap} (not in the metadata)")
        rows.append(DriverRow(pgmap, driver, entry.get("symbol", ""), entry.get("module", ""),
                              tally.faults.get(pgmap, 0), tally.to_device.get(pgmap, 0),
                              tally.from_device.get(pgmap, 0), tally.freed.get(pgmap, 0), held.get(pgmap, 0)))
    return rows


