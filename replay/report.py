"""The replay report: verdict, findings, per-memcg and per-rule tables.

Building the report is separate from printing it: the CLI renders a
:class:`Report` as text or JSON (``Report.to_json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from chargetrace.traces import Trace

from .findings import CANDIDATE, Finding

if TYPE_CHECKING:
    from .automaton import Automaton
    from .engine import LostWindow

__all__ = ["Report", "MemcgRow", "RuleRow", "build_report", "BALANCED", "VIOLATIONS", "INCONCLUSIVE"]

BALANCED = "balanced"
VIOLATIONS = "violations"
INCONCLUSIVE = "inconclusive"
JSON_VERSION = 1


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
    pgpgin: int
    pgpgout: int
    anon_mapped: int
    kernel_pages: int | None
    model_pages: int | None
    difference: int | None
    tolerance: int | None
    reconcile: str  # ok / mismatch / "" (no usage samples)


@dataclass
class RuleRow:
    rule: str
    title: str
    source: str
    checked: int
    violations: int
    applies: bool


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

    @property
    def exit_code(self) -> int:
        return {BALANCED: 0, VIOLATIONS: 1, INCONCLUSIVE: 3}[self.verdict]

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
        }


def kind_counts(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(table.column("kind").cast(pa.string())).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: -c["counts"])}


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
                anon_mapped=led.counters.get("NR_ANON_MAPPED", 0),
                kernel_pages=rec.kernel_pages if has else None,
                model_pages=rec.model_pages if has else None,
                difference=rec.difference if has else None,
                tolerance=rec.tolerance if has else None,
                reconcile=("ok" if rec.ok else "mismatch") if has else "",
            )
        )
    return rows


def build_report(trace: Trace, automaton: "Automaton", windows: list["LostWindow"]) -> Report:
    ctx = automaton.ctx
    findings = sorted(ctx.findings, key=lambda f: (f.seq, f.rule))
    violations = [f for f in findings if f.kind != CANDIDATE and not f.inconclusive]
    inconclusive = [f for f in findings if f.kind != CANDIDATE and f.inconclusive]
    candidates = [f for f in findings if f.kind == CANDIDATE]
    by_rule: dict[str, int] = {}
    for f in violations:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    rules = [
        RuleRow(r.id, r.title, r.source, r.checked, by_rule.get(r.id, 0), r in automaton.active)
        for r in automaton.rules
    ]
    lost = sum(w.count for w in windows)
    notes = []
    if violations:
        verdict = VIOLATIONS
    elif inconclusive or lost:
        # Lost events can hide a whole charge/uncharge pair: without them no
        # trace can be proven balanced.
        verdict = INCONCLUSIVE
        if not inconclusive:
            notes.append(f"{lost} event(s) were lost: no imbalance was found, but balance cannot be proven")
    else:
        verdict = BALANCED
    if trace.integrity.problems:
        # The reader found rows missing, forged or inconsistent (traces/integrity.py):
        # what is not in the trace cannot be proven balanced.
        if verdict == BALANCED:
            verdict = INCONCLUSIVE
        notes.extend(f"trace integrity: {p}" for p in trace.integrity.problems)
    if trace.meta.synthetic:
        notes.append("synthetic trace: generated, not recorded on a kernel")
    if not any(r.checked for r in rules):
        notes.append("no rule found anything to check in this trace")
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
        kinds=kind_counts(trace.table),
        lost_events=lost,
        lost_windows=len(windows),
        synthetic=bool(trace.meta.synthetic),
        notes=notes,
    )
