"""Counter-level rules for kernels that offer only memcg tracepoints.

From 6.13 the memcg:* tracepoints report statistics per memcg (kernel-facts
§3): PGPGIN/PGPGOUT are counted per charged/uncharged folio by the v1 paths
(memcg1_commit_charge / memcg1_uncharge_batch, mm/memcontrol-v1.c) and
NR_ANON_MAPPED moves with anon rmap add/remove. For a memcg observed from its
creation the sums must never go negative, and once its tasks have exited and it
was drained they must net to zero.
"""

from __future__ import annotations

from collections import Counter

from ..automaton import Rule
from ..events import Event

__all__ = ["PgpgBalance", "AnonMappedNetsZero"]


class _NetCounter(Rule):
    """Shared shape: a signed running sum per memcg over some counter items."""

    handles = ("memcg_stat",)
    needs = ("memcg_stat",)
    signs: dict[str, int] = {}
    what = ""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.running: Counter = Counter()
        self.underflowed: set[int] = set()

    def on_memcg_stat(self, ev: Event) -> None:
        sign = self.signs.get(ev.item)
        if sign is None or not self.ctx.observed_from_creation(ev.memcg):
            return
        self.checked += 1
        total = self.running[ev.memcg] = self.running[ev.memcg] + sign * ev.value
        # An aggregated row (span_ns > 0, `record --aggregate-counters`) sums a
        # window read key by key while the kernel runs: its running sum is only
        # exact at the end, so only the end balance (finish) is judged.
        if total < 0 and not ev.span_ns and ev.memcg not in self.underflowed:
            self.underflowed.add(ev.memcg)
            self.report(
                ev, 0, ev.memcg,
                f"{self.what} of memcg {ev.memcg} went negative ({total}) although the memcg was "
                f"observed from its creation",
                since_ts_ns=self.model.first_ts,
            )

    def finish(self) -> None:
        for memcg, total in self.running.items():
            if total != 0 and self.ctx.closed(memcg):
                self.report(
                    self.end_point(), 0, memcg,
                    f"{self.what} of memcg {memcg} is {total:+d} pages after its tasks exited and it "
                    f"was drained ({'pages left charged' if total > 0 else 'more uncharged than charged'})",
                    since_ts_ns=self.model.first_ts,
                )


class PgpgBalance(_NetCounter):
    id = "R3.pgpg"
    title = "counters: sum of PGPGIN pages = sum of PGPGOUT pages once the memcg's tasks exited"
    source = "mm/memcontrol-v1.c memcg1_commit_charge(), memcg1_uncharge_batch()"
    signs = {"PGPGIN": 1, "PGPGOUT": -1}
    what = "PGPGIN - PGPGOUT"


class AnonMappedNetsZero(_NetCounter):
    id = "R13.anon"
    title = "counters: NR_ANON_MAPPED nets to 0 once the memcg's tasks exited"
    source = "mm/rmap.c folio_add_new_anon_rmap(), folio_remove_rmap_*()"
    signs = {"NR_ANON_MAPPED": 1}
    what = "NR_ANON_MAPPED"
