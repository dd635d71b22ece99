"""The replay automaton: event kind -> the rules that need it -> the model.

For each event, every rule that declared the event's kind checks it against
the model's state *before* the event, then the model applies the event. Rules
never change the model, and the model never reports: checks and transitions
stay apart (lttng-analyses' state providers vs analyses).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from chargetrace.traces import TraceMeta

from .eras import EraProfile
from .events import Event
from .findings import VIOLATION, Finding
from .model import Model
from .scope import ScopeView

__all__ = ["Rule", "RuleContext", "Automaton"]


@dataclass
class RuleContext:
    """What every rule may read: the model, the trace's metadata and era, and
    the scope (replay/scope.py)."""

    model: Model
    meta: TraceMeta
    era: EraProfile
    findings: list[Finding] = field(default_factory=list)
    scope: ScopeView = field(init=False)
    #: Row kinds the recording attached a probe for; None = the trace does not
    #: say (a generated trace): then every kind counts as attached.
    kinds: frozenset[str] | None = field(init=False)

    def __post_init__(self) -> None:
        self.scope = ScopeView.from_meta(self.meta)
        probes = self.meta.probes
        # Decided by the kinds the recorder says it attached, never by probe names.
        self.kinds = frozenset(p["kind"] for p in probes if p.get("probe") and p.get("kind")) if probes else None

    def attached(self, kind: str) -> bool:
        """Whether the recording attached a probe that emits ``kind`` rows."""
        return self.kinds is None or kind in self.kinds

    @property
    def scope_memcg(self) -> int:
        return self.meta.scope.memcg

    def observed_from_creation(self, memcg: int) -> bool:
        """Every charge of this memcg is in the trace (ScopeView.observed_from_creation)."""
        return self.scope.observed_from_creation(memcg)

    def closed(self, memcg: int) -> bool:
        """Observed from creation, no task left in the scope, and drained."""
        return self.scope.closed(memcg)


class Rule:
    """One named rule of the accounting model (README "Rules").

    Subclasses set ``id``, ``title``, ``source`` (the kernel commit or file
    whose behaviour the rule encodes), ``handles`` (the event kinds they are
    fed) and ``needs`` (the probes without which they cannot judge); for each
    kind K in ``handles`` they define ``on_K(ev)``.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]
    handles: ClassVar[tuple[str, ...]] = ()
    #: Row kinds the rule needs attached (meta.probes[*].kind) to judge anything.
    needs: ClassVar[tuple[str, ...]] = ()
    #: What ``checked`` counts (the coverage the report prints).
    unit: ClassVar[str] = "events"

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self.model = ctx.model
        self.checked = 0  # events (or end-of-trace items) this rule examined
        #: Of those, the ones "of substance": a charge, uncharge, transfer,
        #: replace, device free or split; a non-zero counter delta; a usage
        #: figure with at least one page behind it. A replay in which every
        #: rule's substance is 0 is *unchecked* (report.py).
        self.substance = 0
        #: Pages behind the checked events, where the rule knows them.
        self.pages = 0

    def check(self, pages: int = 0, substantive: bool = True) -> None:
        """Count one examined event (and whether it was of substance)."""
        self.checked += 1
        self.pages += pages
        if substantive:
            self.substance += 1

    def applies(self) -> bool:
        """Whether the trace holds what this rule needs (probes attached)."""
        return all(self.ctx.attached(event) for event in self.needs)

    def finish(self) -> None:
        """End of trace: report what is still open."""

    def report(
        self,
        ev_or_seq: Event | tuple[int, int],
        folio: int,
        memcg: int,
        message: str,
        *,
        since_ts_ns: int | None = None,
        related: Iterable[int] = (),
        kind: str = VIOLATION,
    ) -> None:
        """Add a finding under this rule's own id (no unit reports another's)."""
        seq, ts = (ev_or_seq.seq, ev_or_seq.ts_ns) if isinstance(ev_or_seq, Event) else ev_or_seq
        self.ctx.findings.append(
            Finding(
                rule=self.id,
                seq=seq,
                ts_ns=ts,
                folio=folio,
                memcg=memcg,
                message=message,
                since_ts_ns=ts if since_ts_ns is None else since_ts_ns,
                related_seqs=sorted(set(related)),
                kind=kind,
            )
        )

    def end_point(self) -> tuple[int, int]:
        """(seq, ts) of the last event: where end-of-trace findings sit."""
        return self.model.last_seq, self.model.last_ts


class Automaton:
    def __init__(self, ctx: RuleContext, rule_types: Iterable[type[Rule]]) -> None:
        self.ctx = ctx
        self.rules = [rt(ctx) for rt in rule_types]
        self.active = [r for r in self.rules if r.applies()]
        self.dispatch: dict[str, list[Callable[[Event], None]]] = defaultdict(list)
        for rule in self.active:
            for kind in rule.handles:
                handler = getattr(rule, f"on_{kind}", None)
                if handler is None:
                    raise TypeError(f"{type(rule).__name__} declares {kind!r} but has no on_{kind}")
                self.dispatch[kind].append(handler)

    def feed(self, events: Iterable[Event]) -> int:
        dispatch, apply = self.dispatch, self.ctx.model.apply
        n = 0
        for ev in events:
            for handler in dispatch.get(ev.kind, ()):
                handler(ev)
            apply(ev)
            n += 1
        return n

    def finish(self) -> None:
        for rule in self.active:
            rule.finish()
