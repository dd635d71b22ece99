"""The reference model's transitions (replay/model.py ``Model``), compiled.

Each function here is the array form of the ``Model`` method of the same name,
applied after the rules looked at the state before the event (kernel.py), on
the arrays of state.py; the per-driver figures the reference model feeds to
``DriverTally`` are drivers.py's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cache import INLINE
from .drivers import driver_add, driver_row, tally_device_free, tally_transfer
from .layout import (
    C_FORCE, D_FAULTS, F_IN, F_LAST, F_MEMCG, F_MIG, F_NR, F_PID, K_CHARGE, K_DEVICE_FAULT, K_DEVICE_FAULT_DONE,
    K_DEVICE_FREE, K_EXIT, K_FORK, K_MEMCG_STAT, K_MIGRATE_FINALIZE, K_MIGRATE_PAGES, K_MIGRATE_SETUP, K_REPLACE,
    K_SPLIT, K_TRANSFER, K_UNCHARGE, M_CHARGED, M_FORCE, M_LIVE, M_PRE, M_SPLIT, M_SPLIT_EXTRA, M_TIN, M_TOUT,
    M_UNCHARGED, P_EXITED, P_FORKED, S_FIRST_TS, S_LAST_ACT, S_LAST_SEQ, S_LAST_TS, S_NUNP,
    T_FLT_DRV, T_FLT_ON, T_FLT_SEQ, T_FLT_TS, T_MIG_ITEM, T_MIG_ON, T_MIG_SEQ, T_MIG_TS, T_MIG_XFERS, T_PEND_ON,
    T_P_CPU, T_P_FOLIO, T_P_MEMCG, T_P_NR, T_P_PGMAP, T_P_PID, T_P_SEQ, T_P_TS, T_P_VALUE, U_CPU, U_ENDED_KIND,
    U_ENDED_SEQ, U_FOLIO, U_MEMCG, U_NR, U_PGMAP, U_PID, U_SEQ, U_TID, U_TS, U_VALUE, V_AWAY, V_CHARGE, V_FORCE,
    V_PRE, V_TRANSFER, V_UNCHARGE,
)
from .state import folio_slot, ledger, ledger_get, not_in_call, set_folio, set_pid_flag, tid_row

__all__ = ["apply", "free_without_uncharge", "split_credit"]


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
    prior = st.fd[f, F_MEMCG] if f >= 0 else 0
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
    u = set_folio(st, folio, 0, nr, V_UNCHARGE, seq, ts, pid, 1)
    st.fd[u, F_LAST] = prior if prior != 0 else memcg  # the memcg its charge left (R12 names it)


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
    known = folio_slot(st, folio)
    tally_transfer(st, tid, folio, folio_new, nr_pages if nr_pages else (st.fd[known, F_NR] if known >= 0 else 1))
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
    away = set_folio(st, folio, 0, nr, V_AWAY, seq, ts, pid, 1)
    st.fd[away, F_LAST] = memcg
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
    b[u, U_PGMAP] = d[t, T_P_PGMAP]
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
def apply_device_free(st, seq, ts, cpu, pid, tid, folio, nr_pages, memcg, value, pgmap):
    tally_device_free(st, folio, nr_pages, pgmap)
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
        d[t, T_P_PGMAP] = np.int64(pgmap)
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
        apply_device_free(st, seq, ts, np.int64(ev.cpu[i]), pid, tid, folio, nr, memcg, ev.value[i], ev.pgmap[i])
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
        r = driver_row(st, ev.pgmap[i])
        driver_add(st, r, D_FAULTS, 1)
        st.td[t, T_FLT_ON] = 1
        st.td[t, T_FLT_SEQ] = seq
        st.td[t, T_FLT_TS] = ts
        st.td[t, T_FLT_DRV] = r
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
