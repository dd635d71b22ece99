"""Array layouts of the compiled engine: codes of kinds, rules, "via" states,
stop reasons and messages, and the column of every per-folio, per-memcg and
per-thread field.

This module is the one owner of those numbers (model.py, rules.py, kernel.py,
driver.py and results.py import them). Kinds and rules mirror traces/schema.py
KINDS and replay/rules ALL_RULES: :func:`check_reference` says what differs,
and the driver then falls back to the reference engine.
"""

from __future__ import annotations

from chargetrace.replay import model as _model

__all__ = ["KINDS", "KIND_CODE", "RULE_IDS", "VIA_NAMES", "check_reference"]

# -- event kinds (traces/schema.py KINDS); kinds the schema does not know get
#    codes from len(KINDS) on and are replayed as the reference does (no rule, no effect)
(K_FAULT, K_DEVICE_FAULT, K_DEVICE_FAULT_DONE, K_MIGRATE_SETUP, K_MIGRATE_PAGES, K_MIGRATE_FINALIZE,
 K_PAGE_MIGRATION, K_CHARGE, K_UNCHARGE, K_TRANSFER, K_REPLACE, K_DEVICE_FREE, K_SPLIT, K_MEMCG_STAT,
 K_USAGE, K_LRU_INSERT, K_MEMSTAT, K_FORK, K_EXIT, K_LOST) = range(20)
KINDS = ("fault", "device_fault", "device_fault_done", "migrate_setup", "migrate_pages", "migrate_finalize",
         "page_migration", "charge", "uncharge", "transfer", "replace", "device_free", "split", "memcg_stat",
         "usage", "lru_insert", "memstat", "fork", "exit", "lost")
KIND_CODE = {name: code for code, name in enumerate(KINDS)}

# -- counter items with a meaning to the rules (others get codes as met)
I_NONE, I_PGPGIN, I_PGPGOUT, I_ANON = 0, 1, 2, 3
ITEMS_FIXED = ("", "PGPGIN", "PGPGOUT", "NR_ANON_MAPPED")

# -- rules, in replay/rules ALL_RULES order
RULE_IDS = ("R1", "R2", "R3", "R3.pgpg", "R3.usage", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12",
            "R13.anon", "R14", "R15", "L1")
(R1, R2, R3, R3PGPG, R3USAGE, R4, R5, R6, R7, R8, R9, R10, R11, R12, R13ANON, R14, R15, L1) = range(18)
NR = len(RULE_IDS)

# -- how a folio got its state (replay/model.py VIA_*)
VIA_NAMES = (_model.VIA_CHARGE, _model.VIA_TRANSFER, _model.VIA_FORCE, _model.VIA_PRE_TRACE,
             _model.VIA_UNCHARGE, _model.VIA_TRANSFERRED_AWAY)
V_CHARGE, V_TRANSFER, V_FORCE, V_PRE, V_UNCHARGE, V_AWAY = range(6)

# -- per-folio fields (FolioState; F_LAST is its last_memcg)
F_MEMCG, F_NR, F_VIA, F_SEQ, F_TS, F_PID, F_IN, F_MIG, F_ORD, F_LAST = range(10)
NF = 10
# -- per-memcg fields: MemcgLedger's numbers, and the counter rules' running state
(M_EXISTS, M_CHARGED, M_FORCE, M_UNCHARGED, M_PRE, M_TIN, M_TOUT, M_LIVE, M_SPLIT, M_SPLIT_EXTRA, M_OBS,
 M_PG_SEEN, M_PG_IN, M_PG_OUT, M_PG_UNDER, M_ANON_ORD, M_ANON_RUN, M_ANON_UNDER) = range(18)
NM = 18
# -- per-thread fields: migrate window, device-fault window (T_FLT_DRV: its driver's row in
#    ``dc``), pending device free
(T_MIG_ON, T_MIG_SEQ, T_MIG_TS, T_MIG_ITEM, T_MIG_XFERS, T_FLT_ON, T_FLT_SEQ, T_FLT_TS, T_FLT_DRV,
 T_PEND_ON, T_P_SEQ, T_P_TS, T_P_FOLIO, T_P_MEMCG, T_P_NR, T_P_PID, T_P_VALUE, T_P_CPU, T_P_PGMAP) = range(19)
