"""The compiled per-event loop: for each row the rules check it (rules.py),
then the model applies it (model.py): the reference automaton's order.

:func:`run` walks rows ``start..n-1`` of one batch and stops early, returning
the row it stopped at and why (``S_STOP``): a map or buffer might fill (the
driver grows it), a recorder sample row comes (the driver applies it with the
reference code), or ``seq`` does not increase (the driver falls back to the
reference engine, whose reader sorts).
"""

from __future__ import annotations

from numba import njit

from .cache import LOOP
from .layout import (
    S_FFREE, S_FH_N, S_FHW, S_LAST_SEQ, S_NDRV, S_NFIND, S_NMEMCG, S_NPID, S_NTID, S_NUNP, S_RING_N, S_STOP,
    STOP_ORDER, STOP_ROOM, STOP_SAMPLE, T_PEND_ON,
)
from .model import apply, free_without_uncharge
from .rules import check
from .state import evict, is_sample

__all__ = ["run", "flush_pending", "MARGIN"]

#: Room kept free before each row: a row adds at most 3 folio states, 3 memcgs,
#: 1 thread, 2 processes, 5 findings, 1 unpaired device free and 1 driver.
MARGIN = 8


@njit(**LOOP)
def room(st):
    sc = st.sc
    folio_rows = sc[S_FFREE] + st.fd.shape[0] - sc[S_FHW]
    return (folio_rows >= MARGIN and 2 * (sc[S_FH_N] + MARGIN) <= st.fhk.shape[0]
            and sc[S_NMEMCG] + MARGIN <= st.md.shape[0] and 2 * (sc[S_NMEMCG] + MARGIN) <= st.mhk.shape[0]
            and sc[S_NTID] + MARGIN <= st.td.shape[0] and 2 * (sc[S_NTID] + MARGIN) <= st.thk.shape[0]
            and sc[S_NPID] + MARGIN <= st.pd.shape[0] and 2 * (sc[S_NPID] + MARGIN) <= st.phk.shape[0]
            and sc[S_NFIND] + MARGIN <= st.fb.shape[0] and sc[S_NUNP] + MARGIN <= st.ub.shape[0]
            and sc[S_RING_N] + MARGIN <= st.ringk.shape[0]
            and sc[S_NDRV] + MARGIN <= st.dc.shape[0] and 2 * (sc[S_NDRV] + MARGIN) <= st.ghk.shape[0])


@njit(**LOOP)
def run(st, ev, start, n):
    """Replay rows start..n-1; returns the first row not replayed (n when done)."""
    sc = st.sc
    for i in range(start, n):
        evict(st)
        if not room(st):
            sc[S_STOP] = STOP_ROOM
            return i
        if ev.seq[i] <= sc[S_LAST_SEQ]:
            sc[S_STOP] = STOP_ORDER
            return i
        if is_sample(ev.kind[i]):
            sc[S_STOP] = STOP_SAMPLE
            return i
        check(st, ev, i)
        apply(st, ev, i)
    # No store to sc after the loop: with one there (sc[S_STOP] = 0), LLVM made the
    # whole loop 15x slower (1.55 us vs 0.10 us per event, measured on fault rows).
    return n


@njit(**LOOP)
def flush_pending(st):
    """End of trace: device frees still waiting for their uncharge join the
    unpaired list (Model.unpaired_device_frees includes them), in thread order."""
    for t in range(st.sc[S_NTID]):
        if st.td[t, T_PEND_ON]:
            st.td[t, T_PEND_ON] = 0
            free_without_uncharge(st, t, -1, -1)
