"""R6, R7, R9, R11: device-private folios — freed and uncharged exactly once,
at the era's refcount, and charged fresh only by a hole insertion."""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event
from .blame import double_uncharge_owner

__all__ = [
    "DeviceFreeUnchargesOnce",
    "DeviceFreeRefcount",
    "DeviceChargeOnlyByInsertion",
    "ForkSharesDeviceFolios",
]


class DeviceFreeUnchargesOnce(Rule):
    id = "R6"
    title = "a device-private free uncharges exactly once"
    # free_zone_device_page()/free_zone_device_folio() call mem_cgroup_uncharge()
    # first (mm/memremap.c, 5.18+); c733a82874a7 "mm/memcontrol: support MEMORY_DEVICE_PRIVATE".
    source = "c733a82874a7; mm/memremap.c free_zone_device_page()"
    handles = ("device_free", "uncharge")
    needs = ("device_free",)

    def on_device_free(self, ev: Event) -> None:
        self.check(ev.nr_pages or 1)

    def on_uncharge(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        if ev.memcg and state is not None and not state.memcg \
                and double_uncharge_owner(state, ev.folio, self.model.device_folios) == self.id:
            live = self.model.ledger(ev.memcg).live - (ev.nr_pages or 1)
            self.report(
                ev, ev.folio, ev.memcg,
                f"double uncharge of a device-private folio: already uncharged at seq {state.seq} with no "
                f"charge since (memcg {ev.memcg} live pages would be {live})",
                since_ts_ns=state.ts_ns, related=[state.seq],
            )

    def finish(self) -> None:
        # The pairing of each free with its uncharge is the model's (Model.device_free_pairs).
        for pair in self.model.unpaired_device_frees():
            free = pair.free
            after = (f"next event on tid {free.tid}: seq {pair.ended_by_seq} ({pair.ended_by_kind})"
                     if pair.ended_by_seq >= 0 else "the trace ends first")
            self.report(
                free, free.folio, free.memcg,
                f"device-private folio freed while charged to memcg {free.memcg}, but no uncharge "
                f"followed in the free path ({after})",
                related=[pair.ended_by_seq] if pair.ended_by_seq >= 0 else [],
            )


class DeviceFreeRefcount(Rule):
    id = "R7"
    title = "device-private pages are freed at the era's refcount"
    # 27674ef6c73f "mm: remove the extra ZONE_DEVICE struct page refcount" (5.18):
    # freed at 0, not 1; ef233450898f (6.1): free pages stay at 0.
    source = "27674ef6c73f; ef233450898f"
    handles = ("device_free",)
    needs = ("device_free",)

    def on_device_free(self, ev: Event) -> None:
        if ev.value < 0:
            return  # refcount not read
        self.check(ev.nr_pages or 1)
        expected = self.ctx.era.device_free_refcount
        if ev.value != expected:
            self.report(
                ev, ev.folio, ev.memcg,
                f"device-private folio freed at refcount {ev.value}; the {self.ctx.era.name} era "
                f"frees at {expected}",
            )


class DeviceChargeOnlyByInsertion(Rule):
    id = "R9"
    title = "a device-private folio is charged fresh only by a hole insertion"
    # migrate_vma_insert_page() is the only mem_cgroup_charge() of a DP folio
    # (mm/migrate_device.c); fork shares DP entries without charging (R11,
    # copy_nonpresent_pte() in mm/memory.c).
    source = "mm/migrate_device.c migrate_vma_insert_page(); mm/memory.c copy_nonpresent_pte()"
    handles = ("charge",)
    needs = ("charge", "migrate_pages")

    def on_charge(self, ev: Event) -> None:
        if ev.ret != 0 or ev.folio not in self.model.device_folios:
            return
        self.check(ev.nr_pages or 1)
        if ev.tid in self.model.migrate_windows or ev.pid in self.model.forked_pids:
            return  # a hole insertion; forked processes are R11's
        self.report(ev, ev.folio, ev.memcg, "device-private folio charged outside a migrate_vma hole insertion")


class ForkSharesDeviceFolios(Rule):
    id = "R11"
    title = "fork shares device-private pages without a new charge"
    # copy_nonpresent_pte() takes a reference and dups the rmap of a DP entry,
    # no charge (mm/memory.c); a COW write first migrates it back (migrate_to_ram).
    source = "mm/memory.c copy_nonpresent_pte()"
    handles = ("fork", "charge")
    needs = ("charge", "fork")

    def on_fork(self, ev: Event) -> None:
        self.check(substantive=False)  # a fork alone charges nothing

    def on_charge(self, ev: Event) -> None:
        if ev.ret != 0 or ev.folio not in self.model.device_folios or ev.pid not in self.model.forked_pids:
            return
        self.check(ev.nr_pages or 1)
        if ev.tid not in self.model.migrate_windows:
            self.report(
                ev, ev.folio, ev.memcg,
                "device-private folio charged outside a migration in a process that forked "
                "(or was forked): fork must share device-private pages without a new charge",
            )
