"""Per-driver figures of device memory (replay/drivers.py), compiled.

The rules of who-is-whose are replay/drivers.py's docstring; each function
here names the ``DriverTally`` method it mirrors, and the model's transitions
(model.py) call them where ``Model`` calls the tally. A driver's figures are
one row of ``dc`` per ``pgmap_ops`` id met (``dkey`` holds the id), found
through the ``ghk``/``ghv`` map; row 0 is id 0 (unattributed). A device
folio's driver is the value the device-folio set (``dhk``/``dhv``) holds for
it: its row in ``dc``, 0 when no device free of it names one. The first pass
fills that set (:func:`device_drivers`) as ``drivers.device_drivers`` fills
the reference's dict; at the end :func:`tally_of` hands a reference
``DriverTally`` the same sums and the still-charged device folios their
drivers, so that ``drivers.driver_rows`` (the one owner of the report's rows)
reads them as it reads the reference model's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..drivers import DriverTally
from .cache import INLINE
from .layout import D_FAULTS, D_FREED, D_FROM_DEVICE, D_SEEN, D_TO_DEVICE, ND, S_NDRV, T_FLT_DRV, T_FLT_ON
from .state import tid_row
from .tables import find_all, h_find, h_row, insert_all, new_map

__all__ = ["driver_row", "driver_add", "tally_transfer", "tally_device_free", "device_drivers", "tally_of"]

#: Each figure's column in ``dc`` and its DriverTally dict.
_FIGURES = ((D_FAULTS, "faults"), (D_TO_DEVICE, "to_device"), (D_FROM_DEVICE, "from_device"), (D_FREED, "freed"))


@njit(**INLINE)
def driver_row(st, pgmap):
    """The row of ``pgmap_ops`` id ``pgmap`` in ``dc``, made when absent."""
    return h_row(st.ghk, st.ghv, st.dkey, st.sc, S_NDRV, pgmap)[0]


@njit(**INLINE)
def driver_add(st, r, figure, n):
    """DriverTally._add: the figure's sum, and the key's presence (D_SEEN, one bit per
    figure: the reference dict has the key even when the sum is 0)."""
    st.dc[r, figure] += n
    st.dc[r, D_SEEN] |= 1 << figure


@njit(**INLINE)
def tally_transfer(st, tid, folio, folio_new, nr):
    """DriverTally.transfer, with the device fault open on ``tid`` (if any)."""
    new = h_find(st.dhk, st.dhv, folio_new)  # its driver's row; -1: not a device folio
    if new >= 0:
        driver_add(st, new, D_TO_DEVICE, nr)  # to the device: the destination's driver
        return
    old = h_find(st.dhk, st.dhv, folio)
    if old > 0:
        driver_add(st, old, D_FROM_DEVICE, nr)  # from a device folio whose driver is known
        return
    t = tid_row(st, tid, False)
    if t >= 0 and st.td[t, T_FLT_ON]:
        # Inside a driver's migrate_to_ram the source is the faulting device page.
        driver_add(st, st.td[t, T_FLT_DRV], D_FROM_DEVICE, nr)
    elif old == 0:
        driver_add(st, 0, D_FROM_DEVICE, nr)  # a device folio no free attributes


@njit(**INLINE)
def tally_device_free(st, folio, nr_pages, pgmap):
    """DriverTally.device_free: the row's own pgmap_ops, else its folio's driver."""
    r = driver_row(st, pgmap) if pgmap != 0 else max(h_find(st.dhk, st.dhv, folio), 0)
    driver_add(st, r, D_FREED, nr_pages if nr_pages else 1)


def device_drivers(folios: np.ndarray, ops: np.ndarray, room: int):
    """From the first pass's device-free rows (``folio``, ``pgmap_ops``, in seq
    order): the device-folio set with each folio's driver row (the id of its
    last device free that names one, as the reference's dict keeps the last),
    the driver map with a row per id (row 0: id 0) and ``room`` rows to spare.
    Returns ``dhk, dhv, ghk, ghv, dc, dkey, rows used``."""
    folios, ops = folios.astype(np.uint64), ops.astype(np.uint64)
    devices = np.unique(folios)
    named = ops != 0
    last_folios, at = np.unique(folios[named][::-1], return_index=True)
    last_ops = ops[named][::-1][at]
    ids = np.concatenate([np.zeros(1, np.uint64), np.unique(last_ops)])
    drivers = np.zeros(devices.shape[0], np.int64)
    drivers[np.searchsorted(devices, last_folios)] = np.searchsorted(ids, last_ops)
    dhk, dhv = new_map(2 * devices.shape[0] + 16)
    insert_all(dhk, dhv, devices, drivers)
    ghk, ghv = new_map(2 * (ids.shape[0] + room))
    insert_all(ghk, ghv, ids, np.arange(ids.shape[0], dtype=np.int64))
    dkey = np.zeros(ids.shape[0] + room, np.uint64)
    dkey[: ids.shape[0]] = ids
    return dhk, dhv, ghk, ghv, np.zeros((ids.shape[0] + room, ND), np.int64), dkey, ids.shape[0]


def tally_of(st, charged: np.ndarray) -> tuple[DriverTally, frozenset[int]]:
    """A reference DriverTally with the loop's sums, and which of the folios still
    ``charged`` at the end are device folios (their drivers in the tally's
    ``folio_driver``): all that ``drivers.driver_rows`` reads of a model."""
    n = int(st.sc[S_NDRV])
    ids = st.dkey[:n].tolist()
    rows = find_all(st.dhk, st.dhv, charged.astype(np.uint64))
    device = rows >= 0
    folios = charged[device].tolist()
    tally = DriverTally({f: ids[r] for f, r in zip(folios, rows[device].tolist()) if r})
    seen = st.dc[:n, D_SEEN]
    for column, name in _FIGURES:
        counts = getattr(tally, name)
        for r in np.flatnonzero(seen & (1 << column)).tolist():
            counts[ids[r]] = int(st.dc[r, column])
    return tally, frozenset(folios)
