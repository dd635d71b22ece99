"""Time series of the reference model's per-memcg figures, for charts and counters.

The replay report gives the ledger at the end of the trace; the report and the
Perfetto export also want it *over time*. This module steps the replay's own
model (``chargetrace.replay.model.Model``, the same object the rules read)
over the trace and samples, after each event, the ledger of every memcg the
event touched: ``live`` (pages charged in the trace and still held, from
charge/uncharge/transfer events) and ``pgpg_net`` (PGPGIN − PGPGOUT from the
memcg tracepoints). Nothing is recomputed here: the figures are the model's.
Kernel usage samples (``usage`` rows) are listed beside them in pages.

Limits: the model is stepped without the rules (rules never change model
state), so this costs one more pass over the trace; series are thinned to at
most ``max_points`` per memcg, always keeping the first and last point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chargetrace.replay import select_era
from chargetrace.replay.engine import device_folios, iter_events
from chargetrace.replay.model import Model
from chargetrace.traces import Trace

__all__ = ["MemcgSeries", "model_series", "USAGE_ITEMS"]

#: ``usage`` rows whose value is the memcg's charged memory (v1, v2 file names).
USAGE_ITEMS = frozenset({"memory.usage_in_bytes", "memory.current"})


@dataclass
class MemcgSeries:
    """One memcg's figures over time (``ts_ns`` is the trace clock)."""

    memcg: int
    ts_ns: list[int] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    pgpg_net: list[int] = field(default_factory=list)
    #: Kernel samples: (ts_ns, pages, file).
    usage: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def has_live(self) -> bool:
        return any(self.live)

    @property
    def has_pgpg(self) -> bool:
        return any(self.pgpg_net)


def _thin(s: MemcgSeries, max_points: int) -> None:
    n = len(s.ts_ns)
    if n <= max_points:
        return
    step = (n + max_points - 1) // max_points
    keep = list(range(0, n, step))
    if keep[-1] != n - 1:
        keep.append(n - 1)
    s.ts_ns = [s.ts_ns[i] for i in keep]
    s.live = [s.live[i] for i in keep]
    s.pgpg_net = [s.pgpg_net[i] for i in keep]


def model_series(trace: Trace, *, max_points: int = 5000) -> dict[int, MemcgSeries]:
    """Per memcg (non-zero id), the model's figures after every event that touched it."""
    model = Model(select_era(trace.meta, None), device_folios(trace.table))
    page = trace.meta.page_size or 4096
    out: dict[int, MemcgSeries] = {}
    folios = model.folios
    for ev in iter_events(trace.table):
        touched = {ev.memcg, ev.memcg_new}
        # An event may move the charge of the memcg the model holds for the
        # folio, which the row itself need not name (e.g. a second uncharge).
        for f in (ev.folio, ev.folio_new):
            if f:
                state = folios.get(f)
                if state is not None:
                    touched.add(state.memcg)
        model.apply(ev)
        if ev.kind == "usage" and ev.memcg and ev.item in USAGE_ITEMS:
            out.setdefault(ev.memcg, MemcgSeries(ev.memcg)).usage.append((ev.ts_ns, ev.value // page, ev.item))
        for memcg in touched:
            if not memcg:
                continue
            led = model.memcgs.get(memcg)
            if led is None:
                continue
            s = out.setdefault(memcg, MemcgSeries(memcg))
            live = led.live
            net = led.counters.get("PGPGIN", 0) - led.counters.get("PGPGOUT", 0)
            if s.ts_ns and s.live[-1] == live and s.pgpg_net[-1] == net:
                continue
            s.ts_ns.append(ev.ts_ns)
            s.live.append(live)
            s.pgpg_net.append(net)
    for s in out.values():
        _thin(s, max_points)
    return dict(sorted(out.items()))
