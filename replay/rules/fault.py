"""R8: migrating a device-private page back to RAM never fails on the memcg limit."""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event

__all__ = ["MigrateBackNeverFails"]

_VM_FAULT_OOM = 0x1  # include/linux/mm_types.h enum vm_fault_reason


class MigrateBackNeverFails(Rule):
    id = "R8"
    title = "migrating back to RAM never fails on the memcg limit"
    # Documentation/mm/hmm.rst: migration back "cannot fail because it would go
    # above memory cgroup limit"; the charge moves with mem_cgroup_migrate().
    source = "Documentation/mm/hmm.rst; mm/memory.c do_swap_page()"
    handles = ("charge", "device_fault_done")
    needs = ("device_fault",)

    def on_charge(self, ev: Event) -> None:
        window = self.model.fault_windows.get(ev.tid)
        if window is None or ev.ret == 0:
            return
        self.report(
            ev, ev.folio, ev.memcg,
            f"charge failed (ret {ev.ret}) inside the device-private fault that began at seq {window.seq}",
            since_ts_ns=window.ts_ns, related=[window.seq],
        )

    def on_device_fault_done(self, ev: Event) -> None:
        window = self.model.fault_windows.get(ev.tid)
        if window is None:
            return  # the trace began inside this fault
        self.check()
        if ev.ret & _VM_FAULT_OOM:
            self.report(
                ev, 0, 0,
                f"device-private fault from seq {window.seq} returned VM_FAULT_OOM ({ev.ret:#x})",
                since_ts_ns=window.ts_ns, related=[window.seq],
            )