NT = 19
# -- per-driver figures (replay/drivers.py DriverTally), one row per pgmap_ops id met; row 0 is
#    id 0. D_SEEN: a figure was added (a DriverTally dict has the key, even when the sum is 0)
D_FAULTS, D_TO_DEVICE, D_FROM_DEVICE, D_FREED, D_SEEN = range(5)
ND = 5
# -- per-process flags
P_FORKED, P_EXITED = 0, 1
NP = 2
# -- scalars
(S_FIRST_TS, S_LAST_SEQ, S_LAST_TS, S_LAST_ACT, S_FH_N, S_FHW, S_FFREE, S_NMEMCG, S_NTID, S_NPID, S_ORD,
 S_NFIND, S_NUNP, S_RING_HEAD, S_RING_N, S_FORGOTTEN, S_ANON_ORD, S_STOP, S_NDRV) = range(19)
NS = 19
# -- why the loop stopped before the end of a batch
STOP_ROOM, STOP_SAMPLE, STOP_ORDER = 1, 2, 3
# -- configuration
(C_FORCE, C_REFCOUNT, C_ATT_CHARGE, C_ATT_TRANSFER, C_ATT_SPLIT, C_EXITED, C_SETTLED, C_RING_CAP) = range(8)
C_ACTIVE = 8  # C_ACTIVE + rule index: 1 when the rule applies to this trace
NC = C_ACTIVE + NR
# -- one finding: rule, where, what it rests on, message code and arguments
X_RULE, X_SEQ, X_TS, X_FOLIO, X_MEMCG, X_SINCE, X_REL, X_MSG, X_A0 = range(9)
NX = X_A0 + 5
# -- one device free whose uncharge did not come (DeviceFreePair with uncharge_seq -1)
(U_SEQ, U_TS, U_CPU, U_PID, U_TID, U_FOLIO, U_NR, U_MEMCG, U_VALUE, U_ENDED_SEQ, U_ENDED_KIND, U_PGMAP) = range(12)
NU = 12

# -- message codes (results.py renders them in the reference rules' words)
(MSG_R1, MSG_R2, MSG_NEVER, MSG_DOUBLE, MSG_WRONG_MEMCG, MSG_VANISHED, MSG_R4_AWAY, MSG_R4_FORCE_SRC,
 MSG_R4_TRANSFER_MISSING, MSG_R4_DEST_CHARGED, MSG_R4_DEST_UNCHARGED, MSG_R4_OLD_UNCHARGED, MSG_R4_COUNT,
 MSG_R5_MOVED, MSG_R5_OLD, MSG_R5_WRONG_MEMCG, MSG_R6_DOUBLE, MSG_R7, MSG_R8_CHARGE, MSG_R8_OOM, MSG_R9,
 MSG_R9_VANISHED, MSG_R11, MSG_R12_DEVICE, MSG_R12_UNCHARGED, MSG_PGPG_UNDER, MSG_ANON_UNDER, MSG_R15_ORDER,
 MSG_R15_SIZE, MSG_R15_SPLIT_ORDER, MSG_R15_SPLIT_MEMCG, MSG_R15_SPLIT_SIZE) = range(32)


def check_reference(kinds_in_trace: set[str]) -> str:
    """Why this engine cannot replay a trace with these kinds ("" if it can):
    the reference's rule list or the schema's kinds changed under it."""
    from chargetrace.replay.rules import ALL_RULES
    from chargetrace.traces.schema import KINDS as SCHEMA_KINDS

    ids = tuple(r.id for r in ALL_RULES)
    if ids != RULE_IDS:
        return f"its rules {', '.join(RULE_IDS)} differ from the reference's {', '.join(ids)}"
    unknown = sorted((kinds_in_trace & set(SCHEMA_KINDS)) - set(KINDS))
    if unknown:
        return f"it does not know the schema kind(s) {', '.join(unknown)}"
    return ""
