"""R14: hierarchy — a parent memcg's page counter is at least the sum of its children's.

Scope: ``usage`` samples (memory.current / memory.usage_in_bytes, both hierarchical: a child's
charge is charged to every ancestor by ``page_counter_try_charge()``, mm/page_counter.c) of the
memcgs the recorder lists in ``scope.memcgs`` with their parent. Samples the recorder takes
together (consecutive rows) form one set; in each set every parent sampled with its children
must hold at least their sum.

Limits: the files are read one after the other, so a child that charges between the two reads can
run ahead of its parent by what one charge batch moves (``MEMCG_CHARGE_BATCH`` = 64 pages per CPU,
include/linux/memcontrol.h); that much is tolerated per child. The page counters themselves are
not probed (``page_counter_charge()`` has no tracepoint; kprobes are refused under lockdown), so
the rule sees the hierarchy only at sample times. Traces without ``scope.memcgs`` (schema 1) get
no R14 check.
"""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event

__all__ = ["HierarchyCovered"]

#: include/linux/memcontrol.h
_CHARGE_BATCH = 64
#: The usage files (the kmem-only file of v1 is not the page counter of the whole memcg).
_USAGE_FILES = frozenset({"memory.current", "memory.usage_in_bytes"})


class HierarchyCovered(Rule):
    id = "R14"
    title = "hierarchy: a parent's usage covers the sum of its children's"
    source = "mm/page_counter.c page_counter_try_charge() (charges every ancestor)"
    handles = ("usage",)
    needs = ("charge",)

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        # The hierarchy as the recorder listed it (scope.memcgs), read once by replay/scope.py.
        self.parent = dict(ctx.scope.parents)
        self._set: dict[int, tuple[int, int, int]] = {}  # memcg -> (seq, ts, bytes)
        self._last_seq = -2

    def applies(self) -> bool:
        return any(p in self.parent for p in self.parent.values())

    def on_usage(self, ev: Event) -> None:
        if ev.item not in _USAGE_FILES:
            return
        if ev.seq != self._last_seq + 1 and self._set:
            self._judge()
        self._last_seq = ev.seq
        self._set[ev.memcg] = (ev.seq, ev.ts_ns, ev.value)

    def finish(self) -> None:
        if self._set:
            self._judge()

    def _judge(self) -> None:
        children: dict[int, list[int]] = {}
        for m in self._set:
            p = self.parent.get(m)
            if p and p in self._set:
                children.setdefault(p, []).append(m)
        page = self.ctx.meta.page_size or 4096
        per_child = _CHARGE_BATCH * max(self.ctx.meta.ncpus, 1) * page
        for p, kids in sorted(children.items()):
            self.check()
            seq, ts, have = self._set[p]
            total = sum(self._set[k][2] for k in kids)
            if have + per_child * len(kids) < total:
                self.report((seq, ts), 0, p,
                            f"parent memcg {p} uses {have} bytes but its children {sorted(kids)} use {total} "
                            f"(more than the {per_child} bytes per child one charge batch explains)",
                            related=[self._set[k][0] for k in kids])
        self._set = {}
