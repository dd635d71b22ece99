"""R3.usage: the kernel's own usage number beside what the model says the memcg holds.

memory.current (v2) / memory.usage_in_bytes (v1) is the memcg's page_counter,
hierarchical: every folio charge of the memcg and its descendants, kernel
memory, socket memory (v2), plus per-CPU charge stock. The model's figure is
built from what the trace has (units: replay/units.py):

* folio charges: the model's live pages when the recording attached the
  charge kind, summed over the memcg's subtree (scope.memcgs);
* otherwise anon + page cache + shmem from memory.stat samples (``memstat``
  rows of the same sample set) or from the page-unit counters;
* kernel and socket memory from the same memory.stat sample or counters.

Only the last usage sample of each memcg is judged (the recorder's last phase,
normally "settled"). Absolute comparison where the figure is absolute (a
memory.stat sample, or a memcg observed from its creation); otherwise the
change between the first and the last sample. Tolerance: MEMCG_CHARGE_BATCH
pages per CPU for each memcg of the subtree that a CPU's stock can cache
(NR_MEMCG_STOCK = 7 in 6.18, mm/memcontrol.c), plus the same again when
memory.stat figures are compared, which may lag by MEMCG_CHARGE_BATCH x CPUs
updates (memcg_rstat_updated()).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..automaton import Rule
from ..events import Event
from ..units import MEMCG_CHARGE_BATCH, Held, held_from_counters, held_from_memstat

__all__ = ["UsageReconciliation", "Reconciled", "MEMCG_CHARGE_BATCH"]

_USAGE_ITEMS = frozenset({"memory.current", "memory.usage_in_bytes"})
_KERNEL_ITEMS = frozenset({"memory.kmem.usage_in_bytes", "memory.stat:kernel"})
_NR_MEMCG_STOCK = 7


@dataclass
class _Point:
    seq: int
    ts_ns: int
    item: str
    kernel_pages: int
    after: int  # Model.last_activity_seq at the sample: its sample set
    live: int  # model live pages over the subtree
    charge_rows: bool  # the subtree saw charge activity in the trace
    counters: Held  # page counters over the subtree at the sample


@dataclass
class Reconciled:
    memcg: int
    samples: int = 0
    kernel_pages: int = 0  # last sample
    model_pages: int = 0  # the model at that sample (absolute or change, see `mode`)
    difference: int = 0  # kernel - model, pages
    tolerance: int = 0
    mode: str = ""  # "absolute" or "change" (first to last sample); "" = not judged
    ok: bool = True
    kernel_memory_pages: int = 0
    held: Held | None = None  # what the memcg subtree holds at the last sample, by kind
    basis: str = ""  # where the model figure came from
    phase: str = ""  # the recorder's sample phase of the judged sample (scope.phases), "" = not named
    points: list[_Point] = field(default_factory=list)


class UsageReconciliation(Rule):
    id = "R3.usage"
    title = "the kernel's memory usage agrees with what the model holds, within the charge-stock tolerance"
    source = "mm/memcontrol.c try_charge_memcg() (MEMCG_CHARGE_BATCH stock), memory_stat_format()"
    handles = ("usage",)
    unit = "samples"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.results: dict[int, Reconciled] = {}

    def _subtree(self, memcg: int) -> list[int]:
        return self.ctx.scope.subtree(memcg) if memcg in self.ctx.scope.memcgs else [memcg]

    def on_usage(self, ev: Event) -> None:
        page = self.ctx.meta.page_size or 4096
        res = self.results.setdefault(ev.memcg, Reconciled(ev.memcg))
        if ev.item in _KERNEL_ITEMS:
            res.kernel_memory_pages = ev.value // page
            return
        if ev.item not in _USAGE_ITEMS:
            return
        model = self.model
        ledgers = [model.memcgs[m] for m in self._subtree(ev.memcg) if m in model.memcgs]
        counters = Held(source="counters")
        for led in ledgers:
            counters = counters + held_from_counters(led.counters)
        charge_rows = self.ctx.attached("charge") and any(
            led.charged or led.uncharged or led.force_charged or led.pre_trace_uncharged or led.transferred_in
            for led in ledgers)
        res.samples += 1
        res.points.append(_Point(ev.seq, ev.ts_ns, ev.item, ev.value // page, model.last_activity_seq,
                                 sum(led.live for led in ledgers), charge_rows, counters))

    def _memstat_held(self, memcg: int, point: _Point) -> Held | None:
        """The memory.stat sample taken with this usage sample (same sample set)."""
        led = self.model.memcgs.get(memcg)
        if led is None or led.memstat_after != point.after:
            return None
        v1 = bool(self.model.cgroup_v1)
        held = held_from_memstat(led.memstat, self.model.page_size, v1)
        if held is None or not v1 or "total_rss" in led.memstat:
            return held  # v2 keys and v1 total_* are hierarchical already
        for child in self._subtree(memcg)[1:]:  # v1 local keys: add the descendants'
            cled = self.model.memcgs.get(child)
            if cled is not None and cled.memstat_after == point.after:
                more = held_from_memstat(cled.memstat, self.model.page_size, v1, hierarchical=False)
                if more is not None:
                    held = held + more
        return held

    def finish(self) -> None:
        ncpus = max(1, self.ctx.meta.ncpus)
        v1 = bool(self.model.cgroup_v1)
        for memcg, res in self.results.items():
            if not res.points:
                continue
            last = res.points[-1]
            subtree = self._subtree(memcg)
            stock = MEMCG_CHARGE_BATCH * ncpus * min(len(subtree), _NR_MEMCG_STOCK)
            stat = self._memstat_held(memcg, last)
            from_creation = all(self.ctx.observed_from_creation(m) for m in subtree)
            res.kernel_pages = last.kernel_pages
            named = [(seq, name) for name, seq in self.ctx.scope.phases.items() if seq <= last.seq]
            res.phase = max(named)[1] if named else ""
            if stat is None and not last.charge_rows and not self.ctx.attached("memcg_stat"):
                continue  # no charges, no stats, no counters: nothing to put beside the kernel's figure
            if stat is not None or from_creation:
                held = stat if stat is not None else last.counters
                res.held = held
                if last.charge_rows:
                    # folio charges from the model; non-folio charges from the stats
                    nonfolio = held.kmem + (0 if v1 else held.sock)
                    if stat is None and not self.ctx.attached("memcg_stat"):
                        nonfolio = 0
                    model_pages, res.basis = last.live + nonfolio, "model charges + kernel/socket memory"
                else:
                    model_pages, res.basis = held.total(v1), f"{held.source}: {held.describe()}"
                if not from_creation and stat is not None and last.charge_rows:
                    # charges made before the trace are not in the model: only the stats can speak
                    model_pages, res.basis = held.total(v1), f"{held.source}: {held.describe()}"
                res.mode, res.model_pages = "absolute", model_pages
                res.difference = last.kernel_pages - model_pages
                if stat is None and last.charge_rows:
                    res.tolerance = stock + res.kernel_memory_pages
                    res.ok = 0 <= res.difference <= res.tolerance  # charges are exact: never below
                else:
                    res.tolerance = 2 * stock if stat is not None else stock
                    res.ok = abs(res.difference) <= res.tolerance
            elif len(res.points) >= 2:
                first = res.points[0]
                if last.charge_rows:
                    change = last.live - first.live
                    res.basis = "model charges (change)"
                else:
                    change = last.counters.total(v1) - first.counters.total(v1)
                    res.basis = "page counters (change)"
                res.mode, res.model_pages = "change", change
                res.difference = (last.kernel_pages - first.kernel_pages) - change
                res.tolerance = 2 * (stock + res.kernel_memory_pages)
                res.ok = abs(res.difference) <= res.tolerance
            else:
                continue
            self.check(abs(res.model_pages), substantive=bool(res.kernel_pages or res.model_pages))
            if not res.ok:
                bound = f"0..{res.tolerance}" if res.mode == "absolute" and res.difference < 0 and \
                    stat is None and last.charge_rows else f"±{res.tolerance}"
                self.report(
                    (last.seq, last.ts_ns), 0, memcg,
                    f"memcg {memcg}: kernel {last.item} = {res.kernel_pages} pages"
                    f"{f' ({res.phase} sample)' if res.phase else ''}, model {res.mode} = "
                    f"{res.model_pages} pages ({res.basis}), difference {res.difference:+d} outside the "
                    f"tolerance {bound} pages",
                    since_ts_ns=self.model.first_ts,
                )
