"""The in-kernel ledger (schema 2 metadata ``ledger``) against the stream.

The recorder's probes add every row they produce to per-(memcg, kind, item)
sums in a BPF map before the row goes to the transport (tracer/ledger.py), so
the ledger counts the rows the transport dropped too. Two uses:

* **No events lost**: the stream's own sums must equal the ledger, key by key.
  A difference means rows vanished without a drop being recorded (a truncated
  or edited trace, or a transport bug): reported as a violation of ``L1``.
* **Events lost**: folio-level rules stay inconclusive, but counter balance
  does not need the rows: the counter rules (R3.pgpg, R13.anon,
  rules/counters.py — their logic, not a copy) are run again on the ledger's
  sums, one aggregated event per memcg and item, for every memcg observed
  from its creation. What they find there no lost event can explain (exact
  violations); where they find nothing, the notes say which verdicts are
  exact and which are not.

Limit: a probe run the kernel skipped (``drops.missed``, its recursion guard)
is in neither the stream nor the ledger; the notes name the counters whose
probe was skipped, as exact only if none of those (system-wide) runs was in
scope.
"""

from __future__ import annotations

from collections import defaultdict

from ..automaton import Rule, RuleContext
from ..events import Event
from .counters import AnonMappedNetsZero, PgpgBalance

__all__ = ["LedgerAgreement"]

#: Counter rules judged on the ledger when the stream lost events, with the
#: memcg tracepoint each one's items come from (vm_event_item via
#: count_memcg_events, node_stat_item via mod_memcg_lruvec_state).
_COUNTER_RULES = ((PgpgBalance, "count_memcg_events"), (AnonMappedNetsZero, "mod_memcg_lruvec_state"))
#: Rows the recorder makes itself (samples, drop windows), not the probes.
_NOT_COUNTED = ("usage", "memstat", "lost")


def _key(kind: str, memcg: int, item: str) -> tuple[int, str, str]:
    return (memcg, kind, item if kind == "memcg_stat" else "")


class LedgerAgreement(Rule):
    id = "L1"
    title = "ledger: the stream agrees with the probes' in-kernel sums; counters judged on them when events were lost"
    source = "mm/memcontrol-v1.c memcg1_commit_charge(), memcg1_uncharge_batch(); mm/rmap.c (via R3.pgpg, R13.anon)"

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        ledger = ctx.meta.ledger or []
        self.ledger = {_key(e["kind"], int(e["memcg"]), e["item"]): (int(e["events"]), int(e["pages"]))
                       for e in ledger}
        # One handler per kind the ledger holds (an instance attribute: the
        # automaton dispatches on it).
        self.handles = tuple(sorted({k for _, k, _ in self.ledger} - set(_NOT_COUNTED)))
        for kind in self.handles:
            setattr(self, f"on_{kind}", self._count)
        self.stream: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.notes: list[str] = []

    def applies(self) -> bool:
        return self.ctx.meta.ledger is not None

    def _count(self, ev: Event) -> None:
        acc = self.stream[_key(ev.kind, ev.memcg, ev.item)]
        if ev.kind == "memcg_stat":
            # An aggregated row (span_ns > 0) carries its hit count in ret.
            acc[0] += ev.ret if ev.span_ns else 1
            acc[1] += ev.value
        else:
            acc[0] += 1
            acc[1] += ev.nr_pages

    def _lost(self) -> int:
        return int(self.ctx.meta.drops.get("total", 0) or 0)

    def finish(self) -> None:
        if self._lost():
            self._judge_counters()
        else:
            self._agree()

    def _agree(self) -> None:
        keys = set(self.ledger) | set(self.stream)
        for key in sorted(keys):
            self.checked += 1
            want = self.ledger.get(key, (0, 0))
            got = tuple(self.stream.get(key, (0, 0)))
            if got != want:
                memcg, kind, item = key
                what = f"{kind} {item}".strip()
                self.report(
                    self.end_point(), 0, memcg,
                    f"{what} rows of memcg {memcg}: the stream has {got[0]} events / {got[1]} pages, the "
                    f"in-kernel ledger {want[0]} / {want[1]}, and no drop was recorded",
                    since_ts_ns=max(0, self.model.first_ts),
                )

    def _judge_counters(self) -> None:
        """Run the counter rules on the ledger's sums (one aggregated event per
        memcg and item), on a private context: their logic stays theirs, their
        findings come back exact (no stream row behind them)."""
        memcgs = sorted({m for m, k, _ in self.ledger if k == "memcg_stat" and self.ctx.observed_from_creation(m)})
        seq, ts = self.end_point()
        lost = self._lost()
        if not memcgs:
            self.notes.append(f"{lost} event(s) were lost; the ledger has no memcg observed from its creation, so "
                              f"no counter verdict can be made exact")
            return
        # Increments before decrements at equal size: PGPGIN before PGPGOUT.
        totals = sorted(((m, item, ev, pages) for (m, k, item), (ev, pages) in self.ledger.items()
                         if k == "memcg_stat" and m in memcgs), key=lambda r: (r[0], -r[3], r[1]))
        missed = self.ctx.meta.drops.get("missed") or {}
        private = RuleContext(self.model, self.ctx.meta, self.ctx.era)
        exact, caveats = [], []
        for rule_type, probe in _COUNTER_RULES:
            rule = rule_type(private)
            if not rule.applies():
                continue
            before = len(private.findings)
            for memcg, item, events, pages in totals:
                rule.on_memcg_stat(_ledger_event(seq, ts, memcg, item, events, pages))
            rule.finish()
            self.checked += len(memcgs)
            judged = {f.memcg for f in private.findings[before:]}
            skipped = sum(n for p, n in missed.items() if p.endswith(probe))
            for memcg in memcgs:
                if memcg in judged:
                    continue
                if skipped:
                    caveats.append(f"{rule.id} (memcg {memcg}; the kernel skipped {skipped} run(s) of its "
                                   f"probe system-wide)")
                else:
                    exact.append(f"{rule.id} (memcg {memcg})")
        for finding in private.findings:
            # Depends on no row of the stream: an empty [since, ts] window, so
            # no lost window can make it inconclusive.
            finding.since_ts_ns = ts + 1
            finding.message = f"in-kernel ledger (exact although the stream lost events): {finding.message}"
            self.ctx.findings.append(finding)
        if exact:
            self.notes.append(f"{lost} event(s) were lost, but the in-kernel ledger balances: "
                              f"{', '.join(exact)} hold exactly; folio-level rules stay inconclusive")
        if caveats:
            self.notes.append("ledger balances for " + ", ".join(caveats)
                              + ": exact unless a skipped run was in scope")


def _ledger_event(seq: int, ts: int, memcg: int, item: str, events: int, pages: int) -> Event:
    """One aggregated memcg_stat event carrying a ledger total (span_ns > 0,
    ret = the number of tracepoint hits, as the recorder's aggregated rows)."""
    fields: dict[str, object] = {f: "" if f in ("comm", "kind", "probe", "item") else 0 for f in Event._fields}
    fields.update(seq=seq, ts_ns=ts, kind="memcg_stat", probe="ledger", memcg=memcg, item=item, value=pages,
                  ret=events, span_ns=max(1, ts))
    return Event(**fields)  # type: ignore[arg-type]
