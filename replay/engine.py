"""The replay engine: trace table -> events -> automaton -> report.

The table is walked in chunks; each chunk's columns are converted to Python
lists once and zipped into :class:`Event` tuples, so the per-event cost is a
tuple and the rule calls, nothing more. Two column-level pre-passes run
first: the device-private folio set (folios that reach a device free, and the
driver of each, replay/drivers.py) and the lost-event windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from chargetrace.traces import Trace, read_trace, stream_trace
from chargetrace.traces.arrays import kind_mask, numpy_of

from .automaton import Automaton, RuleContext
from .config import COMPILED_FROM_EVENTS, ENGINES, ReplayConfig
from .drivers import device_drivers
from .eras import select_era
from .events import Event
from .model import Model
from .report import Report, build_report
from .rules import ALL_RULES

__all__ = ["replay", "replay_file", "choose_engine", "LostWindow", "lost_windows", "missed_windows",
           "iter_events", "mark_inconclusive"]

_CHUNK = 16 * 1024


@dataclass(frozen=True)
class LostWindow:
    seq: int
    cpu: int
    count: int
    start_ns: int
    end_ns: int
    #: The rules whose findings it can undermine (None: every rule).
    rules: frozenset[str] | None = None
    #: Whether folio events (charges, uncharges, transfers, frees) may be among the missing ones:
    #: then no balance can be proven (report.py counts such windows as lost events).
    hides_folios: bool = True
    #: Why events are missing, for the report's notes ("" for a ``lost`` row: the ring was full).
    why: str = ""

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns <= end_ns and start_ns <= self.end_ns

    def undermines(self, finding) -> bool:
        return (self.rules is None or finding.rule in self.rules) and self.overlaps(finding.since_ts_ns,
                                                                                    finding.ts_ns)


def lost_windows(table: pa.Table) -> list[LostWindow]:
    mask = kind_mask(table.column("kind"), "lost")
    cols = [numpy_of(table.column(name))[mask].tolist() for name in ("seq", "ts_ns", "cpu", "value", "span_ns")]
    return [LostWindow(seq, cpu, value, max(0, ts - span), ts) for seq, ts, cpu, value, span in zip(*cols)]


#: Kinds whose rows feed only the counter rules: a skipped run of their probe cannot hide a folio's
#: charge, uncharge, transfer or free, only a counter delta.
_COUNTER_KINDS = frozenset({"memcg_stat", "memcg_event", "memstat", "usage"})
#: The rules that compare counter deltas with folio events (a hidden counter delta misleads them).
_COUNTER_RULES = frozenset({"R3.pgpg", "R13.anon"})
#: L1 compares the stream with the in-kernel ledger, which the same probe run keeps: a run the
#: kernel skipped wrote neither, so it can explain no L1 finding.
_LEDGER_RULE = "L1"
_WHOLE_TRACE = (0, (1 << 63) - 1)


_ALL_BUT_LEDGER = frozenset(rule.id for rule in ALL_RULES) - {_LEDGER_RULE}


def missed_windows(meta) -> list[LostWindow]:
    """Probe runs the kernel skipped (``meta.drops["missed"]``: the BPF recursion guard, which skips
    a program that fires while another runs on the same CPU, e.g. an uncharge in an interrupt that
    lands inside a probe). The events those runs would have written are missing at unknown places,
    so each gives a window over the whole trace: for every rule when the probe records folio events,
    for the counter rules only when it records counters. The counts are system-wide (the skipped
    run may have been another cgroup's), so a finding they touch is inconclusive, not disproved."""
    missed = ((meta.drops or {}).get("missed") or {}) if isinstance(meta.drops, dict) else {}
    kind_of = {p.get("probe"): p.get("kind", "") for p in (meta.probes or []) if isinstance(p, dict)}
    windows = []
    for probe, count in sorted(missed.items()):
        if not count:
            continue
        kind = kind_of.get(probe, "")
        counters_only = kind in _COUNTER_KINDS
        windows.append(LostWindow(-1, -1, int(count), *_WHOLE_TRACE,
                                  rules=_COUNTER_RULES if counters_only else _ALL_BUT_LEDGER,
                                  hides_folios=not counters_only,
                                  why=f"the kernel skipped {count} run(s) of {probe} (BPF recursion guard; "
                                      f"drops.missed): its {kind or 'events'} may be missing anywhere in the trace"))
    return windows


def device_folios(table: pa.Table) -> frozenset[int]:
    return frozenset(numpy_of(table.column("folio"))[kind_mask(table.column("kind"), "device_free")].tolist())


def _column_list(column: pa.ChunkedArray) -> list:
    """A column as a Python list, through numpy (several times faster than
    to_pylist); dictionary columns are decoded by indexing their dictionary."""
    if pa.types.is_dictionary(column.type):
        # Segments of one trace carry different dictionaries: decode chunk by chunk.
        out: list = []
        for array in column.chunks:
            words = np.array(array.dictionary.to_pylist() or [""], dtype=object)
            out.extend(words[numpy_of(array.indices)].tolist())
        return out
    return numpy_of(column).tolist()


def iter_events(table: pa.Table, progress: Callable[[int], None] | None = None) -> Iterator[Event]:
    names = Event._fields
    for offset in range(0, table.num_rows, _CHUNK):
        chunk = table.slice(offset, _CHUNK)
        columns = [_column_list(chunk.column(name)) for name in names]
        yield from map(Event._make, zip(*columns))
        if progress is not None:
            progress(chunk.num_rows)


def replay(trace: Trace, config: ReplayConfig | None = None) -> Report:
    """Replay a trace against the reference model; never raises on content."""
    config = config or ReplayConfig()
    era = select_era(trace.meta, config.era)
    model = Model(era, device_folios(trace.table), trace.meta.page_size, device_drivers(trace.table))
    ctx = RuleContext(model, trace.meta, era)
    automaton = Automaton(ctx, ALL_RULES)
    automaton.feed(iter_events(trace.table, config.progress))
    automaton.finish()
    windows = lost_windows(trace.table) + missed_windows(trace.meta)
    mark_inconclusive(ctx.findings, windows)
    return build_report(trace, automaton, windows)


def mark_inconclusive(findings: list, windows: list[LostWindow]) -> None:
    """A finding is inconclusive when events it depends on were lost while it built up."""
    for finding in findings:
        finding.inconclusive = any(w.undermines(finding) for w in windows)


def _numba_missing() -> str:
    import importlib.util

    return "" if importlib.util.find_spec("numba") is not None else "numba is not installed (pip install numba)"


def choose_engine(engine: str, path) -> tuple[str, str]:
    """("compiled" or "reference", why the compiled one was not chosen when asked for)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is none of {', '.join(ENGINES)}")
    if engine == "reference":
        return "reference", ""
    if engine == "auto" and stream_trace(path).num_rows < COMPILED_FROM_EVENTS:
        return "reference", ""  # numba's start-up would cost more than it saves
    missing = _numba_missing()
    return ("reference", missing) if missing else ("compiled", "")


def replay_file(path, config: ReplayConfig | None = None,
                load: Callable[[object], Trace] = read_trace) -> tuple[Report, Trace | None]:
    """Replay the trace at ``path`` with ``config.engine``; the report and the
    trace when it was loaded (the reference engine loads it whole, ``load``;
    the compiled one streams it). Where the compiled engine was asked for but
    cannot run, ``config.notice`` is told why in one line and the reference
    engine replays."""
    import sys

    config = config or ReplayConfig()
    notice = config.notice or (lambda line: print(f"chargetrace: {line}", file=sys.stderr))
    chosen, why = choose_engine(config.engine, path)
    if chosen == "compiled":
        from .compiled import Unsupported, replay_compiled

        try:
            return replay_compiled(path, config), None
        except Unsupported as exc:
            why = f"the compiled engine cannot replay {path}: {exc}"
    if why:
        notice(f"{why}; replaying with the reference engine")
    trace = load(path)
    return replay(trace, config), trace
