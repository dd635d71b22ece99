"""The rules of kernel-facts §6, one small unit each, in report order."""

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
from .leaks import ReleasedAtExit
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
)

__all__ = ["ALL_RULES"]
