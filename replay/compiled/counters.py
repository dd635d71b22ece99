"""The counter rules' per-event checks (replay/rules/counters.py) and the L1
ledger's running sums (replay/rules/ledger.py), compiled: per-memcg columns of
``md``, ``l1k`` and ``l1i`` that driver.py hands back to the reference rules
for their end-of-trace checks.
"""

from __future__ import annotations

from numba import njit

from .cache import INLINE
from .layout import (
    C_ATT_SPLIT, I_ANON, I_PGPGIN, I_PGPGOUT, K_MEMCG_STAT, MSG_ANON_UNDER, MSG_PGPG_UNDER, M_ANON_ORD, M_ANON_RUN,
    M_ANON_UNDER, M_PG_IN, M_PG_OUT, M_PG_SEEN, M_PG_UNDER, M_SPLIT_EXTRA, R13ANON, R3PGPG, S_ANON_ORD, S_FIRST_TS,
)
from .state import check_one, ledger_get, memcg_row, observed, report

__all__ = ["pgpg_on_memcg_stat", "anon_on_memcg_stat", "l1_count"]


# -- counters.py ---------------------------------------------------------------------------
@njit(**INLINE)
def pgpg_on_memcg_stat(st, seq, ts, memcg, item, value):
    if (item != I_PGPGIN and item != I_PGPGOUT) or not observed(st, memcg):
        return
    check_one(st, R3PGPG, 0, value != 0)
    m = memcg_row(st, memcg)
    md = st.md
    md[m, M_PG_SEEN] = 1
    if item == I_PGPGIN:
        md[m, M_PG_IN] += value
    else:
        md[m, M_PG_OUT] += value
    if not st.cfg[C_ATT_SPLIT] or md[m, M_PG_UNDER]:
        return  # without split rows an excess of PGPGOUT may be split pieces
    led = ledger_get(st, memcg)
    extra = md[led, M_SPLIT_EXTRA] if led >= 0 else 0
    balance = md[m, M_PG_IN] + extra - md[m, M_PG_OUT]
    if balance < 0:
        md[m, M_PG_UNDER] = 1
        report(st, R3PGPG, seq, ts, 0, memcg, st.sc[S_FIRST_TS], -1, MSG_PGPG_UNDER, -balance, 0, 0, 0, 0)


@njit(**INLINE)
def anon_on_memcg_stat(st, seq, ts, memcg, item, value, span):
    if item != I_ANON or not observed(st, memcg):
        return
    check_one(st, R13ANON, abs(value), value != 0)
    m = memcg_row(st, memcg)
    md = st.md
    if md[m, M_ANON_ORD] == 0:  # the rule's Counter keeps first-seen order
        st.sc[S_ANON_ORD] += 1
        md[m, M_ANON_ORD] = st.sc[S_ANON_ORD]
    md[m, M_ANON_RUN] += value
    total = md[m, M_ANON_RUN]
    if total < 0 and span == 0 and not md[m, M_ANON_UNDER]:
        md[m, M_ANON_UNDER] = 1
        report(st, R13ANON, seq, ts, 0, memcg, st.sc[S_FIRST_TS], -1, MSG_ANON_UNDER, total, 0, 0, 0, 0)


# -- ledger.py -----------------------------------------------------------------------------
@njit(**INLINE)
def l1_count(st, kind, memcg, item, nr, value, ret, span):
    m = memcg_row(st, memcg)
    if kind == K_MEMCG_STAT:
        # An aggregated row (span_ns > 0) carries its hit count in ret.
        st.l1i[m, item, 0] += ret if span else 1
        st.l1i[m, item, 1] += value
        st.l1i[m, item, 2] = 1  # the key exists (its sums may be 0)
    else:
        st.l1k[m, kind, 0] += 1
        st.l1k[m, kind, 1] += nr
        st.l1k[m, kind, 2] = 1
