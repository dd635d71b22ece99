"""Which rule owns a disagreement between the kernel and the model.

One owner for the classification: several rule units see the same uncharge
or free (R3, R4, R5, R6), and each reports only what this module assigns to
its own id, so no unit reports another rule's id and no case is reported twice.
"""

from __future__ import annotations

from ..eras import TRANSFER, EraProfile
from ..model import VIA_FORCE, VIA_TRANSFER, VIA_TRANSFERRED_AWAY, FolioState

__all__ = ["attribution_owner", "double_uncharge_owner", "vanished_owner"]


def attribution_owner(state: FolioState) -> str:
    """The kernel uncharges ``state``'s folio from another memcg than the model's:
    a migration that changed the memcg (R5) or a plain misattribution (R3)."""
    return "R5" if state.via in (VIA_TRANSFER, VIA_FORCE) else "R3"


def double_uncharge_owner(state: FolioState, folio: int, device_folios: frozenset[int]) -> str:
    """The kernel uncharges a folio the model holds uncharged: the old folio of a
    transfer still charged (era mismatch, R4), a device-private folio (R6), or R3."""
    if state.via == VIA_TRANSFERRED_AWAY:
        return "R4"
    return "R6" if folio in device_folios else "R3"


def vanished_owner(state: FolioState, era: EraProfile) -> str:
    """The kernel finds no charge where the model holds one: the force-charged
    source of a migration, or (>= 6.7, where only mem_cgroup_migrate() clears a
    charge without an uncharge) a missing transfer (R4); else a missing uncharge (R3)."""
    return "R4" if state.migrated_seq >= 0 or era.migrate == TRANSFER else "R3"
