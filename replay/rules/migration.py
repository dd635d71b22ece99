"""R4, R5: migration moves (<= 6.6: duplicates, then frees) the charge, and
never changes the owning memcg."""

from __future__ import annotations

from ..automaton import Rule
from ..eras import FORCE
from ..events import Event
from ..findings import CANDIDATE, VIOLATION
from .blame import attribution_owner, double_uncharge_owner, vanished_owner

__all__ = ["MigrationPerEra", "MigrationKeepsMemcg"]


class MigrationPerEra(Rule):
    id = "R4"
    title = "migration charges per era (force-charge <= 6.6, transfer >= 6.7)"
    # <= 6.6: mem_cgroup_migrate() force-charges new, old is uncharged when freed.
    # >= 6.7: 85ce2c517ade "memcontrol: only transfer the memcg data for migration".
    source = "85ce2c517ade; mm/memcontrol.c mem_cgroup_migrate()"
    handles = ("transfer", "migrate_pages", "uncharge", "device_free")
    needs = ("transfer",)

    def on_transfer(self, ev: Event) -> None:
        self.check(ev.nr_pages or 1, substantive=bool(ev.memcg))
        if not ev.memcg:
            return  # the kernel returns early (and WARNs) for an uncharged old folio
        new = self.model.folios.get(ev.folio_new)
        if new is not None and new.memcg:
            # A migration destination is freshly allocated: >= 6.7 commit_charge()
            # asserts it is uncharged; <= 6.6 silently skips it (its stale charge
            # was never uncharged when it was last freed).
            self.report(
                ev, ev.folio_new, new.memcg,
                f"migration into a destination still charged to memcg {new.memcg} since seq {new.seq} "
                f"({new.via}); its last free did not uncharge it",
                since_ts_ns=new.ts_ns, related=[new.seq],
            )
        if not ev.memcg_new and (new is None or not new.memcg):
            self.report(ev, ev.folio_new, ev.memcg, "destination is not charged after the transfer")
        old = self.model.folios.get(ev.folio)
        if old is not None and not old.memcg and self.ctx.attached("charge"):
            self.report(
                ev, ev.folio, ev.memcg,
                f"the kernel migrates a charge of memcg {ev.memcg} from a folio the model holds "
                f"uncharged since seq {old.seq} ({old.via}): a charge is missing",
                since_ts_ns=old.ts_ns, related=[old.seq],
            )

    def on_uncharge(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        if state is None:
            return
        if ev.memcg and not state.memcg:
            if double_uncharge_owner(state, ev.folio, self.model.device_folios) == self.id:
                self.report(
                    ev, ev.folio, ev.memcg,
                    f"still charged to memcg {ev.memcg} when freed, but its charge was transferred at "
                    f"seq {state.seq}; the kernel kept the old folio charged (force-charge semantics?) "
                    f"while the era profile is {self.ctx.era.name}",
                    since_ts_ns=state.ts_ns, related=[state.seq],
                )
        elif not ev.memcg and state.memcg:
            self._vanished(ev, state)

    def on_device_free(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        if not ev.memcg and state is not None and state.memcg:
            self._vanished(ev, state)

    def _vanished(self, ev: Event, state) -> None:
        if vanished_owner(state, self.ctx.era) != self.id:
            return
        if state.migrated_seq >= 0:
            message = (f"source of the force-charged migration at seq {state.migrated_seq} has no charge "
                       f"left when freed (transfer semantics?) while the era profile is {self.ctx.era.name}")
            related = [state.migrated_seq]
        else:
            message = (f"the kernel found no charge at this {ev.kind}, but the model holds it charged to memcg "
                       f"{state.memcg} since seq {state.seq}: a charge transfer is missing")
            related = [state.seq]
        self.report(ev, ev.folio, state.memcg, message, since_ts_ns=state.ts_ns, related=related)

    def on_migrate_pages(self, ev: Event) -> None:
        window = self.model.migrate_windows.get(ev.tid)
        if window is None or ev.value < 0:
            return  # the trace began inside this migration, or the count was not read
        self.check(substantive=False)
        if window.transfers != ev.value:
            self.report(
                ev, 0, 0,
                f"{ev.item or 'migrate_pages'} migrated {ev.value} source folio(s) but "
                f"{window.transfers} charge transfer(s) were recorded since seq {window.seq}",
                since_ts_ns=window.ts_ns, related=[window.seq],
            )

    def finish(self) -> None:
        if self.ctx.era.migrate != FORCE:
            return
        for folio, state in self.model.folios.items():
            if state.memcg and state.migrated_seq >= 0:
                self.check(state.nr)
                closed = self.ctx.closed(state.memcg)
                self.report(
                    self.end_point(), folio, state.memcg,
                    f"source of the force-charged migration at seq {state.migrated_seq} is still "
                    f"charged to memcg {state.memcg} at the end of the trace",
                    since_ts_ns=state.ts_ns, related=[state.migrated_seq],
                    kind=VIOLATION if closed else CANDIDATE,
                )


class MigrationKeepsMemcg(Rule):
    id = "R5"
    title = "migration keeps the owning memcg"
    # Documentation/mm/hmm.rst "Memory cgroup (memcg) and rss accounting".
    source = "Documentation/mm/hmm.rst; mm/memcontrol.c mem_cgroup_migrate()"
    handles = ("transfer", "replace", "uncharge")
    needs = ("transfer",)

    def on_transfer(self, ev: Event) -> None:
        if not ev.memcg:
            return
        self.check(ev.nr_pages or 1)
        if ev.memcg_new and ev.memcg_new != ev.memcg:
            self.report(
                ev, ev.folio_new, ev.memcg_new,
                f"migration moved the charge from memcg {ev.memcg} to memcg {ev.memcg_new}",
            )
        old = self.model.folios.get(ev.folio)
        if old is not None and old.memcg and old.memcg != ev.memcg:
            self.report(
                ev, ev.folio, ev.memcg,
                f"the kernel migrates a charge of memcg {ev.memcg}, but the model holds the folio "
                f"charged to memcg {old.memcg} since seq {old.seq}",
                since_ts_ns=old.ts_ns, related=[old.seq],
            )

    on_replace = on_transfer

    def on_uncharge(self, ev: Event) -> None:
        state = self.model.folios.get(ev.folio)
        if ev.memcg and state is not None and state.memcg and state.memcg != ev.memcg \
                and attribution_owner(state) == self.id:
            self.report(
                ev, ev.folio, ev.memcg,
                f"uncharged from memcg {ev.memcg}, but the model holds it charged to memcg "
                f"{state.memcg} since seq {state.seq} ({state.via}): the migration changed the memcg",
                since_ts_ns=state.ts_ns, related=[state.seq],
            )
