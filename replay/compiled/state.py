"""The compiled engine's state: the arrays, the lookups into them, and the
findings buffer.

State lives in the :class:`State` arrays (layout.py names every column): a
folio's state is one row of ``fd`` found through the folio map, a memcg's
ledger one row of ``md``, a thread's open windows and pending device free one
row of ``td``, a driver's figures one row of ``dc`` (drivers.py). The
transitions are model.py's, the per-event checks rules.py's and counters.py's.

Memory is bounded by live state: charged folios are kept until uncharged; the
states of uncharged folios (which the reference keeps for ever, to name a
second uncharge) are kept for the newest ``C_RING_CAP`` of them, oldest
forgotten first (``S_FORGOTTEN`` counts them; the report says so). Below that
cap the two engines agree exactly.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from .cache import INLINE
from .layout import (
    C_ACTIVE, C_RING_CAP, F_IN, F_LAST, F_MEMCG, F_MIG, F_NR, F_ORD, F_PID, F_SEQ, F_TS, F_VIA, K_LOST,
    K_MEMCG_STAT, K_MEMSTAT, K_PAGE_MIGRATION, K_USAGE, M_EXISTS, M_OBS, S_FFREE, S_FHW, S_FH_N, S_FORGOTTEN,
    S_NFIND, S_NMEMCG, S_NPID, S_NTID, S_ORD, S_RING_HEAD, S_RING_N,
)
from .tables import h_delete, h_find, h_insert, h_row

__all__ = ["State", "Events", "not_in_call", "is_sample", "evict", "folio_slot", "is_device", "memcg_row", "ledger",
           "ledger_get", "tid_row", "pid_flag", "set_pid_flag", "set_folio", "report", "check_one", "active",
           "observed"]

#: Every array the compiled engine keeps (layout.py names the columns).
State = namedtuple("State", "fhk fhv fd fkey ffree mhk mhv md mkey mcnt mrows l1k l1i thk thv td tkey "
                            "phk phv pd dhk dhv ohk ohv ringk rings sc chk sub pg fb ub cfg kl1 ghk ghv dc dkey")
#: One batch of events, column by column (traces/SCHEMA.md names).
Events = namedtuple("Events", "seq ts cpu pid tid kind folio folio_new nr memcg memcg_new ret item value span "
                              "pgmap")


@njit(**INLINE)
def not_in_call(kind):
    """model.NOT_IN_CALL: kinds that can arrive on a thread from other contexts."""
    return (kind == K_MEMCG_STAT or kind == K_USAGE or kind == K_MEMSTAT or kind == K_LOST
            or kind == K_PAGE_MIGRATION)


@njit(**INLINE)
def is_sample(kind):
    """model.SAMPLE_KINDS: the recorder's own samples (applied by the driver in Python)."""
    return kind == K_USAGE or kind == K_MEMSTAT


# -- lookups ------------------------------------------------------------------------------
@njit(**INLINE)
def folio_slot(st, folio):
    return h_find(st.fhk, st.fhv, folio)


@njit(**INLINE)
def is_device(st, folio):
    return h_find(st.dhk, st.dhv, folio) >= 0


@njit(**INLINE)
def memcg_row(st, memcg):
    """Row of ``memcg`` in the memcg arrays, made when absent (not yet a ledger)."""
    r, made = h_row(st.mhk, st.mhv, st.mkey, st.sc, S_NMEMCG, memcg)
    if made:
        st.md[r, M_OBS] = 1 if (memcg != 0 and h_find(st.ohk, st.ohv, memcg) >= 0) else 0
    return r


@njit(**INLINE)
def ledger(st, memcg):
    """Model.ledger: the memcg's ledger row, created when absent."""
    r = memcg_row(st, memcg)
    st.md[r, M_EXISTS] = 1
    return r


@njit(**INLINE)
def ledger_get(st, memcg):
    """Model.memcgs.get: the ledger row or -1."""
    r = h_find(st.mhk, st.mhv, memcg)
    return r if r >= 0 and st.md[r, M_EXISTS] else -1


@njit(**INLINE)
def tid_row(st, tid, create):
    if not create:
        return h_find(st.thk, st.thv, tid)
    return h_row(st.thk, st.thv, st.tkey, st.sc, S_NTID, tid)[0]


