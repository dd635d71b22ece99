"""From the compiled engine's findings buffer to :class:`Finding` objects,
worded as the reference rules word them (replay/rules/: each template below
names the handler whose f-string it repeats; tests/test_engines.py compares
every message of both engines).

Only findings become Python objects here (few, and only when a rule fires).
"""

from __future__ import annotations

import numpy as np

from chargetrace.replay.findings import Finding

from .layout import (
    MSG_ANON_UNDER, MSG_DOUBLE, MSG_NEVER, MSG_PGPG_UNDER, MSG_R1, MSG_R2, MSG_R4_AWAY, MSG_R4_COUNT,
    MSG_R4_DEST_CHARGED, MSG_R4_DEST_UNCHARGED, MSG_R4_FORCE_SRC, MSG_R4_OLD_UNCHARGED, MSG_R4_TRANSFER_MISSING,
    MSG_R5_MOVED, MSG_R5_OLD, MSG_R5_WRONG_MEMCG, MSG_R6_DOUBLE, MSG_R7, MSG_R8_CHARGE, MSG_R8_OOM, MSG_R9,
    MSG_R9_VANISHED, MSG_R11, MSG_R12_DEVICE, MSG_R12_UNCHARGED, MSG_R15_ORDER, MSG_R15_SIZE, MSG_R15_SPLIT_MEMCG,
    MSG_R15_SPLIT_ORDER, MSG_R15_SPLIT_SIZE, MSG_VANISHED, MSG_WRONG_MEMCG, RULE_IDS,
    VIA_NAMES, X_A0, X_FOLIO, X_MEMCG, X_MSG, X_REL, X_RULE, X_SEQ, X_SINCE, X_TS,
)

__all__ = ["findings_of", "as_uint64"]

_U64 = (1 << 64) - 1


def as_uint64(value: int) -> int:
    """An id stored in an int64 column, back as the uint64 the trace holds."""
    return value & _U64


