"""R3: conservation — every uncharge releases exactly one charge the model holds.

The uncharge row carries the memcg the kernel read from the folio at entry, so
the kernel's own view is compared with the model's at every uncharge (and at
every transfer and device free, which read the folio's memcg too). Cases that
another rule owns (replay/rules/blame.py) are left to it.
"""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event
from .blame import attribution_owner, double_uncharge_owner, vanished_owner

__all__ = ["Conservation"]


class Conservation(Rule):
    id = "R3"
    title = "conservation: uncharges match charges, no double uncharge, no underflow"
    # __mem_cgroup_uncharge() returns early when !folio_memcg(folio); otherwise
    # uncharge_folio() + uncharge_batch() release nr pages (mm/memcontrol.c).
    source = "mm/memcontrol.c __mem_cgroup_uncharge()"
    handles = ("uncharge", "transfer", "device_free")
    needs = ("uncharge",)

    def on_uncharge(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        self.check(ev.nr_pages or (state.nr if state else 1), substantive=bool(ev.memcg) or state is not None)
        if ev.memcg:
            if state is None:
                self._never_charged(ev, ev.folio, ev.memcg)
            elif not state.memcg:
                if double_uncharge_owner(state, ev.folio, self.model.device_folios) == self.id:
                    live = self.model.ledger(ev.memcg).live - (ev.nr_pages or 1)
                    self.report(
                        ev, ev.folio, ev.memcg,
                        f"double uncharge: already uncharged at seq {state.seq} with no charge since "
                        f"(memcg {ev.memcg} live pages would be {live})",
                        since_ts_ns=state.ts_ns, related=[state.seq],
                    )
            elif state.memcg != ev.memcg and attribution_owner(state) == self.id:
                self.report(
                    ev, ev.folio, ev.memcg,
                    f"uncharged from memcg {ev.memcg}, but the model holds it charged to memcg "
                    f"{state.memcg} since seq {state.seq} ({state.via})",
                    since_ts_ns=state.ts_ns, related=[state.seq],
                )
        elif state is not None and state.memcg:
            self._vanished(ev, state)

    def on_transfer(self, ev: Event) -> None:
        if ev.memcg and ev.folio not in self.model.folios:
            self._never_charged(ev, ev.folio, ev.memcg)

    def on_device_free(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        if not ev.memcg and state is not None and state.memcg:
            self._vanished(ev, state)

    def _never_charged(self, ev: Event, folio: int, memcg: int) -> None:
        """The kernel holds a charge the trace never made, in a memcg observed
        from its creation (where no charge predates the trace)."""
        ctx = self.ctx
        if self.model.split_credit(memcg, ev.nr_pages or 1):
            return  # a part of a large folio split in the trace
        if ctx.observed_from_creation(memcg) and ctx.attached("charge") and ctx.attached("transfer"):
            self.report(
                ev, folio, memcg,
                f"the kernel {'uncharges' if ev.kind == 'uncharge' else 'moves'} a charge of memcg {memcg}, "
                f"which was observed from its creation, but the trace never charged this folio "
                f"(a charge or transfer is missing)",
                since_ts_ns=self.model.first_ts,
            )

    def _vanished(self, ev: Event, state) -> None:
        if vanished_owner(state, self.ctx.era) != self.id:
            return
        self.report(
            ev, ev.folio, state.memcg,
            f"the kernel found no charge at this {ev.kind}, but the model holds it charged to memcg "
            f"{state.memcg} since seq {state.seq}: an uncharge is missing",
            since_ts_ns=state.ts_ns, related=[state.seq],
        )
