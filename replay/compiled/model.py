"""The reference model's transitions (replay/model.py ``Model``), compiled.

Each function here is the array form of the ``Model`` method of the same name,
applied after the rules looked at the state before the event (kernel.py).
State lives in the :class:`State` arrays (layout.py names every column): a
folio's state is one row of ``fd`` found through the folio map, a memcg's
ledger one row of ``md``, a thread's open windows and pending device free one
row of ``td``.

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
    C_FORCE, C_RING_CAP, F_IN, F_MEMCG, F_MIG, F_NR, F_ORD, F_PID, F_SEQ, F_TS, F_VIA, I_ANON, K_CHARGE,
    K_DEVICE_FAULT, K_DEVICE_FAULT_DONE, K_DEVICE_FREE, K_EXIT, K_FORK, K_LOST, K_MEMCG_STAT, K_MEMSTAT,
    K_MIGRATE_FINALIZE, K_MIGRATE_PAGES, K_MIGRATE_SETUP, K_PAGE_MIGRATION, K_REPLACE, K_SPLIT, K_TRANSFER,
    K_UNCHARGE, K_USAGE, M_CHARGED, M_EXISTS, M_FORCE, M_LIVE, M_OBS, M_PRE, M_SPLIT, M_SPLIT_EXTRA, M_TIN,
    M_TOUT, M_UNCHARGED, NU, P_EXITED, P_FORKED, S_FFREE, S_FH_N, S_FHW, S_FIRST_TS, S_FORGOTTEN, S_LAST_ACT,
    S_LAST_SEQ, S_LAST_TS, S_NMEMCG, S_NPID, S_NTID, S_NUNP, S_ORD, S_RING_HEAD, S_RING_N, T_FLT_ON,
    T_FLT_SEQ, T_FLT_TS, T_MIG_ITEM, T_MIG_ON, T_MIG_SEQ, T_MIG_TS, T_MIG_XFERS, T_P_CPU, T_P_FOLIO,
    T_P_MEMCG, T_P_NR, T_P_PID, T_P_SEQ, T_P_TS, T_P_VALUE, T_PEND_ON, U_CPU, U_ENDED_KIND, U_ENDED_SEQ,
    U_FOLIO, U_MEMCG, U_NR, U_PID, U_SEQ, U_TID, U_TS, U_VALUE, V_AWAY, V_CHARGE, V_FORCE, V_PRE, V_TRANSFER,
    V_UNCHARGE,
)
from .tables import h_delete, h_find, h_insert

__all__ = ["State", "Events", "apply", "not_in_call", "is_sample", "evict"]

#: Every array the compiled engine keeps (layout.py names the columns).
State = namedtuple("State", "fhk fhv fd fkey ffree mhk mhv md mkey mcnt mrows l1k l1i thk thv td tkey "
                            "phk phv pd dhk dhv ohk ohv ringk rings sc chk sub pg fb ub cfg kl1")
#: One batch of events, column by column (traces/SCHEMA.md names).
Events = namedtuple("Events", "seq ts cpu pid tid kind folio folio_new nr memcg memcg_new ret item value span")


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
    r = h_find(st.mhk, st.mhv, memcg)
    if r < 0:
        r = st.sc[S_NMEMCG]
        st.sc[S_NMEMCG] = r + 1
        h_insert(st.mhk, st.mhv, memcg, r)
        st.mkey[r] = memcg
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
    r = h_find(st.thk, st.thv, tid)
    if r < 0 and create:
        r = st.sc[S_NTID]
        st.sc[S_NTID] = r + 1
        h_insert(st.thk, st.thv, tid, r)
        st.tkey[r] = tid
    return r


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


@njit(**INLINE)
def split_credit(st, memcg, nr):
    r = ledger_get(st, memcg)
    return r >= 0 and st.md[r, M_SPLIT] >= nr


@njit(**INLINE)
def take_split_credit(st, memcg, nr):
    if not split_credit(st, memcg, nr):
        return False
    st.md[ledger(st, memcg), M_SPLIT] -= nr
    return True


@njit(**INLINE)
def drop_charge(st, f):
    memcg = st.fd[f, F_MEMCG]
    if memcg == 0:
        return
    m = ledger(st, memcg)
    nr = st.fd[f, F_NR]
    if st.fd[f, F_IN]:
        st.md[m, M_LIVE] -= nr
        st.md[m, M_UNCHARGED] += nr
    else:
        st.md[m, M_PRE] += nr


# -- transitions ------------------------------------------------------------------------------
@njit(**INLINE)
def apply_charge(st, seq, ts, pid, folio, nr_pages, memcg, ret):
    if ret != 0 or memcg == 0:
        return  # R2: a failed charge has no effect
    f = folio_slot(st, folio)
    if f >= 0 and st.fd[f, F_MEMCG] != 0:
        drop_charge(st, f)  # R1 reported it; keep one charge
    nr = nr_pages if nr_pages else 1
    m = ledger(st, memcg)
    st.md[m, M_CHARGED] += nr
    st.md[m, M_LIVE] += nr
    set_folio(st, folio, memcg, nr, V_CHARGE, seq, ts, pid, 1)


@njit(**INLINE)
def apply_uncharge(st, seq, ts, pid, folio, nr_pages, memcg):
    f = folio_slot(st, folio)
    nr = nr_pages if nr_pages else (st.fd[f, F_NR] if f >= 0 else 1)
    if f >= 0 and st.fd[f, F_MEMCG] != 0:
        drop_charge(st, f)
    elif memcg != 0:
        m = ledger(st, memcg)
        if f < 0 and take_split_credit(st, memcg, nr):
            st.md[m, M_LIVE] -= nr  # a part of a large folio split in the trace
            st.md[m, M_UNCHARGED] += nr
        elif f < 0:
            st.md[m, M_PRE] += nr  # charged before the trace began
        else:
            st.md[m, M_LIVE] -= nr  # uncharged twice: rules report it; never clamp
            st.md[m, M_UNCHARGED] += nr
    set_folio(st, folio, 0, nr, V_UNCHARGE, seq, ts, pid, 1)


@njit(**INLINE)
def force_charge(st, seq, ts, pid, folio, folio_new, nr_pages, memcg, memcg_new):
    """<= 6.6 mem_cgroup_migrate, and mem_cgroup_replace_folio: charge new,
    leave old charged until it is freed."""
    n = folio_slot(st, folio_new)
    if n >= 0 and st.fd[n, F_MEMCG] != 0:
        return  # the kernel returns early when new is already charged
    target = memcg_new if memcg_new else memcg
    if target == 0:
        return
    o = folio_slot(st, folio)
    nr = nr_pages if nr_pages else (st.fd[o, F_NR] if o >= 0 else 1)
    m = ledger(st, target)
    st.md[m, M_FORCE] += nr
    st.md[m, M_LIVE] += nr
    if o < 0:
        split_part = memcg != 0 and take_split_credit(st, memcg, nr)
        o = set_folio(st, folio, memcg, nr, V_PRE, seq, ts, pid, 1 if split_part else 0)
    if st.fd[o, F_MEMCG] != 0:
        st.fd[o, F_MIG] = seq
    set_folio(st, folio_new, target, nr, V_FORCE, seq, ts, st.fd[o, F_PID], 1)


@njit(**INLINE)
def apply_transfer(st, seq, ts, pid, tid, folio, folio_new, nr_pages, memcg, memcg_new):
    t = tid_row(st, tid, False)
    if t >= 0 and st.td[t, T_MIG_ON]:
        st.td[t, T_MIG_XFERS] += 1
    if st.cfg[C_FORCE]:
        force_charge(st, seq, ts, pid, folio, folio_new, nr_pages, memcg, memcg_new)
        return
    if memcg == 0:
        return  # the kernel returns early when old is not charged
    o = folio_slot(st, folio)
    nr = nr_pages if nr_pages else (st.fd[o, F_NR] if o >= 0 else 1)
    old_charged = o >= 0 and st.fd[o, F_MEMCG] != 0
    if old_charged:
        in_trace = st.fd[o, F_IN] != 0
    else:
        in_trace = o < 0 and take_split_credit(st, memcg, nr)
    target = memcg_new if memcg_new else memcg
    if old_charged and st.fd[o, F_MEMCG] != target:  # R5 reported it; follow the kernel
        drop_charge(st, o)
        in_trace = False
    old_pid = st.fd[o, F_PID] if o >= 0 else pid
    st.md[ledger(st, target), M_TIN] += nr
    st.md[ledger(st, memcg), M_TOUT] += nr
    set_folio(st, folio, 0, nr, V_AWAY, seq, ts, pid, 1)
    set_folio(st, folio_new, target, nr, V_TRANSFER, seq, ts, old_pid, 1 if in_trace else 0)


@njit(**INLINE)
def free_without_uncharge(st, t, ended_seq, ended_kind):
    """A device free whose uncharge never came: the kernel would have uncharged
    it, so the model does (R6 reports the pair at the end, from ``ub``)."""
    d = st.td
    u = st.sc[S_NUNP]
    st.sc[S_NUNP] = u + 1
    b = st.ub
    b[u, U_SEQ] = d[t, T_P_SEQ]
    b[u, U_TS] = d[t, T_P_TS]
    b[u, U_CPU] = d[t, T_P_CPU]
    b[u, U_PID] = d[t, T_P_PID]
    b[u, U_TID] = st.tkey[t]
    b[u, U_FOLIO] = d[t, T_P_FOLIO]
    b[u, U_NR] = d[t, T_P_NR]
    b[u, U_MEMCG] = d[t, T_P_MEMCG]
    b[u, U_VALUE] = d[t, T_P_VALUE]
    b[u, U_ENDED_SEQ] = ended_seq
    b[u, U_ENDED_KIND] = ended_kind
    if ended_seq < 0:
        return  # still open at the end of the trace: the model applies nothing
    folio = np.uint64(d[t, T_P_FOLIO])
    nr = d[t, T_P_NR] if d[t, T_P_NR] else 1
    f = folio_slot(st, folio)
    if f >= 0 and st.fd[f, F_MEMCG] != 0:
        drop_charge(st, f)
    elif f < 0:
        st.md[ledger(st, d[t, T_P_MEMCG]), M_PRE] += nr
    set_folio(st, folio, 0, nr, V_UNCHARGE, d[t, T_P_SEQ], d[t, T_P_TS], d[t, T_P_PID], 1)


@njit(**INLINE)
def apply_device_free(st, seq, ts, cpu, pid, tid, folio, nr_pages, memcg, value):
    if memcg != 0:
        # The free path uncharges next, on the same thread (free_zone_device_folio(),
        # mm/memremap.c); the uncharge row settles it (R6).
        t = tid_row(st, tid, True)
        d = st.td
        d[t, T_PEND_ON] = 1
        d[t, T_P_SEQ] = seq
        d[t, T_P_TS] = ts
        d[t, T_P_CPU] = cpu
        d[t, T_P_FOLIO] = np.int64(folio)
        d[t, T_P_MEMCG] = memcg
        d[t, T_P_NR] = nr_pages
        d[t, T_P_PID] = pid
        d[t, T_P_VALUE] = value
        return
    f = folio_slot(st, folio)
    if f >= 0 and st.fd[f, F_MEMCG] != 0:
        drop_charge(st, f)  # the kernel found it uncharged; follow it
        set_folio(st, folio, 0, st.fd[f, F_NR], V_UNCHARGE, seq, ts, pid, 1)


@njit(**INLINE)
def apply_split(st, folio, nr_pages, memcg, value):
    """A large folio of ``nr_pages`` split into folios of ``value`` pages."""
    f = folio_slot(st, folio)
    piece = value if value > 0 else 1
    charged_to = memcg if memcg != 0 else (st.fd[f, F_MEMCG] if f >= 0 else 0)
    if charged_to != 0 and nr_pages > piece:
        st.md[ledger(st, charged_to), M_SPLIT_EXTRA] += nr_pages // piece - 1
    if f < 0 or st.fd[f, F_MEMCG] == 0 or piece >= st.fd[f, F_NR]:
        return
    if st.fd[f, F_IN]:
        st.md[ledger(st, st.fd[f, F_MEMCG]), M_SPLIT] += st.fd[f, F_NR] - piece
    st.fd[f, F_NR] = piece


@njit(**INLINE)
def apply(st, ev, i):
    """Model.apply for row ``i`` of the batch (sample kinds are the driver's)."""
    kind = ev.kind[i]
    seq, ts = ev.seq[i], ev.ts[i]
    pid, tid = np.int64(ev.pid[i]), np.int64(ev.tid[i])
    folio = ev.folio[i]
    sc = st.sc
    if sc[S_FIRST_TS] < 0:
        sc[S_FIRST_TS] = ts
    sc[S_LAST_SEQ] = seq
    sc[S_LAST_TS] = ts
    sc[S_LAST_ACT] = seq
    if not not_in_call(kind):
        t = tid_row(st, tid, False)
        if t >= 0 and st.td[t, T_PEND_ON]:
            st.td[t, T_PEND_ON] = 0
            if not (kind == K_UNCHARGE and folio == np.uint64(st.td[t, T_P_FOLIO])):
                free_without_uncharge(st, t, seq, kind)
    nr, memcg = np.int64(ev.nr[i]), ev.memcg[i]
    if kind == K_DEVICE_FREE:
        apply_device_free(st, seq, ts, np.int64(ev.cpu[i]), pid, tid, folio, nr, memcg, ev.value[i])
    elif kind == K_SPLIT:
        apply_split(st, folio, nr, memcg, ev.value[i])
    elif kind == K_CHARGE:
        apply_charge(st, seq, ts, pid, folio, nr, memcg, ev.ret[i])
    elif kind == K_UNCHARGE:
        apply_uncharge(st, seq, ts, pid, folio, nr, memcg)
    elif kind == K_TRANSFER:
        apply_transfer(st, seq, ts, pid, tid, folio, ev.folio_new[i], nr, memcg, ev.memcg_new[i])
    elif kind == K_REPLACE:
        force_charge(st, seq, ts, pid, folio, ev.folio_new[i], nr, memcg, ev.memcg_new[i])
    elif kind == K_MEMCG_STAT:
        m = ledger(st, memcg)
        item = ev.item[i]
        st.mcnt[m, item] += ev.value[i]
        st.mrows[m, item] += 1
    elif kind == K_MIGRATE_SETUP:
        t = tid_row(st, tid, True)
        st.td[t, T_MIG_ON] = 1
        st.td[t, T_MIG_SEQ] = seq
        st.td[t, T_MIG_TS] = ts
        st.td[t, T_MIG_ITEM] = ev.item[i]
        st.td[t, T_MIG_XFERS] = 0
    elif kind == K_MIGRATE_PAGES:
        t = tid_row(st, tid, False)
        if t >= 0 and st.td[t, T_MIG_ON]:
            st.td[t, T_MIG_XFERS] = 0
    elif kind == K_MIGRATE_FINALIZE:
        t = tid_row(st, tid, False)
        if t >= 0:
            st.td[t, T_MIG_ON] = 0
    elif kind == K_DEVICE_FAULT:
        t = tid_row(st, tid, True)
        st.td[t, T_FLT_ON] = 1
        st.td[t, T_FLT_SEQ] = seq
        st.td[t, T_FLT_TS] = ts
    elif kind == K_DEVICE_FAULT_DONE:
        t = tid_row(st, tid, False)
        if t >= 0:
            st.td[t, T_FLT_ON] = 0
    elif kind == K_FORK:
        set_pid_flag(st, pid, P_FORKED)
        set_pid_flag(st, ev.value[i], P_FORKED)
    elif kind == K_EXIT:
        if ev.value[i] == 1 or pid == tid:
            set_pid_flag(st, pid, P_EXITED)
        t = tid_row(st, tid, False)
        if t >= 0:
            st.td[t, T_MIG_ON] = 0
            st.td[t, T_FLT_ON] = 0