def _message(code: int, memcg: int, a: list[int], era: str, kind_name, item_name) -> str:  # noqa: C901
    via = VIA_NAMES
    if code == MSG_R1:  # charge.py OneLiveCharge.on_charge
        return (f"charged to memcg {memcg} while still charged to memcg {a[0]} since seq {a[1]} ({via[a[2]]}); "
                f"no uncharge in between")
    if code == MSG_R2:  # charge.py FailedChargeNoEffect.on_charge
        return f"charge failed (ret {a[0]}) but the folio is charged to memcg {memcg} afterwards"
    if code == MSG_NEVER:  # uncharge.py Conservation._never_charged
        return (f"the kernel {'uncharges' if kind_name(a[0]) == 'uncharge' else 'moves'} a charge of memcg {memcg}, "
                f"which was observed from its creation, but the trace never charged this folio "
                f"(a charge or transfer is missing)")
    if code == MSG_DOUBLE:  # uncharge.py Conservation.on_uncharge
        return (f"double uncharge: already uncharged at seq {a[0]} with no charge since "
                f"(memcg {memcg} live pages would be {a[1]})")
    if code == MSG_WRONG_MEMCG:  # uncharge.py Conservation.on_uncharge
        return (f"uncharged from memcg {memcg}, but the model holds it charged to memcg "
                f"{a[0]} since seq {a[1]} ({via[a[2]]})")
    if code == MSG_VANISHED:  # uncharge.py Conservation._vanished
        return (f"the kernel found no charge at this {kind_name(a[0])}, but the model holds it charged to memcg "
                f"{a[1]} since seq {a[2]}: an uncharge is missing")
    if code == MSG_R4_AWAY:  # migration.py MigrationPerEra.on_uncharge
        return (f"still charged to memcg {memcg} when freed, but its charge was transferred at "
                f"seq {a[0]}; the kernel kept the old folio charged (force-charge semantics?) "
                f"while the era profile is {era}")
    if code == MSG_R4_FORCE_SRC:  # migration.py MigrationPerEra._vanished
        return (f"source of the force-charged migration at seq {a[0]} has no charge "
                f"left when freed (transfer semantics?) while the era profile is {era}")
    if code == MSG_R4_TRANSFER_MISSING:  # migration.py MigrationPerEra._vanished
        return (f"the kernel found no charge at this {kind_name(a[0])}, but the model holds it charged to memcg "
                f"{a[1]} since seq {a[2]}: a charge transfer is missing")
    if code == MSG_R4_DEST_CHARGED:  # migration.py MigrationPerEra.on_transfer
        return (f"migration into a destination still charged to memcg {a[0]} since seq {a[1]} "
                f"({via[a[2]]}); its last free did not uncharge it")
    if code == MSG_R4_DEST_UNCHARGED:
        return "destination is not charged after the transfer"
    if code == MSG_R4_OLD_UNCHARGED:
        return (f"the kernel migrates a charge of memcg {memcg} from a folio the model holds "
                f"uncharged since seq {a[0]} ({via[a[1]]}): a charge is missing")
    if code == MSG_R4_COUNT:  # migration.py MigrationPerEra.on_migrate_pages
        return (f"{item_name(a[0]) or 'migrate_pages'} migrated {a[1]} source folio(s) but "
                f"{a[2]} charge transfer(s) were recorded since seq {a[3]}")
    if code == MSG_R5_MOVED:  # migration.py MigrationKeepsMemcg.on_transfer
        return f"migration moved the charge from memcg {as_uint64(a[0])} to memcg {as_uint64(a[1])}"
    if code == MSG_R5_OLD:
        return (f"the kernel migrates a charge of memcg {memcg}, but the model holds the folio "
                f"charged to memcg {a[0]} since seq {a[1]}")
    if code == MSG_R5_WRONG_MEMCG:  # migration.py MigrationKeepsMemcg.on_uncharge
        return (f"uncharged from memcg {memcg}, but the model holds it charged to memcg "
                f"{a[0]} since seq {a[1]} ({via[a[2]]}): the migration changed the memcg")
    if code == MSG_R6_DOUBLE:  # device.py DeviceFreeUnchargesOnce.on_uncharge
        return (f"double uncharge of a device-private folio: already uncharged at seq {a[0]} with no "
                f"charge since (memcg {memcg} live pages would be {a[1]})")
    if code == MSG_R7:  # device.py DeviceFreeRefcount.on_device_free
        return f"device-private folio freed at refcount {a[0]}; the {era} era frees at {a[1]}"
    if code == MSG_R8_CHARGE:  # fault.py MigrateBackNeverFails.on_charge
        return f"charge failed (ret {a[0]}) inside the device-private fault that began at seq {a[1]}"
    if code == MSG_R8_OOM:  # fault.py MigrateBackNeverFails.on_device_fault_done
        return f"device-private fault from seq {a[0]} returned VM_FAULT_OOM ({a[1]:#x})"
    if code == MSG_R9:  # device.py DeviceChargeOnlyByInsertion.on_charge
        return "device-private folio charged outside a migrate_vma hole insertion"
    if code == MSG_R9_VANISHED:  # device.py DeviceChargeOnlyByInsertion.on_device_free
        return (f"the charge of this device-private folio's hole insertion (seq {a[0]}, memcg "
                f"{a[1]}) was never uncharged: the kernel found no charge at its {kind_name(a[2])}")
    if code == MSG_R11:  # device.py ForkSharesDeviceFolios.on_charge
        return ("device-private folio charged outside a migration in a process that forked "
                "(or was forked): fork must share device-private pages without a new charge")
    if code == MSG_R12_DEVICE:  # lru.py NoLruForUnchargedOrDevice.on_lru_insert
        return "device-private folio put on an LRU list (ZONE_DEVICE folios never go on an LRU)"
    if code == MSG_R12_UNCHARGED:
        was = ((f"; the model last saw it {via[a[1]]} at seq {a[2]}" + (f" (memcg {memcg})" if memcg else ""))
               if a[0] else "")
        return f"uncharged folio (memcg_data 0) put on an LRU list{was}"
    if code == MSG_PGPG_UNDER:  # counters.py PgpgBalance.on_memcg_stat
        return (f"memcg {memcg} (observed from its creation) has {a[0]} more folio uncharge(s) "
                f"(PGPGOUT) than charges (PGPGIN) plus pieces of split folios")
    if code == MSG_ANON_UNDER:  # counters.py AnonMappedNetsZero.on_memcg_stat
        return (f"NR_ANON_MAPPED of memcg {memcg} went negative ({a[0]} pages) although the memcg was "
                f"observed from its creation")
    if code == MSG_R15_ORDER:  # largefolio.py LargeFolios.on_charge and _size
        return f"{_what(kind_name(a[0]))} of {a[1]} pages: not 1 << order"
    if code == MSG_R15_SIZE:  # largefolio.py LargeFolios._size
        return (f"{_what(kind_name(a[0]))} of {a[1]} pages, but the folio was charged as {a[2]} pages at seq {a[3]} "
                f"({via[a[4]]}) and not split since")
    if code == MSG_R15_SPLIT_ORDER:  # largefolio.py LargeFolios.on_split
        return f"split of {a[0]} pages into pieces of {a[1]}: orders must fall (new < old)"
    if code == MSG_R15_SPLIT_MEMCG:
        return (f"split hands the pieces to memcg {memcg}, but the folio is charged to memcg "
                f"{as_uint64(a[0])} since seq {a[1]}: a split moves no charge")
    if code == MSG_R15_SPLIT_SIZE:
        return f"split of a {a[0]}-page folio that was charged as {a[1]} pages at seq {a[2]}"
    raise AssertionError(f"message code {code}")


#: The words LargeFolios gives each kind's row in its messages.
_WHAT = {"device_free": "device-private free"}


def _what(kind: str) -> str:
    return _WHAT.get(kind, kind)


def findings_of(rows: np.ndarray, era: str, kinds: list[str], items: list[str]) -> list[Finding]:
    """Finding objects from findings-buffer rows, in buffer (= report) order."""
    out = []
    kind_name = kinds.__getitem__
    item_name = items.__getitem__
    for r in rows.tolist():
        memcg = as_uint64(r[X_MEMCG])
        a = r[X_A0:]
        out.append(Finding(
            rule=RULE_IDS[r[X_RULE]], seq=as_uint64(r[X_SEQ]), ts_ns=as_uint64(r[X_TS]),
            folio=as_uint64(r[X_FOLIO]), memcg=memcg,
            message=_message(r[X_MSG], memcg, a, era, kind_name, item_name),
            since_ts_ns=r[X_SINCE], related_seqs=[r[X_REL]] if r[X_REL] >= 0 else [],
        ))
    return out
