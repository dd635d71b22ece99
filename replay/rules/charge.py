"""R1, R2: a folio holds at most one charge; a failed charge changes nothing."""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event

__all__ = ["OneLiveCharge", "FailedChargeNoEffect"]


class OneLiveCharge(Rule):
    id = "R1"
    title = "at most one live charge per folio"
    # commit_charge() asserts the folio is uncharged: VM_BUG_ON_FOLIO(folio_memcg(folio))
    # (mm/memcontrol.c, all eras).
    source = "mm/memcontrol.c commit_charge()"
    handles = ("charge",)
    needs = ("charge",)

    def on_charge(self, ev: Event) -> None:
        if ev.ret != 0:
            return
        self.check(ev.nr_pages or 1)
        state = self.model.folios.get(ev.folio)
        if state is not None and state.memcg:
            self.report(
                ev,
                ev.folio,
                ev.memcg,
                f"charged to memcg {ev.memcg} while still charged to memcg {state.memcg} "
                f"since seq {state.seq} ({state.via}); no uncharge in between",
                since_ts_ns=state.ts_ns,
                related=[state.seq],
            )


class FailedChargeNoEffect(Rule):
    id = "R2"
    title = "a failed charge has no effect"
    # try_charge_memcg() failing returns before commit_charge() (mm/memcontrol.c).
    source = "mm/memcontrol.c charge_memcg()"
    handles = ("charge",)
    needs = ("charge",)

    def on_charge(self, ev: Event) -> None:
        if ev.ret == 0:
            return
        self.check(ev.nr_pages or 1)
        if ev.memcg:
            self.report(
                ev,
                ev.folio,
                ev.memcg,
                f"charge failed (ret {ev.ret}) but the folio is charged to memcg {ev.memcg} afterwards",
            )
