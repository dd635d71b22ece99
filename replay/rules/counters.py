"""Counter-level rules for kernels that offer only memcg tracepoints.

From 6.13 the memcg:* tracepoints report statistics per memcg. Units come
from replay/units.py: PGPGIN/PGPGOUT are **events**, one per charged /
uncharged folio (cgroup v1 only: memcg1_charge_statistics(),
memcg1_uncharge_batch(), mm/memcontrol-v1.c); NR_ANON_MAPPED is exact
**pages**, moved by folio_nr_pages() on anon rmap add/remove. Only memcgs
observed from their creation are judged (their sums start at zero).

A large folio split between its charge and its uncharge is uncharged piece by
piece, so PGPGOUT legitimately exceeds PGPGIN by the extra pieces. Where the
recording attached the ``split`` kind, the model counts those pieces and the
balance is exact; where it did not, only a PGPGIN surplus (folios charged and
never uncharged) is a finding, and a PGPGOUT surplus is reported as
unverifiable splits. A PGPGIN surplus no larger than the page cache and shmem
the drained memcg still holds is legitimately held, not a leak.
"""

from __future__ import annotations

from collections import Counter

from ..automaton import Rule
from ..events import Event

__all__ = ["PgpgBalance", "AnonMappedNetsZero"]


class PgpgBalance(Rule):
    id = "R3.pgpg"
    title = "counters: PGPGIN events (+ pieces of split folios) = PGPGOUT events once the memcg is drained"
    source = "mm/memcontrol-v1.c memcg1_charge_statistics(), memcg1_uncharge_batch()"
    handles = ("memcg_stat",)
    needs = ("memcg_stat",)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.pgpgin: Counter = Counter()
        self.pgpgout: Counter = Counter()
        self.underflowed: set[int] = set()
        #: memcg -> PGPGOUT events beyond PGPGIN that no split row explains (no split probe)
        self.unexplained_out: dict[int, int] = {}
        #: memcg -> folio charges still open at the end, within its page cache/shmem
        self.held_open: dict[int, int] = {}

    def on_memcg_stat(self, ev: Event) -> None:
        if ev.item not in ("PGPGIN", "PGPGOUT") or not self.ctx.observed_from_creation(ev.memcg):
            return
        self.check(substantive=ev.value != 0)
        (self.pgpgin if ev.item == "PGPGIN" else self.pgpgout)[ev.memcg] += ev.value
        if not self.ctx.attached("split") or ev.memcg in self.underflowed:
            return  # without split rows an excess of PGPGOUT may be split pieces
        # The split row precedes the pieces' uncharges, so the model's count is current.
        balance = self._balance(ev.memcg)
        if balance < 0:
            self.underflowed.add(ev.memcg)
            self.report(
                ev, 0, ev.memcg,
                f"memcg {ev.memcg} (observed from its creation) has {-balance} more folio uncharge(s) "
                f"(PGPGOUT) than charges (PGPGIN) plus pieces of split folios",
                since_ts_ns=self.model.first_ts,
            )

    def _balance(self, memcg: int) -> int:
        led = self.model.memcgs.get(memcg)
        extra = led.split_extra_folios if led is not None else 0
        return self.pgpgin[memcg] + extra - self.pgpgout[memcg]

    def finish(self) -> None:
        for memcg in sorted(set(self.pgpgin) | set(self.pgpgout)):
            balance = self._balance(memcg)
            if balance < 0 and not self.ctx.attached("split"):
                self.unexplained_out[memcg] = -balance
            if not self.ctx.closed(memcg) or balance == 0 or memcg in self.underflowed:
                continue
            if balance < 0 and not self.ctx.attached("split"):
                continue
            # Page cache of kept files and shmem/tmpfs stay charged after the drain
            # (force_empty cannot reclaim shmem without swap): each such folio is at
            # least one page, so up to that many folio charges may stay open. Kernel
            # memory never counts PGPGIN (uncharge_folio(): kmem folios skip pgpgout).
            held = self.model.held(memcg, True)
            folio_pages = held.file + held.shmem if held is not None else 0
            if 0 < balance <= folio_pages:
                self.held_open[memcg] = balance
                continue
            led = self.model.memcgs.get(memcg)
            extra = led.split_extra_folios if led is not None else 0
            also = f"; it holds only {folio_pages} page(s) of page cache/shmem" if balance > 0 else ""
            self.report(
                self.end_point(), 0, memcg,
                f"memcg {memcg}: {self.pgpgin[memcg]} folio charge(s) (PGPGIN) + {extra} split piece(s) vs "
                f"{self.pgpgout[memcg]} folio uncharge(s) (PGPGOUT) after its tasks exited and it was "
                f"drained: {abs(balance)} folio(s) "
                f"{'left charged' if balance > 0 else 'more uncharged than charged'}{also}",
                since_ts_ns=self.model.first_ts,
            )


class AnonMappedNetsZero(Rule):
    id = "R13.anon"
    title = "counters: NR_ANON_MAPPED pages net to 0 once the memcg's tasks exited"
    source = "mm/rmap.c __folio_add_anon_rmap(), __folio_remove_rmap()"
    handles = ("memcg_stat",)
    needs = ("memcg_stat",)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.running: Counter = Counter()
        self.underflowed: set[int] = set()

    def on_memcg_stat(self, ev: Event) -> None:
        if ev.item != "NR_ANON_MAPPED" or not self.ctx.observed_from_creation(ev.memcg):
            return
        self.check(abs(ev.value), substantive=ev.value != 0)
        total = self.running[ev.memcg] = self.running[ev.memcg] + ev.value
        if total < 0 and ev.memcg not in self.underflowed:
            self.underflowed.add(ev.memcg)
            self.report(
                ev, 0, ev.memcg,
                f"NR_ANON_MAPPED of memcg {ev.memcg} went negative ({total} pages) although the memcg was "
                f"observed from its creation",
                since_ts_ns=self.model.first_ts,
            )

    def finish(self) -> None:
        for memcg, total in self.running.items():
            # Anon mappings end with the last task's exit_mmap(): draining is not needed.
            if total != 0 and self.ctx.observed_from_creation(memcg) and self.ctx.scope.exited \
                    and memcg not in self.underflowed:
                self.report(
                    self.end_point(), 0, memcg,
                    f"NR_ANON_MAPPED of memcg {memcg} is {total:+d} pages after every task of the scope exited "
                    f"({'pages left mapped' if total > 0 else 'more unmapped than mapped'})",
                    since_ts_ns=self.model.first_ts,
                )
