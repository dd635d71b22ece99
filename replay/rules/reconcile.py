"""R3.usage: the kernel's own usage number beside the model's.

memory.current (v2) / memory.usage_in_bytes (v1) is the memcg's page_counter:
folio charges plus the per-CPU charge stock (up to MEMCG_CHARGE_BATCH = 64
pages per CPU, try_charge_memcg() in mm/memcontrol.c) plus non-folio charges
(kernel memory, sockets). So for a memcg observed from its creation
0 <= kernel - model <= 64 x CPUs + kernel memory; for any other memcg the
change between two samples must agree within twice that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..automaton import Rule
from ..events import Event

__all__ = ["UsageReconciliation", "Reconciled", "MEMCG_CHARGE_BATCH"]

MEMCG_CHARGE_BATCH = 64
_USAGE_ITEMS = frozenset({"memory.current", "memory.usage_in_bytes"})
_KERNEL_ITEMS = frozenset({"memory.kmem.usage_in_bytes", "memory.stat:kernel"})


@dataclass
class Reconciled:
    memcg: int
    samples: int = 0
    kernel_pages: int = 0  # last sample
    model_pages: int = 0  # the model at that sample (absolute or change, see `mode`)
    difference: int = 0  # kernel - model, pages
    tolerance: int = 0
    mode: str = ""  # "absolute" (observed from creation) or "change" (first to last sample)
    ok: bool = True
    kernel_memory_pages: int = 0
    points: list[tuple[int, int, int]] = field(default_factory=list)  # (seq, kernel, model net)


class UsageReconciliation(Rule):
    id = "R3.usage"
    title = "the kernel's memory usage agrees with the model within the charge-stock tolerance"
    source = "mm/memcontrol.c try_charge_memcg() (MEMCG_CHARGE_BATCH stock)"
    handles = ("usage",)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.results: dict[int, Reconciled] = {}

    def _model_pages(self, memcg: int) -> tuple[int, int]:
        """(live pages charged in the trace, net pages charged minus uncharged)."""
        led = self.model.ledger(memcg)
        if self.ctx.attached("charge") and (led.charged or led.uncharged or led.force_charged
                                            or led.pre_trace_uncharged or led.transferred_in):
            net = led.charged + led.force_charged - led.uncharged - led.pre_trace_uncharged
            return led.live, net
        net = led.counters.get("PGPGIN", 0) - led.counters.get("PGPGOUT", 0)
        return net, net

    def on_usage(self, ev: Event) -> None:
        page = self.ctx.meta.page_size or 4096
        res = self.results.setdefault(ev.memcg, Reconciled(ev.memcg))
        if ev.item in _KERNEL_ITEMS:
            res.kernel_memory_pages = ev.value // page
            return
        if ev.item not in _USAGE_ITEMS:
            return
        live, net = self._model_pages(ev.memcg)
        res.samples += 1
        res.points.append((ev.seq, ev.value // page, net))
        res.kernel_pages = ev.value // page
        res.tolerance = MEMCG_CHARGE_BATCH * max(1, self.ctx.meta.ncpus) + res.kernel_memory_pages
        if self.ctx.observed_from_creation(ev.memcg):
            self.checked += 1
            res.mode, res.model_pages = "absolute", live
            res.difference = res.kernel_pages - live
            res.ok = 0 <= res.difference <= res.tolerance
        elif res.samples >= 2:
            self.checked += 1
            first_seq, first_kernel, first_net = res.points[0]
            res.mode, res.model_pages = "change", net - first_net
            res.difference = (res.kernel_pages - first_kernel) - res.model_pages
            res.tolerance *= 2
            res.ok = abs(res.difference) <= res.tolerance
        else:
            return
        if not res.ok:
            self.report(
                ev, 0, ev.memcg,
                f"memcg {ev.memcg}: kernel {ev.item} = {res.kernel_pages} pages, model {res.mode} = "
                f"{res.model_pages} pages, difference {res.difference:+d} outside the tolerance "
                f"{'0..' if res.mode == 'absolute' else '±'}{res.tolerance} pages",
                since_ts_ns=self.model.first_ts,
            )
