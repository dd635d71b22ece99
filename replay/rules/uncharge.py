"""R3: conservation — every uncharge releases exactly one charge the model holds.

The uncharge row carries the memcg the kernel read from the folio at entry, so
the kernel's own view is compared with the model's at every uncharge.
"""

from __future__ import annotations

from ..automaton import Rule
from ..eras import TRANSFER
from ..events import Event
from ..model import VIA_CHARGE, VIA_FORCE, VIA_TRANSFER, VIA_TRANSFERRED_AWAY

__all__ = ["Conservation"]


class Conservation(Rule):
    id = "R3"
    title = "conservation: uncharges match charges, no double uncharge, no underflow"
    # __mem_cgroup_uncharge() returns early when !folio_memcg(folio); otherwise
    # uncharge_folio() + uncharge_batch() release nr pages (mm/memcontrol.c).
    source = "mm/memcontrol.c __mem_cgroup_uncharge()"
    handles = ("uncharge",)
    needs = ("uncharge",)

    def on_uncharge(self, ev: Event) -> None:
        self.checked += 1
        state = self.model.folios.get(ev.folio)
        if ev.memcg:
            if state is None:
                self.never_charged(self, ev, ev.folio, ev.memcg)
            elif not state.memcg:
                self._already_uncharged(ev, state)
            elif state.memcg != ev.memcg:
                rule = "R5" if state.via in (VIA_TRANSFER, VIA_FORCE) else self.id
                self.report(
                    ev, ev.folio, ev.memcg,
                    f"uncharged from memcg {ev.memcg}, but the model holds it charged to memcg "
                    f"{state.memcg} since seq {state.seq} ({state.via})",
                    since_ts_ns=state.ts_ns, related=[state.seq], rule=rule,
                )
        elif state is not None and state.memcg:
            self.charge_vanished(self, ev, state)

    @staticmethod
    def never_charged(rule: Rule, ev: Event, folio: int, memcg: int) -> None:
        """The kernel holds a charge the trace never made, in a memcg observed
        from its creation (where no charge predates the trace)."""
        ctx = rule.ctx
        if rule.model.split_credit(memcg, ev.nr_pages or 1):
            return  # a part of a large folio split in the trace
        if ctx.observed_from_creation(memcg) and ctx.attached("charge") and ctx.attached("transfer"):
            rule.report(
                ev, folio, memcg,
                f"the kernel {'uncharges' if ev.kind == 'uncharge' else 'moves'} a charge of memcg {memcg}, "
                f"which was observed from its creation, but the trace never charged this folio "
                f"(a charge or transfer is missing)",
                since_ts_ns=rule.model.first_ts, rule="R3",
            )

    def _already_uncharged(self, ev: Event, state) -> None:
        if state.via == VIA_TRANSFERRED_AWAY:
            self.report(
                ev, ev.folio, ev.memcg,
                f"still charged to memcg {ev.memcg} when freed, but its charge was transferred at "
                f"seq {state.seq}; the kernel kept the old folio charged (force-charge semantics?) "
                f"while the era profile is {self.ctx.era.name}",
                since_ts_ns=state.ts_ns, related=[state.seq], rule="R4",
            )
            return
        rule = "R6" if ev.folio in self.model.device_folios else self.id
        live = self.model.ledger(ev.memcg).live - (ev.nr_pages or 1)
        self.report(
            ev, ev.folio, ev.memcg,
            f"double uncharge: already uncharged at seq {state.seq} with no charge since "
            f"(memcg {ev.memcg} live pages would be {live})",
            since_ts_ns=state.ts_ns, related=[state.seq], rule=rule,
        )

    @staticmethod
    def charge_vanished(rule: Rule, ev: Event, state) -> None:
        """The kernel found the folio uncharged where the model holds a charge."""
        if state.migrated_seq >= 0:
            rule.report(
                ev, ev.folio, state.memcg,
                f"source of the force-charged migration at seq {state.migrated_seq} has no charge "
                f"left when freed (transfer semantics?) while the era profile is {rule.ctx.era.name}",
                since_ts_ns=state.ts_ns, related=[state.migrated_seq], rule="R4",
            )
        elif ev.folio in rule.model.device_folios and state.via == VIA_CHARGE:
            # A device-private folio is charged only by a hole insertion (R9); when the insertion
            # aborts, the charge stays on the destination and finalize's free must release it
            # (migrate_vma_insert_page(), mm/migrate_device.c, 5.8+).
            rule.report(
                ev, ev.folio, state.memcg,
                f"the charge of this device-private folio's hole insertion (seq {state.seq}, memcg "
                f"{state.memcg}) was never uncharged: the kernel found no charge at its {ev.kind}",
                since_ts_ns=state.ts_ns, related=[state.seq], rule="R9",
            )
        elif rule.ctx.era.migrate == TRANSFER:
            # From 6.7 only mem_cgroup_migrate() clears a charge without an uncharge.
            rule.report(
                ev, ev.folio, state.memcg,
                f"the kernel found no charge at this {ev.kind}, but the model holds it charged to memcg "
                f"{state.memcg} since seq {state.seq}: a charge transfer is missing",
                since_ts_ns=state.ts_ns, related=[state.seq], rule="R4",
            )
        else:
            rule.report(
                ev, ev.folio, state.memcg,
                f"the kernel found no charge at this {ev.kind}, but the model holds it charged to memcg "
                f"{state.memcg} since seq {state.seq}: an uncharge is missing",
                since_ts_ns=state.ts_ns, related=[state.seq], rule="R3",
            )