@njit(**INLINE)
def pid_flag(st, pid, field):
    r = h_find(st.phk, st.phv, pid)
    return r >= 0 and st.pd[r, field] != 0


@njit(**INLINE)
def set_pid_flag(st, pid, field):
    r = h_find(st.phk, st.phv, pid)
    if r < 0:
        r = st.sc[S_NPID]
        st.sc[S_NPID] = r + 1
        h_insert(st.phk, st.phv, pid, r)
    st.pd[r, field] = 1


@njit(**INLINE)
def set_folio(st, folio, memcg, nr, via, seq, ts, pid, in_trace):
    """folios[folio] = FolioState(...). A dict keeps a key's first position, so
    the ordinal (end-of-trace report order) is given once."""
    f = h_find(st.fhk, st.fhv, folio)
    sc = st.sc
    if f < 0:
        if sc[S_FFREE] > 0:
            sc[S_FFREE] -= 1
            f = st.ffree[sc[S_FFREE]]
        else:
            f = sc[S_FHW]
            sc[S_FHW] = f + 1
        h_insert(st.fhk, st.fhv, folio, f)
        sc[S_FH_N] += 1
        st.fkey[f] = folio
        st.fd[f, F_ORD] = sc[S_ORD]
        sc[S_ORD] += 1
    d = st.fd
    d[f, F_MEMCG] = memcg
    d[f, F_NR] = nr
    d[f, F_VIA] = via
    d[f, F_SEQ] = seq
    d[f, F_TS] = ts
    d[f, F_PID] = pid
    d[f, F_IN] = in_trace
    d[f, F_MIG] = -1
    d[f, F_LAST] = 0
    if memcg == 0:
        # remembered while among the newest C_RING_CAP uncharged states (evict())
        cap = st.ringk.shape[0]
        k = (sc[S_RING_HEAD] + sc[S_RING_N]) % cap
        st.ringk[k] = folio
        st.rings[k] = seq
        sc[S_RING_N] += 1
    return f


@njit(**INLINE)
def evict(st):
    """Forget the oldest uncharged folio states beyond the cap (between events,
    so no transition holds a row that goes away)."""
    sc = st.sc
    cap = st.ringk.shape[0]
    while sc[S_RING_N] > st.cfg[C_RING_CAP]:
        k = sc[S_RING_HEAD]
        sc[S_RING_HEAD] = (k + 1) % cap
        sc[S_RING_N] -= 1
        folio = st.ringk[k]
        f = h_find(st.fhk, st.fhv, folio)
        if f >= 0 and st.fd[f, F_MEMCG] == 0 and st.fd[f, F_SEQ] == st.rings[k]:
            h_delete(st.fhk, st.fhv, folio)
            sc[S_FH_N] -= 1
            st.ffree[sc[S_FFREE]] = f
            sc[S_FFREE] += 1
            sc[S_FORGOTTEN] += 1



# -- findings and coverage (replay/rules/__init__.py Rule) ------------------------------
@njit(**INLINE)
def report(st, rule, seq, ts, folio, memcg, since, related, msg, a0, a1, a2, a3, a4):
    """Rule.report: one row of the findings buffer (related = -1: none)."""
    n = st.sc[S_NFIND]
    x = st.fb[n]
    x[0] = rule
    x[1] = seq
    x[2] = ts
    x[3] = np.int64(folio)
    x[4] = memcg
    x[5] = since
    x[6] = related
    x[7] = msg
    x[8] = a0
    x[9] = a1
    x[10] = a2
    x[11] = a3
    x[12] = a4
    st.sc[S_NFIND] = n + 1


@njit(**INLINE)
def check_one(st, rule, pages, substantive):
    """Rule.check."""
    st.chk[rule] += 1
    st.pg[rule] += pages
    if substantive:
        st.sub[rule] += 1


@njit(**INLINE)
def active(st, rule):
    return st.cfg[C_ACTIVE + rule] != 0


@njit(**INLINE)
def observed(st, memcg):
    """RuleContext.observed_from_creation (the flag is set when the memcg's row is made)."""
    return st.md[memcg_row(st, memcg), M_OBS] != 0
