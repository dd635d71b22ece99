"""R15's per-event checks (replay/rules/largefolio.py ``LargeFolios``), compiled.

A large folio's page count is a power of two (its order) and, where the model
holds the folio charged, equal to the size it holds (after the splits the
model applied, model.py ``apply_split``); a split's orders fall and its pieces
stay in the folio's memcg. Like the reference rule, these read the folio state
*before* the event and never re-derive a charge. Messages are results.py's.
"""

from __future__ import annotations

from numba import njit

from .cache import INLINE
from .layout import (
    F_MEMCG, F_NR, F_SEQ, F_TS, F_VIA, K_CHARGE, MSG_R15_ORDER, MSG_R15_SIZE, MSG_R15_SPLIT_MEMCG, MSG_R15_SPLIT_ORDER,
    MSG_R15_SPLIT_SIZE, R15,
)
from .state import check_one, folio_slot, report

__all__ = ["r15_on_charge", "r15_size", "r15_on_split"]


@njit(**INLINE)
def order_ok(nr):
    """largefolio._order_ok: a folio holds 1 << order pages, a power of two."""
    return nr > 0 and (nr & (nr - 1)) == 0


@njit(**INLINE)
def r15_on_charge(st, seq, ts, folio, nr, memcg, ret):
    if ret == 0 and memcg != 0 and nr > 1:
        check_one(st, R15, nr, True)
        if not order_ok(nr):
            report(st, R15, seq, ts, folio, memcg, ts, -1, MSG_R15_ORDER, K_CHARGE, nr, 0, 0, 0)


@njit(**INLINE)
def r15_size(st, seq, ts, kind, folio, nr, memcg):
    """LargeFolios._size for an uncharge, transfer or device free (``kind`` names which)."""
    if memcg == 0:
        return
    f = folio_slot(st, folio)
    d = st.fd
    known = d[f, F_NR] if f >= 0 and d[f, F_MEMCG] != 0 else 0
    if nr <= 1 and known <= 1:
        return
    check_one(st, R15, max(nr, known), True)
    if not order_ok(nr):
        report(st, R15, seq, ts, folio, memcg, ts, -1, MSG_R15_ORDER, kind, nr, 0, 0, 0)
    elif known != 0 and nr != 0 and nr != known:
        report(st, R15, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R15_SIZE, kind, nr, known,
               d[f, F_SEQ], d[f, F_VIA])


@njit(**INLINE)
def r15_on_split(st, seq, ts, folio, nr, memcg, piece):
    check_one(st, R15, nr, True)
    if not (order_ok(nr) and order_ok(piece) and piece < nr):
        report(st, R15, seq, ts, folio, memcg, ts, -1, MSG_R15_SPLIT_ORDER, nr, piece, 0, 0, 0)
        return
    f = folio_slot(st, folio)
    d = st.fd
    if f < 0 or d[f, F_MEMCG] == 0:
        return  # charged before the trace, or a later step of a non-uniform split
    if memcg != 0 and memcg != d[f, F_MEMCG]:
        report(st, R15, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R15_SPLIT_MEMCG, d[f, F_MEMCG],
               d[f, F_SEQ], 0, 0, 0)
    elif d[f, F_NR] != nr:
        report(st, R15, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R15_SPLIT_SIZE, nr, d[f, F_NR],
               d[f, F_SEQ], 0, 0)
