"""The accounting rules (README "Rules"), one small unit each, in report order.

Each rule id is reported only by its own unit; which unit owns a
disagreement that several see is decided in one place (blame.py).
"""

from .charge import FailedChargeNoEffect, OneLiveCharge
from .counters import AnonMappedNetsZero, PgpgBalance
from .device import (
    DeviceChargeOnlyByInsertion,
    DeviceFreeRefcount,
    DeviceFreeUnchargesOnce,
    ForkSharesDeviceFolios,
)
from .fault import MigrateBackNeverFails
from .hierarchy import HierarchyCovered
from .largefolio import LargeFolios
from .leaks import ReleasedAtExit
from .ledger import LedgerAgreement
from .lru import NoLruForUnchargedOrDevice
from .migration import MigrationKeepsMemcg, MigrationPerEra
from .reconcile import UsageReconciliation
from .uncharge import Conservation

ALL_RULES = (
    OneLiveCharge,
    FailedChargeNoEffect,
    Conservation,
    PgpgBalance,
    UsageReconciliation,
    MigrationPerEra,
    MigrationKeepsMemcg,
    DeviceFreeUnchargesOnce,
    DeviceFreeRefcount,
    MigrateBackNeverFails,
    DeviceChargeOnlyByInsertion,
    ReleasedAtExit,
    ForkSharesDeviceFolios,
    NoLruForUnchargedOrDevice,
    AnonMappedNetsZero,
    HierarchyCovered,
    LargeFolios,
    LedgerAgreement,
)

__all__ = ["ALL_RULES"]
