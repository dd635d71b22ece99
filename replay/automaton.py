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

__all__ = ["Rule", "RuleContext", "Automaton"]


#: Recorder probe-catalogue entries (``meta.probes[*].event``) that emit each
#: kind, where their names differ from the kind.
_PROBE_EVENTS: dict[str, tuple[str, ...]] = {
    "memcg_stat": ("memcg_stat", "memcg_events", "memcg_lruvec_state", "memcg_state"),
    "uncharge": ("uncharge", "uncharge_batch"),
    "migrate_setup": ("migrate_setup", "device_range"),
    "migrate_pages": ("migrate_pages", "device_pages"),
    "migrate_finalize": ("migrate_finalize", "device_finalize"),
}


@dataclass
class RuleContext:
    """What every rule may read: the model, the trace's metadata and era."""

    model: Model
    meta: TraceMeta
    era: EraProfile
    findings: list[Finding] = field(default_factory=list)

    def attached(self, kind: str) -> bool:
        """Whether the recorder attached a probe that emits ``kind`` rows (or
        the trace does not say, e.g. a generated trace: then assume it did)."""
        if not self.meta.probes:
            return True
        names = _PROBE_EVENTS.get(kind, (kind,))
        return any(
            p.get("probe") and (p.get("kind") == kind or p.get("event") in names) for p in self.meta.probes
        )

    @property
    def scope_memcg(self) -> int:
        return self.meta.scope.memcg

    def observed_from_creation(self, memcg: int) -> bool:
        """The recorder created this memcg after its probes were attached, so
        every charge in it is in the trace."""
        return bool(memcg) and self.meta.scope.fresh and memcg == self.meta.scope.memcg

    def closed(self, memcg: int) -> bool:
        """Observed from creation, its tasks exited and it was drained."""
        scope = self.meta.scope
        return self.observed_from_creation(memcg) and scope.exited and bool(scope.settled)


class Rule:
    """One named rule of kernel-facts §6.

    Subclasses set ``id``, ``title``, ``source`` (the kernel commit or file
    whose behaviour the rule encodes), ``handles`` (the event kinds they are
    fed) and ``needs`` (the probes without which they cannot judge); for each
    kind K in ``handles`` they define ``on_K(ev)``.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]
    handles: ClassVar[tuple[str, ...]] = ()
    #: Logical events (recorder probes) the rule needs attached to judge anything.
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self.model = ctx.model
        self.checked = 0  # events (or end-of-trace items) this rule examined

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
        rule: str | None = None,
    ) -> None:
        seq, ts = (ev_or_seq.seq, ev_or_seq.ts_ns) if isinstance(ev_or_seq, Event) else ev_or_seq
        self.ctx.findings.append(
            Finding(
                rule=rule or self.id,
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
