"""The compiled engine's arrays: the first pass over the trace, the state made
from it, and the state grown when the loop stops for room (kernel.py).

Maps and tables start small and double: the loop stops (``STOP_ROOM``) before
a row could overflow one, and :func:`make_room` grows what is short.
"""

from __future__ import annotations

import numpy as np

from chargetrace.traces.arrays import numpy_of, value_counts

from .drivers import device_drivers
from .kernel import MARGIN
from .layout import (
    ITEMS_FIXED, NF, NM, NP, NR, NS, NT, NU, NX, S_FFREE, S_FH_N, S_FHW, S_FIRST_TS, S_LAST_ACT, S_LAST_SEQ,
    S_NDRV, S_NFIND, S_NMEMCG, S_NPID, S_NTID, S_NUNP,
)
from .state import State
from .tables import grown, insert_all, new_map

__all__ = ["prepass", "new_state", "make_room", "grow_rows"]


def prepass(stream) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Kind counts (in report order: count, then first appearance) and the device
    frees' ``folio`` and ``pgmap_ops`` in row order (model.device_folios is every
    folio of a device free; drivers.device_drivers names their drivers)."""
    counts: dict[str, int] = {}
    folios, ops = [], []
    for file, pf, index in stream.row_groups():
        kind = stream.read(file, pf, index, ["kind"]).column("kind").combine_chunks()
        for word, n in value_counts(kind).items():
            counts[word] = counts.get(word, 0) + n
        if len(kind) and "device_free" in kind.dictionary.to_pylist():
            rows = numpy_of(kind.indices) == kind.dictionary.to_pylist().index("device_free")
            table = stream.read(file, pf, index, ["folio", "pgmap_ops"])
            folios.append(numpy_of(table.column("folio"))[rows])
            ops.append(numpy_of(table.column("pgmap_ops"))[rows])
    ordered = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    if not folios:
        return ordered, np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    return ordered, np.concatenate(folios), np.concatenate(ops)


def _set_of(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hk, hv = new_map(2 * len(keys) + 16)
    insert_all(hk, hv, keys.astype(np.uint64), np.ones(len(keys), np.int64))
    return hk, hv


def new_state(cfg, kl1, device_frees: tuple[np.ndarray, np.ndarray], observed, rows: int, ring: int) -> State:
    """The arrays of a replay of ``rows`` rows; ``device_frees``: prepass's folios and pgmap_ops."""
    fcap = min(max(rows, 16), 1 << 14)
    fhk, fhv = new_map(2 * fcap)
    mhk, mhv = new_map(64)
    thk, thv = new_map(64)
    phk, phv = new_map(64)
    dhk, dhv, ghk, ghv, dc, dkey, drivers = device_drivers(*device_frees, room=16)
    ohk, ohv = _set_of(np.array(sorted(observed), np.uint64))
    sc = np.zeros(NS, np.int64)
    sc[S_FIRST_TS] = -1
    sc[S_LAST_SEQ] = -1
    sc[S_LAST_ACT] = -1
    sc[S_NDRV] = drivers
    nitems, nkinds = len(ITEMS_FIXED) + 8, len(kl1)
    return State(
        fhk, fhv, np.zeros((fcap, NF), np.int64), np.zeros(fcap, np.uint64), np.zeros(fcap, np.int64),
        mhk, mhv, np.zeros((16, NM), np.int64), np.zeros(16, np.int64), np.zeros((16, nitems), np.int64),
        np.zeros((16, nitems), np.int64), np.zeros((16, nkinds, 3), np.int64), np.zeros((16, nitems, 3), np.int64),
        thk, thv, np.zeros((16, NT), np.int64), np.zeros(16, np.int64),
        phk, phv, np.zeros((16, NP), np.int64), dhk, dhv, ohk, ohv,
        np.zeros(ring + 2 * MARGIN, np.uint64), np.zeros(ring + 2 * MARGIN, np.int64),
        sc, np.zeros(NR, np.int64), np.zeros(NR, np.int64), np.zeros(NR, np.int64),
        np.zeros((1024, NX), np.int64), np.zeros((256, NU), np.int64), cfg, kl1, ghk, ghv, dc, dkey,
    )


def grow_rows(a: np.ndarray, need: int) -> np.ndarray:
    """``a`` with at least ``need`` rows (doubling), old rows kept."""
    if a.shape[0] >= need:
        return a
    out = np.zeros((max(need, 2 * a.shape[0]),) + a.shape[1:], a.dtype)
    out[: a.shape[0]] = a
    return out


def _cols(a: np.ndarray, need: int) -> np.ndarray:
    """``a`` with at least ``need`` columns (axis 1), old columns kept."""
    if a.shape[1] >= need:
        return a
    out = np.zeros((a.shape[0], max(need, 2 * a.shape[1])) + a.shape[2:], a.dtype)
    out[:, : a.shape[1]] = a
    return out


def make_room(st: State, items: int, kinds: int) -> State:
    """``st`` with room for the next rows (kernel.room) and ``items``/``kinds`` codes."""
    sc = st.sc
    nf = int(sc[S_FH_N]) + 2 * MARGIN
    fhk, fhv = grown(st.fhk, st.fhv, nf)
    free_rows = int(sc[S_FFREE]) + st.fd.shape[0] - int(sc[S_FHW])
    fd, fkey, ffree = st.fd, st.fkey, st.ffree
    if free_rows < 2 * MARGIN:
        need = int(sc[S_FHW]) + 2 * MARGIN
        fd, fkey, ffree = grow_rows(fd, need), grow_rows(fkey, need), grow_rows(ffree, need)
    nm = int(sc[S_NMEMCG]) + 2 * MARGIN
    nt = int(sc[S_NTID]) + 2 * MARGIN
    npid = int(sc[S_NPID]) + 2 * MARGIN
    ndrv = int(sc[S_NDRV]) + 2 * MARGIN
    return st._replace(
        fhk=fhk, fhv=fhv, fd=fd, fkey=fkey, ffree=ffree,
        **_grow_map(st, "mhk", "mhv", nm),
        md=grow_rows(st.md, nm), mkey=grow_rows(st.mkey, nm), mcnt=_cols(grow_rows(st.mcnt, nm), items),
        mrows=_cols(grow_rows(st.mrows, nm), items), l1k=_cols(grow_rows(st.l1k, nm), kinds),
        l1i=_cols(grow_rows(st.l1i, nm), items), **_grow_map(st, "thk", "thv", nt), td=grow_rows(st.td, nt),
        tkey=grow_rows(st.tkey, nt), **_grow_map(st, "phk", "phv", npid), pd=grow_rows(st.pd, npid),
        fb=grow_rows(st.fb, int(sc[S_NFIND]) + 2 * MARGIN), ub=grow_rows(st.ub, int(sc[S_NUNP]) + nt),
        **_grow_map(st, "ghk", "ghv", ndrv), dc=grow_rows(st.dc, ndrv), dkey=grow_rows(st.dkey, ndrv),
    )


def _grow_map(st: State, k: str, v: str, need: int) -> dict:
    keys, vals = grown(getattr(st, k), getattr(st, v), need)
    return {k: keys, v: vals}
