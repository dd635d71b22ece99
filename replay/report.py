"""The replay report: verdict, findings, coverage, per-memcg and per-rule tables.

Building the report is separate from printing it: the CLI renders a
:class:`Report` as text or JSON (``Report.to_json``, versioned by
``JSON_VERSION``).

Verdicts, in order of precedence:

* ``violations`` (exit 1): at least one finding no lost event can explain;
* ``inconclusive`` (exit 3): findings overlap lost events, events were lost,
  or the recording could not see all of the scope (tasks that moved out of
  it unfollowed, faults charged to memcgs it did not record);
* ``unchecked`` (exit 4): no rule checked anything *of substance*, i.e. no
  charge, uncharge, transfer, replace, device-free or split event was examined
  by an applicable rule, no counter rule saw a non-zero PGPGIN / PGPGOUT /
  NR_ANON_MAPPED delta in a memcg observed from its creation, and no usage
  reconciliation had a page behind it;
* ``balanced`` (exit 0): otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chargetrace.traces import Trace

from .drivers import DriverRow, driver_rows
from .findings import CANDIDATE, Finding

if TYPE_CHECKING:
    import pyarrow as pa

    from .automaton import Automaton
    from .units import Held
    from .engine import LostWindow

__all__ = [
    "Report", "MemcgRow", "RuleRow", "HeldRow", "build_report",
    "BALANCED", "VIOLATIONS", "INCONCLUSIVE", "UNCHECKED", "EXIT_CODES", "JSON_VERSION", "SUBSTANCE",
]

BALANCED = "balanced"
VIOLATIONS = "violations"
INCONCLUSIVE = "inconclusive"
UNCHECKED = "unchecked"
EXIT_CODES = {BALANCED: 0, VIOLATIONS: 1, INCONCLUSIVE: 3, UNCHECKED: 4}
#: 2: "unchecked" verdict, "coverage", "held", "scope"; pgpgin/pgpgout in events.
JSON_VERSION = 2
#: What "of substance" means (also in README and the JSON coverage).
SUBSTANCE = ("a charge, uncharge, transfer, replace, device-free or split event examined by an applicable "
             "rule; a non-zero PGPGIN/PGPGOUT/NR_ANON_MAPPED delta in a memcg observed from its creation; "
             "or a usage reconciliation with at least one page behind it")


@dataclass
class MemcgRow:
    memcg: int
    charged: int
    force_charged: int
    uncharged: int
    pre_trace_uncharged: int
    transferred_in: int
    transferred_out: int
    live: int
    pgpgin: int  # events (folios charged), cgroup v1
    pgpgout: int  # events (folios uncharged), cgroup v1
    split_extra: int  # folios more than charged that splits in the trace produced
    anon_mapped: int  # pages
    kernel_pages: int | None
    model_pages: int | None
    difference: int | None
    tolerance: int | None
    reconcile: str  # ok / mismatch / "" (no usage samples)
    reconcile_basis: str = ""  # what the model figure is made of
    reconcile_phase: str = ""  # sample phase judged (start / exit / settled), "" = not named


@dataclass
class RuleRow:
    rule: str
    title: str
    source: str
    checked: int
    violations: int
    applies: bool
    substance: int = 0
    pages: int = 0
    unit: str = "events"


@dataclass
class HeldRow:
    """Charges still held at the end that the kernel keeps on purpose, or that
    the trace cannot attribute (pages)."""

    memcg: int
    outstanding_pages: int  # charged in the trace, never seen uncharged
    anon: int
    file: int
    shmem: int
    kmem: int
    sock: int
    source: str  # memory.stat / counters / ""
    verdict: str  # held / leak / open
    text: str


@dataclass
class Report:
    path: str
    verdict: str
    events: int
    era: str
    era_source: str
    violations: list[Finding]
    inconclusive: list[Finding]
    candidates: list[Finding]
    memcgs: list[MemcgRow]
    rules: list[RuleRow]
    kinds: dict[str, int]
    lost_events: int
    lost_windows: int
    synthetic: bool
    notes: list[str] = field(default_factory=list)
    held: list[HeldRow] = field(default_factory=list)
    #: The scope as replay understood it (ScopeView fields the verdict rests on).
    scope: dict[str, Any] = field(default_factory=dict)
    #: Device memory per driver (replay/drivers.py); JSON key "drivers" (added in json_version 2).
    drivers: list[DriverRow] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def of_substance(self) -> bool:
        return any(r.substance for r in self.rules if r.applies)

    def coverage(self) -> dict[str, Any]:
        return {
            "of_substance": self.of_substance,
            "definition": SUBSTANCE,
            "rules": {r.rule: {"applies": r.applies, "checked": r.checked, "substance": r.substance,
                               "pages": r.pages, "unit": r.unit} for r in self.rules},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "json_version": JSON_VERSION,
            "trace": self.path,
            "verdict": self.verdict,
            "events": self.events,
            "era": {"profile": self.era, "source": self.era_source},
            "violations": [f.to_dict() for f in self.violations],
            "inconclusive": [f.to_dict() for f in self.inconclusive],
            "candidates": [f.to_dict() for f in self.candidates],
            "memcgs": [vars(row).copy() for row in self.memcgs],
            "rules": [vars(row).copy() for row in self.rules],
            "kinds": dict(self.kinds),
            "lost": {"events": self.lost_events, "windows": self.lost_windows},
            "synthetic": self.synthetic,
            "notes": list(self.notes),
            "coverage": self.coverage(),
            "held": [vars(row).copy() for row in self.held],
            "scope": dict(self.scope),
            "drivers": [d.to_dict() for d in self.drivers],
        }


def kind_counts(table: "pa.Table") -> dict[str, int]:
    from chargetrace.traces.arrays import value_counts

    counts = value_counts(table.column("kind"))
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _memcg_rows(automaton: "Automaton") -> list[MemcgRow]:
    from .rules.reconcile import UsageReconciliation

    reconciled = {}
    for rule in automaton.active:
        if isinstance(rule, UsageReconciliation):
            reconciled = rule.results
    rows = []
    for memcg, led in sorted(automaton.ctx.model.memcgs.items()):
        if not memcg:
            continue
        rec = reconciled.get(memcg)
        has = rec is not None and rec.mode != ""
        rows.append(
            MemcgRow(
                memcg=memcg,
                charged=led.charged,
                force_charged=led.force_charged,
                uncharged=led.uncharged,
                pre_trace_uncharged=led.pre_trace_uncharged,
                transferred_in=led.transferred_in,
                transferred_out=led.transferred_out,
                live=led.live,
                pgpgin=led.counters.get("PGPGIN", 0),
                pgpgout=led.counters.get("PGPGOUT", 0),
                split_extra=led.split_extra_folios,
                anon_mapped=led.counters.get("NR_ANON_MAPPED", 0),
                kernel_pages=rec.kernel_pages if has else None,
                model_pages=rec.model_pages if has else None,
                difference=rec.difference if has else None,
                tolerance=rec.tolerance if has else None,
                reconcile=("ok" if rec.ok else "mismatch") if has else "",
                reconcile_basis=rec.basis if has else "",
                reconcile_phase=rec.phase if has else "",
            )
        )
    return rows


def build_report(trace: Trace, automaton: "Automaton", windows: list["LostWindow"],
                 kinds: dict[str, int] | None = None) -> Report:
    """``kinds``: the row count of each kind, when the caller counted them (a
    streaming replay has no table)."""
    ctx = automaton.ctx
    findings = sorted(ctx.findings, key=lambda f: (f.seq, f.rule))
    violations = [f for f in findings if f.kind != CANDIDATE and not f.inconclusive]
    inconclusive = [f for f in findings if f.kind != CANDIDATE and f.inconclusive]
    candidates = [f for f in findings if f.kind == CANDIDATE]
    by_rule: dict[str, int] = {}
    for f in violations:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    rules = [
        RuleRow(r.id, r.title, r.source, r.checked, by_rule.get(r.id, 0), r in automaton.active,
                r.substance, r.pages, r.unit)
        for r in automaton.rules
    ]
    # Skipped probe runs of counters only cannot hide a folio's charge: they make the counter
    # rules' findings inconclusive but leave the balance provable.
    lost = sum(w.count for w in windows if w.hides_folios)
    scope = ctx.scope
    notes: list[str] = []
    unseen = scope.unseen()
    of_substance = any(r.substance for r in rules if r.applies)
    if violations:
        verdict = VIOLATIONS
    elif inconclusive or lost or unseen:
        # Lost events can hide a whole charge/uncharge pair, and charges of tasks
        # the recording did not follow were never seen: no balance can be proven.
        verdict = INCONCLUSIVE
        if lost and not inconclusive:
            notes.append(f"{lost} event(s) were lost: no imbalance was found, but balance cannot be proven")
        notes.extend(f"{why}: balance cannot be proven for what the trace did not see" for why in unseen)
    elif not of_substance:
        verdict = UNCHECKED
        notes.append("unchecked: no rule checked anything of substance (" + SUBSTANCE + ")")
    else:
        verdict = BALANCED
    if trace.integrity.problems:
        # The reader found rows missing, forged or inconsistent (traces/integrity.py):
        # what is not in the trace cannot be proven balanced.
        if verdict == BALANCED:
            verdict = INCONCLUSIVE
        notes.extend(f"trace integrity: {p}" for p in trace.integrity.problems)
    notes.extend(w.why for w in windows if w.why)
    notes.extend(_scope_notes(automaton, trace))
    for rule in automaton.active:  # what a rule has to say beyond findings (rules/ledger.py)
        notes.extend(getattr(rule, "notes", ()))
    if trace.meta.synthetic:
        notes.append("synthetic trace: generated, not recorded on a kernel")
    return Report(
        path=str(trace.path),
        verdict=verdict,
        events=trace.num_events,
        era=ctx.era.name,
        era_source=ctx.era.source,
        violations=violations,
        inconclusive=inconclusive,
        candidates=candidates,
        memcgs=_memcg_rows(automaton),
        rules=rules,
        kinds=kind_counts(trace.table) if kinds is None else kinds,
        lost_events=lost,
        lost_windows=len(windows),
        synthetic=bool(trace.meta.synthetic),
        notes=notes,
        held=_held_rows(automaton),
        scope={"kind": scope.kind, "memcg": scope.memcg, "memcgs": sorted(scope.memcgs),
               "observed_from_creation": sorted(m for m in scope.memcgs if scope.observed_from_creation(m)),
               "exited": scope.exited, "settled": scope.settled, "tasks_left": list(scope.tasks_left),
               "unseen": unseen},
        drivers=driver_rows(ctx.model, trace.meta),
    )


def _rule(automaton: "Automaton", rule_type: type):
    return next((r for r in automaton.active if isinstance(r, rule_type)), None)


def _held_rows(automaton: "Automaton") -> list[HeldRow]:
    """What each memcg still holds at the end, and how R10 judged it."""
    from .rules.leaks import ReleasedAtExit

    leaks = _rule(automaton, ReleasedAtExit)
    rows = []
    for memcg, out in sorted(leaks.outstanding.items()) if leaks else ():
        held = out.held
        if out.verdict == "held":
            text = (f"still charged, held by {held.describe() if held else 'nothing known'}: {out.pages} page(s) "
                    f"the trace charged are within what the memcg legitimately holds")
        elif out.verdict == "leak":
            text = f"{out.pages} page(s) still charged beyond what the memcg legitimately holds (R10)"
        else:
            text = f"{out.pages} page(s) still charged; the memcg is not closed (tasks left, not drained, " \
                   f"or not observed from its creation)"
        rows.append(_held_row(memcg, out.pages, held, out.verdict, text))
    # Counter-only traces: folio charges R3.pgpg saw open within the memcg's page cache/shmem.
    from .rules.counters import PgpgBalance
    from .rules.reconcile import UsageReconciliation

    ctx = automaton.ctx
    seen = {row.memcg for row in rows}
    pgpg = _rule(automaton, PgpgBalance)
    for memcg, open_folios in sorted(pgpg.held_open.items()) if pgpg else ():
        if memcg not in seen:
            held = ctx.model.held(memcg, True)
            seen.add(memcg)
            rows.append(_held_row(memcg, 0, held, "held",
                                  f"still charged, held by {held.describe() if held else 'its files'}: "
                                  f"{open_folios} folio charge(s) (PGPGIN) never uncharged, within its page "
                                  f"cache/shmem"))
    # Whatever else the kernel's usage still holds at the end, as reconciled (kernel
    # objects of kept files, page cache no folio record covers): held by design.
    usage = _rule(automaton, UsageReconciliation)
    for memcg, res in sorted(usage.results.items()) if usage else ():
        if memcg in seen or not res.ok or res.held is None or not res.held.legitimately_held():
            continue
        rows.append(_held_row(memcg, 0, res.held, "held",
                              f"still charged, held by {res.held.describe()} (kernel usage {res.kernel_pages} "
                              f"page(s){f', {res.phase} sample' if res.phase else ''})"))
    return rows


def _held_row(memcg: int, outstanding: int, held: "Held | None", verdict: str, text: str) -> HeldRow:
    kinds = (held.anon, held.file, held.shmem, held.kmem, held.sock, held.source) if held else (0, 0, 0, 0, 0, "")
    return HeldRow(memcg, outstanding, *kinds, verdict, text)


def _scope_notes(automaton: "Automaton", trace: Trace) -> list[str]:
    """What the verdict could not judge, in words."""
    ctx = automaton.ctx
    scope = ctx.scope
    notes = []
    running = scope.still_running()
    if running:
        notes.append(f"{running}; leaks were not judged")
    if scope.kind in ("pid", "cgroup") or (scope.memcg and not scope.fresh):
        pre = sum(led.pre_trace_uncharged for led in ctx.model.memcgs.values())
        notes.append(
            f"memcg {scope.memcg} existed before the recording: charges made before the trace could not be "
            f"judged ({pre} page(s) charged before the trace were uncharged in it; its counters are changes, "
            f"not totals)")
    if scope.memcgs and len(scope.memcgs) > 1:
        notes.append(f"scope: memcg {scope.memcg} and {len(scope.memcgs) - 1} descendant(s); rows of all of them "
                     f"were replayed and usage compared over the subtree")
    from .rules.counters import PgpgBalance

    pgpg = _rule(automaton, PgpgBalance)
    for memcg, extra in sorted(pgpg.unexplained_out.items()) if pgpg else ():
        notes.append(f"memcg {memcg}: PGPGOUT exceeds PGPGIN by {extra} event(s), as large folios split after "
                     f"their charge do; the recording had no split probe to verify it")
    if scope.settle and not scope.settle.get("done", True):
        notes.append(f"draining after exit did not finish ({scope.settle.get('method', '')}: "
                     f"{scope.settle.get('unreclaimed_bytes', 0)} bytes left, {scope.settle.get('why', '')}); "
                     f"leaks were not judged")
    return notes
