"""The reference rules' per-event checks (replay/rules/), compiled.

One function per rule and kind, named after the reference handler it mirrors
(``r3_on_uncharge`` is ``Conservation.on_uncharge``), reading the model state
*before* the event and writing findings as rows of the findings buffer
(results.py words them as the reference does). Which rule owns a disagreement
several see follows replay/rules/blame.py, mirrored in the ``*_owner``
helpers. The counter rules and L1's sums are counters.py's; end-of-trace
checks and the sample rows (R3.usage, R14) are run by the reference code
itself (driver.py); R15's checks are largefolio.py's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cache import INLINE
from .layout import (
    C_ATT_CHARGE, C_ATT_TRANSFER, C_FORCE, C_REFCOUNT, F_LAST, F_MEMCG, F_MIG, F_NR, F_SEQ, F_TS, F_VIA, K_CHARGE,
    K_DEVICE_FAULT_DONE, K_DEVICE_FREE, K_FORK, K_LRU_INSERT, K_MEMCG_STAT, K_MIGRATE_PAGES, K_REPLACE, K_SPLIT,
    K_TRANSFER, K_UNCHARGE, L1, MSG_DOUBLE, MSG_NEVER, MSG_R1, MSG_R11, MSG_R12_DEVICE, MSG_R12_UNCHARGED, MSG_R2,
    MSG_R4_AWAY, MSG_R4_COUNT, MSG_R4_DEST_CHARGED, MSG_R4_DEST_UNCHARGED, MSG_R4_FORCE_SRC, MSG_R4_OLD_UNCHARGED,
    MSG_R4_TRANSFER_MISSING, MSG_R5_MOVED, MSG_R5_OLD, MSG_R5_WRONG_MEMCG, MSG_R6_DOUBLE, MSG_R7, MSG_R8_CHARGE,
    MSG_R8_OOM, MSG_R9, MSG_R9_VANISHED, MSG_VANISHED, MSG_WRONG_MEMCG, M_LIVE, R1, R11, R12, R13ANON, R15, R2, R3,
    R3PGPG, R4, R5, R6, R7, R8, R9, S_FIRST_TS, T_FLT_ON, T_FLT_SEQ, T_FLT_TS, T_MIG_ON, T_MIG_SEQ, T_MIG_TS,
    T_MIG_XFERS, V_AWAY, V_CHARGE, V_FORCE, V_TRANSFER,
)
from .counters import anon_on_memcg_stat, l1_count, pgpg_on_memcg_stat
from .largefolio import r15_on_charge, r15_on_split, r15_size
from .model import split_credit
from .state import active, check_one, folio_slot, is_device, ledger, observed, pid_flag, report, tid_row

__all__ = ["check"]

_VM_FAULT_OOM = 0x1  # include/linux/mm_types.h enum vm_fault_reason (replay/rules/fault.py)


# -- blame.py ----------------------------------------------------------------------------
@njit(**INLINE)
def attribution_owner(via):
    return R5 if via == V_TRANSFER or via == V_FORCE else R3


@njit(**INLINE)
def double_uncharge_owner(st, f, folio):
    if st.fd[f, F_VIA] == V_AWAY:
        return R4
    return R6 if is_device(st, folio) else R3


@njit(**INLINE)
def vanished_owner(st, f, folio):
    if st.fd[f, F_MIG] >= 0:
        return R4
    if st.fd[f, F_VIA] == V_CHARGE and is_device(st, folio):
        return R9
    return R3 if st.cfg[C_FORCE] else R4


# -- charge.py -----------------------------------------------------------------------------
@njit(**INLINE)
def r1_on_charge(st, seq, ts, folio, nr, memcg, ret):
    if ret != 0:
        return
    check_one(st, R1, nr if nr else 1, True)
    f = folio_slot(st, folio)
    if f >= 0 and st.fd[f, F_MEMCG] != 0:
        d = st.fd
        report(st, R1, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R1, d[f, F_MEMCG], d[f, F_SEQ],
               d[f, F_VIA], 0, 0)


@njit(**INLINE)
def r2_on_charge(st, seq, ts, folio, nr, memcg, ret):
    if ret == 0:
        return
    check_one(st, R2, nr if nr else 1, True)
    if memcg != 0:
        report(st, R2, seq, ts, folio, memcg, ts, -1, MSG_R2, ret, 0, 0, 0, 0)


# -- uncharge.py ---------------------------------------------------------------------------
@njit(**INLINE)
def r3_never_charged(st, seq, ts, kind, nr, folio, memcg):
    if split_credit(st, memcg, nr if nr else 1):
        return  # a part of a large folio split in the trace
    cfg = st.cfg
    if observed(st, memcg) and cfg[C_ATT_CHARGE] and cfg[C_ATT_TRANSFER]:
        report(st, R3, seq, ts, folio, memcg, st.sc[S_FIRST_TS], -1, MSG_NEVER, kind, 0, 0, 0, 0)


@njit(**INLINE)
def r3_vanished(st, seq, ts, kind, folio, f):
    if vanished_owner(st, f, folio) != R3:
        return
    d = st.fd
    report(st, R3, seq, ts, folio, d[f, F_MEMCG], d[f, F_TS], d[f, F_SEQ], MSG_VANISHED, kind, d[f, F_MEMCG],
           d[f, F_SEQ], 0, 0)


@njit(**INLINE)
def r3_on_uncharge(st, seq, ts, kind, folio, nr, memcg):
    f = folio_slot(st, folio)
    d = st.fd
    check_one(st, R3, nr if nr else (d[f, F_NR] if f >= 0 else 1), memcg != 0 or f >= 0)
    if memcg != 0:
        if f < 0:
            r3_never_charged(st, seq, ts, kind, nr, folio, memcg)
        elif d[f, F_MEMCG] == 0:
            if double_uncharge_owner(st, f, folio) == R3:
                live = st.md[ledger(st, memcg), M_LIVE] - (nr if nr else 1)
                report(st, R3, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_DOUBLE, d[f, F_SEQ], live, 0,
                       0, 0)
        elif d[f, F_MEMCG] != memcg and attribution_owner(d[f, F_VIA]) == R3:
            report(st, R3, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_WRONG_MEMCG, d[f, F_MEMCG],
                   d[f, F_SEQ], d[f, F_VIA], 0, 0)
    elif f >= 0 and d[f, F_MEMCG] != 0:
        r3_vanished(st, seq, ts, kind, folio, f)


@njit(**INLINE)
def r3_on_transfer(st, seq, ts, kind, folio, nr, memcg):
    if memcg != 0 and folio_slot(st, folio) < 0:
        r3_never_charged(st, seq, ts, kind, nr, folio, memcg)


@njit(**INLINE)
def r3_on_device_free(st, seq, ts, kind, folio, memcg):
    f = folio_slot(st, folio)
    if memcg == 0 and f >= 0 and st.fd[f, F_MEMCG] != 0:
        r3_vanished(st, seq, ts, kind, folio, f)


# -- migration.py --------------------------------------------------------------------------
@njit(**INLINE)
def r4_vanished(st, seq, ts, kind, folio, f):
    if vanished_owner(st, f, folio) != R4:
        return
    d = st.fd
    if d[f, F_MIG] >= 0:
        report(st, R4, seq, ts, folio, d[f, F_MEMCG], d[f, F_TS], d[f, F_MIG], MSG_R4_FORCE_SRC, d[f, F_MIG], 0, 0,
               0, 0)
    else:
        report(st, R4, seq, ts, folio, d[f, F_MEMCG], d[f, F_TS], d[f, F_SEQ], MSG_R4_TRANSFER_MISSING, kind,
               d[f, F_MEMCG], d[f, F_SEQ], 0, 0)


@njit(**INLINE)
def r4_on_transfer(st, seq, ts, folio, folio_new, nr, memcg, memcg_new):
    check_one(st, R4, nr if nr else 1, memcg != 0)
    if memcg == 0:
        return
    d = st.fd
    n = folio_slot(st, folio_new)
    new_charged = n >= 0 and d[n, F_MEMCG] != 0
    if new_charged:
        report(st, R4, seq, ts, folio_new, d[n, F_MEMCG], d[n, F_TS], d[n, F_SEQ], MSG_R4_DEST_CHARGED,
               d[n, F_MEMCG], d[n, F_SEQ], d[n, F_VIA], 0, 0)
    if memcg_new == 0 and not new_charged:
        report(st, R4, seq, ts, folio_new, memcg, ts, -1, MSG_R4_DEST_UNCHARGED, 0, 0, 0, 0, 0)
    o = folio_slot(st, folio)
    if o >= 0 and d[o, F_MEMCG] == 0 and st.cfg[C_ATT_CHARGE]:
        report(st, R4, seq, ts, folio, memcg, d[o, F_TS], d[o, F_SEQ], MSG_R4_OLD_UNCHARGED, d[o, F_SEQ],
               d[o, F_VIA], 0, 0, 0)


@njit(**INLINE)
def r4_on_uncharge(st, seq, ts, kind, folio, memcg):
    f = folio_slot(st, folio)
    if f < 0:
        return
    d = st.fd
    if memcg != 0 and d[f, F_MEMCG] == 0:
        if double_uncharge_owner(st, f, folio) == R4:
            report(st, R4, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R4_AWAY, d[f, F_SEQ], 0, 0, 0, 0)
    elif memcg == 0 and d[f, F_MEMCG] != 0:
        r4_vanished(st, seq, ts, kind, folio, f)


@njit(**INLINE)
def r4_on_device_free(st, seq, ts, kind, folio, memcg):
    f = folio_slot(st, folio)
    if memcg == 0 and f >= 0 and st.fd[f, F_MEMCG] != 0:
        r4_vanished(st, seq, ts, kind, folio, f)


@njit(**INLINE)
def r4_on_migrate_pages(st, seq, ts, tid, item, value):
    t = tid_row(st, tid, False)
    if t < 0 or not st.td[t, T_MIG_ON] or value < 0:
        return
    check_one(st, R4, 0, False)
    w = st.td[t]
    if w[T_MIG_XFERS] != value:
        report(st, R4, seq, ts, 0, 0, w[T_MIG_TS], w[T_MIG_SEQ], MSG_R4_COUNT, item, value, w[T_MIG_XFERS],
               w[T_MIG_SEQ], 0)


@njit(**INLINE)
def r5_on_transfer(st, seq, ts, folio, folio_new, nr, memcg, memcg_new):
    if memcg == 0:
        return
    check_one(st, R5, nr if nr else 1, True)
    if memcg_new != 0 and memcg_new != memcg:
        report(st, R5, seq, ts, folio_new, memcg_new, ts, -1, MSG_R5_MOVED, memcg, memcg_new, 0, 0, 0)
    o = folio_slot(st, folio)
    d = st.fd
    if o >= 0 and d[o, F_MEMCG] != 0 and d[o, F_MEMCG] != memcg:
        report(st, R5, seq, ts, folio, memcg, d[o, F_TS], d[o, F_SEQ], MSG_R5_OLD, d[o, F_MEMCG], d[o, F_SEQ], 0,
               0, 0)


@njit(**INLINE)
def r5_on_uncharge(st, seq, ts, folio, memcg):
    f = folio_slot(st, folio)
    d = st.fd
    if memcg != 0 and f >= 0 and d[f, F_MEMCG] != 0 and d[f, F_MEMCG] != memcg \
            and attribution_owner(d[f, F_VIA]) == R5:
        report(st, R5, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R5_WRONG_MEMCG, d[f, F_MEMCG],
               d[f, F_SEQ], d[f, F_VIA], 0, 0)


# -- device.py -----------------------------------------------------------------------------
@njit(**INLINE)
def r6_on_uncharge(st, seq, ts, folio, nr, memcg):
    f = folio_slot(st, folio)
    d = st.fd
    if memcg != 0 and f >= 0 and d[f, F_MEMCG] == 0 and double_uncharge_owner(st, f, folio) == R6:
        live = st.md[ledger(st, memcg), M_LIVE] - (nr if nr else 1)
        report(st, R6, seq, ts, folio, memcg, d[f, F_TS], d[f, F_SEQ], MSG_R6_DOUBLE, d[f, F_SEQ], live, 0, 0, 0)


@njit(**INLINE)
def r7_on_device_free(st, seq, ts, folio, nr, memcg, value):
    if value < 0:
        return  # refcount not read
    check_one(st, R7, nr if nr else 1, True)
    if value != st.cfg[C_REFCOUNT]:
        report(st, R7, seq, ts, folio, memcg, ts, -1, MSG_R7, value, st.cfg[C_REFCOUNT], 0, 0, 0)


@njit(**INLINE)
def r8_on_charge(st, seq, ts, tid, folio, memcg, ret):
    t = tid_row(st, tid, False)
    if t < 0 or not st.td[t, T_FLT_ON] or ret == 0:
        return
    w = st.td[t]
    report(st, R8, seq, ts, folio, memcg, w[T_FLT_TS], w[T_FLT_SEQ], MSG_R8_CHARGE, ret, w[T_FLT_SEQ], 0, 0, 0)


@njit(**INLINE)
def r8_on_device_fault_done(st, seq, ts, tid, ret):
    t = tid_row(st, tid, False)
    if t < 0 or not st.td[t, T_FLT_ON]:
        return  # the trace began inside this fault
    check_one(st, R8, 0, True)
    if ret & _VM_FAULT_OOM:
        w = st.td[t]
        report(st, R8, seq, ts, 0, 0, w[T_FLT_TS], w[T_FLT_SEQ], MSG_R8_OOM, w[T_FLT_SEQ], ret, 0, 0, 0)


@njit(**INLINE)
def in_migrate_window(st, tid):
    t = tid_row(st, tid, False)
    return t >= 0 and st.td[t, T_MIG_ON] != 0


@njit(**INLINE)
def r9_on_charge(st, seq, ts, pid, tid, folio, nr, memcg, ret):
    if ret != 0 or not is_device(st, folio):
        return
    check_one(st, R9, nr if nr else 1, True)
    if in_migrate_window(st, tid) or pid_flag(st, pid, 0):
        return  # a hole insertion; forked processes are R11's
    report(st, R9, seq, ts, folio, memcg, ts, -1, MSG_R9, 0, 0, 0, 0, 0)


@njit(**INLINE)
def r9_on_device_free(st, seq, ts, kind, folio, memcg):
    f = folio_slot(st, folio)
    if memcg != 0 or f < 0 or st.fd[f, F_MEMCG] == 0:
        return
    if vanished_owner(st, f, folio) == R9:
        d = st.fd
        report(st, R9, seq, ts, folio, d[f, F_MEMCG], d[f, F_TS], d[f, F_SEQ], MSG_R9_VANISHED, d[f, F_SEQ],
               d[f, F_MEMCG], kind, 0, 0)


@njit(**INLINE)
def r11_on_charge(st, seq, ts, pid, tid, folio, nr, memcg, ret):
    if ret != 0 or not is_device(st, folio) or not pid_flag(st, pid, 0):
        return
    check_one(st, R11, nr if nr else 1, True)
    if not in_migrate_window(st, tid):
        report(st, R11, seq, ts, folio, memcg, ts, -1, MSG_R11, 0, 0, 0, 0, 0)


# -- lru.py --------------------------------------------------------------------------------
@njit(**INLINE)
def r12_on_lru_insert(st, seq, ts, folio, nr, memcg):
    check_one(st, R12, nr if nr else 1, True)
    if is_device(st, folio):
        report(st, R12, seq, ts, folio, memcg, ts, -1, MSG_R12_DEVICE, 0, 0, 0, 0, 0)
        return
    if memcg == 0:
        f = folio_slot(st, folio)
        d = st.fd
        if f >= 0:
            # The memcg the folio's charge left: the insertion's own memcg is 0 by definition.
            was = d[f, F_MEMCG] if d[f, F_MEMCG] != 0 else d[f, F_LAST]
            report(st, R12, seq, ts, folio, was, ts, d[f, F_SEQ], MSG_R12_UNCHARGED, 1, d[f, F_VIA], d[f, F_SEQ], was, 0)
        else:
            report(st, R12, seq, ts, folio, 0, ts, -1, MSG_R12_UNCHARGED, 0, 0, 0, 0, 0)


@njit(**INLINE)
def check(st, ev, i):
    """Every active rule that handles row ``i``'s kind, in ALL_RULES order."""
    kind = ev.kind[i]
    seq, ts = ev.seq[i], ev.ts[i]
    tid = np.int64(ev.tid[i])
    folio = ev.folio[i]
    nr = np.int64(ev.nr[i])
    memcg = ev.memcg[i]
    if kind == K_CHARGE:
        ret = ev.ret[i]
        pid = np.int64(ev.pid[i])
        if active(st, R1):
            r1_on_charge(st, seq, ts, folio, nr, memcg, ret)
        if active(st, R2):
            r2_on_charge(st, seq, ts, folio, nr, memcg, ret)
        if active(st, R8):
            r8_on_charge(st, seq, ts, tid, folio, memcg, ret)
        if active(st, R9):
            r9_on_charge(st, seq, ts, pid, tid, folio, nr, memcg, ret)
        if active(st, R11):
            r11_on_charge(st, seq, ts, pid, tid, folio, nr, memcg, ret)
        if active(st, R15):
            r15_on_charge(st, seq, ts, folio, nr, memcg, ret)
    elif kind == K_UNCHARGE:
        if active(st, R3):
            r3_on_uncharge(st, seq, ts, kind, folio, nr, memcg)
        if active(st, R4):
            r4_on_uncharge(st, seq, ts, kind, folio, memcg)
        if active(st, R5):
            r5_on_uncharge(st, seq, ts, folio, memcg)
        if active(st, R6):
            r6_on_uncharge(st, seq, ts, folio, nr, memcg)
        if active(st, R15):
            r15_size(st, seq, ts, kind, folio, nr, memcg)
    elif kind == K_TRANSFER:
        if active(st, R3):
            r3_on_transfer(st, seq, ts, kind, folio, nr, memcg)
        if active(st, R4):
            r4_on_transfer(st, seq, ts, folio, ev.folio_new[i], nr, memcg, ev.memcg_new[i])
        if active(st, R5):
            r5_on_transfer(st, seq, ts, folio, ev.folio_new[i], nr, memcg, ev.memcg_new[i])
        if active(st, R15):
            r15_size(st, seq, ts, kind, folio, nr, memcg)
    elif kind == K_REPLACE:
        if active(st, R5):
            r5_on_transfer(st, seq, ts, folio, ev.folio_new[i], nr, memcg, ev.memcg_new[i])
    elif kind == K_DEVICE_FREE:
        if active(st, R3):
            r3_on_device_free(st, seq, ts, kind, folio, memcg)
        if active(st, R4):
            r4_on_device_free(st, seq, ts, kind, folio, memcg)
        if active(st, R6):
            check_one(st, R6, nr if nr else 1, True)
        if active(st, R7):
            r7_on_device_free(st, seq, ts, folio, nr, memcg, ev.value[i])
        if active(st, R9):
            r9_on_device_free(st, seq, ts, kind, folio, memcg)
        if active(st, R15):
            r15_size(st, seq, ts, kind, folio, nr, memcg)
    elif kind == K_SPLIT:
        if active(st, R15):
            r15_on_split(st, seq, ts, folio, nr, memcg, ev.value[i])
    elif kind == K_MEMCG_STAT:
        if active(st, R3PGPG):
            pgpg_on_memcg_stat(st, seq, ts, memcg, ev.item[i], ev.value[i])
        if active(st, R13ANON):
            anon_on_memcg_stat(st, seq, ts, memcg, ev.item[i], ev.value[i], ev.span[i])
    elif kind == K_MIGRATE_PAGES:
        if active(st, R4):
            r4_on_migrate_pages(st, seq, ts, tid, ev.item[i], ev.value[i])
    elif kind == K_DEVICE_FAULT_DONE:
        if active(st, R8):
            r8_on_device_fault_done(st, seq, ts, tid, ev.ret[i])
    elif kind == K_FORK:
        if active(st, R11):
            check_one(st, R11, 0, False)  # a fork alone charges nothing
    elif kind == K_LRU_INSERT:
        if active(st, R12):
            r12_on_lru_insert(st, seq, ts, folio, nr, memcg)
    if st.kl1[kind] and active(st, L1):
        l1_count(st, kind, memcg, ev.item[i], nr, ev.value[i], ev.ret[i], ev.span[i])
