"""Fleet replay: many traces replayed in parallel on local cores, one combined report.

``find_traces(DIR_OR_GLOB)`` turns a directory tree (hive-partitioned by
``host=``/``boot=`` or not) or a glob into trace paths. A Parquet file is one
trace; so is a **segment directory** (``seg-*.parquet``, the recorder's
``t.parquet.partial/``): traces/reader.py reads its segments as one recording
(it refuses segments of different recordings, which is then that trace's bad
input), so the walk never descends into one. Any other directory is a fleet.

``replay_one(path)`` is the per-trace function — the one a distributed engine
runs too (replay/fleet_spark.py) — and never raises: bad input becomes an
``error`` result with the reader's one-line message. ``replay_fleet`` runs it
over a process pool (``jobs``); ``replay_one`` with ``buckets`` > 1 replays one
trace partitioned by folio bucket (replay/fleet_partition.py, exact).

The fleet's exit code is its worst trace's, in this order (``SEVERITY``):
violations (1) > bad input (2) > inconclusive (3) > unchecked (4) > balanced
(0). A proven violation anywhere outranks everything; a trace that could not
be read at all outranks one that was read but could not be proven.

Replay options (``era``, ``engine``) are handed to :class:`ReplayConfig`
untouched, and each whole trace is replayed by ``replay.engine.replay_file``,
so a fleet picks its engine per trace as a single replay does (``auto``: the
compiled engine from 200,000 events on).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chargetrace.traces import ChargetraceError

__all__ = ["TraceResult", "FleetReport", "find_traces", "partition_of", "replay_one", "replay_fleet",
           "worst_exit_code", "is_fleet", "SEVERITY", "FLEET_JSON_VERSION", "EXIT_BAD_INPUT"]

#: Exit codes from worst to best: a fleet's code is its worst trace's.
SEVERITY = (1, 2, 3, 4, 0)
EXIT_BAD_INPUT = 2
#: Version of :meth:`FleetReport.to_json` (per-trace entries: :class:`TraceResult`).
FLEET_JSON_VERSION = 1
_SEGMENTS = "seg-*.parquet"


@dataclass
class TraceResult:
    """One trace's outcome: a report verdict, or ``error`` (bad input, exit 2)."""

    path: str
    partition: dict[str, str]
    verdict: str
    exit_code: int
    events: int = 0
    violations: int = 0
    inconclusive: int = 0
    candidates: int = 0
    rules: dict[str, int] = field(default_factory=dict)  #: violations per rule
    error: str = ""


@dataclass
class FleetReport:
    root: str
    traces: list[TraceResult]

    @property
    def exit_code(self) -> int:
        return worst_exit_code(t.exit_code for t in self.traces)

    def totals(self) -> dict[str, Any]:
        """Traces per verdict (``verdicts``, ``error`` = bad input) and the sums of
        events and findings (``violations``, ``inconclusive``, ``candidates``)."""
        verdicts: dict[str, int] = {}
        out: dict[str, Any] = {"traces": len(self.traces), "verdicts": verdicts}
        for name in ("events", "violations", "inconclusive", "candidates"):
            out[name] = sum(getattr(t, name) for t in self.traces)
        for t in self.traces:
            verdicts[t.verdict] = verdicts.get(t.verdict, 0) + 1
        return out

    def lines(self) -> list[str]:
        """The text report: one line per trace (verdict, path, hive keys, counts or
        the bad input's message), then the totals and the exit code."""
        out = []
        for t in self.traces:
            where = " ".join(f"{k}={v}" for k, v in t.partition.items())
            rules = ", ".join(f"{r} {n}" for r, n in sorted(t.rules.items()))
            what = t.error or (f"{t.events} events, {t.violations} violation(s)" + (f" ({rules})" if rules else "")
                               + (f", {t.inconclusive} inconclusive" if t.inconclusive else ""))
            out.append(f"{t.verdict:<12} {t.path}{f'  [{where}]' if where else ''}: {what}")
        totals = self.totals()
        verdicts = totals["verdicts"]
        counts = ", ".join(f"{verdicts[v]} {v}" for v in ("violations", "error", "inconclusive", "unchecked",
                                                         "balanced") if verdicts.get(v))
        out.append(f"totals: {totals['traces']} trace(s) ({counts}), {totals['events']} events, "
                   f"{totals['violations']} violation(s); exit {self.exit_code}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"fleet_json_version": FLEET_JSON_VERSION, "root": self.root, "exit_code": self.exit_code,
                "severity": list(SEVERITY), "totals": self.totals(), "traces": [asdict(t) for t in self.traces]}


def worst_exit_code(codes: Iterable[int]) -> int:
    seen = set(codes)
    return next((c for c in SEVERITY if c in seen), 0)


def _is_segment_dir(path: Path) -> bool:
    return path.is_dir() and next(path.glob(_SEGMENTS), None) is not None


def is_fleet(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names many traces (a glob, or a directory that is not one
    recording's segments) rather than one trace."""
    text = str(spec)
    if any(ch in text for ch in "*?["):
        return not Path(text).exists()  # a file literally named with '*' is one trace
    path = Path(text)
    return path.is_dir() and not _is_segment_dir(path)


def _traces_under(path: Path) -> list[Path]:
    if path.is_file() or _is_segment_dir(path):
        return [path]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        here = Path(dirpath)
        dirnames.sort()
        keep = []
        for name in dirnames:
            sub = here / name
            if _is_segment_dir(sub):
                found.append(sub)  # one recording: never walked into
            else:
                keep.append(name)
        dirnames[:] = keep
        found.extend(here / f for f in sorted(filenames)
                     if f.endswith(".parquet") and not f.startswith((".", "seg-")))
    return found


def find_traces(spec: str | os.PathLike[str]) -> list[Path]:
    """The traces ``DIR_OR_GLOB`` names, sorted; nothing found is one error line."""
    text = str(spec)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        paths = sorted({t for m in sorted(glob.glob(text, recursive=True)) for t in _traces_under(Path(m))})
        if not paths:
            raise ChargetraceError(f"{text}: no trace matches")
        return paths
    path = Path(text)
    if not path.exists():
        raise ChargetraceError(f"{path}: no such file or directory")
    paths = sorted(_traces_under(path))
    if not paths:
        raise ChargetraceError(f"{path}: directory holds no trace (*.parquet, or a directory of {_SEGMENTS})")
    return paths


def partition_of(path: str | os.PathLike[str]) -> dict[str, str]:
    """Hive partition keys in the path (``host=a/boot=1/x.parquet`` -> host, boot)."""
    return dict(part.split("=", 1) for part in Path(path).parts[:-1] if "=" in part and not part.startswith("="))


def replay_one(path: str | os.PathLike[str], options: dict[str, Any] | None = None, buckets: int = 1,
               jobs: int = 1) -> TraceResult:
    """Replay one trace (partitioned into ``buckets`` when > 1); bad input is an
    ``error`` result, never an exception."""
    part = partition_of(path)
    try:
        report = replay_report(path, options, buckets=buckets, jobs=jobs)
    except ChargetraceError as exc:
        return TraceResult(str(path), part, "error", EXIT_BAD_INPUT, error=str(exc))
    return result_of(str(path), part, report)


def replay_report(path: str | os.PathLike[str], options: dict[str, Any] | None = None, *, buckets: int = 1,
                  jobs: int = 1):
    """The replay's own :class:`Report` for one trace path (raises ChargetraceError on bad input).

    Whole traces go through :func:`replay.engine.replay_file`, the one owner of
    "replay the trace at this path": it picks the engine ``options["engine"]``
    asks for (auto: the compiled one from 200,000 events on) and falls back to
    the reference with a one-line notice on stderr. Buckets replay on the
    reference model (replay/fleet_partition.py)."""
    from chargetrace.traces import read_trace

    from .config import ReplayConfig
    from .engine import replay_file

    config = ReplayConfig(**(options or {}))
    if buckets > 1:
        from .fleet_partition import replay_partitioned

        return replay_partitioned(read_trace(path), buckets, config, jobs=jobs)
    return replay_file(path, config)[0]


def result_of(path: str, part: dict[str, str], report: Any) -> TraceResult:
    by_rule: dict[str, int] = {}
    for f in report.violations:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    return TraceResult(path, part, report.verdict, report.exit_code, report.events, len(report.violations),
                       len(report.inconclusive), len(report.candidates), by_rule)


def _replay_star(args: tuple) -> TraceResult:
    return replay_one(*args)


def replay_fleet(spec: str | os.PathLike[str], options: dict[str, Any] | None = None,
                 jobs: int | None = None, buckets: int = 1) -> FleetReport:
    """Replay every trace ``spec`` names on ``jobs`` local processes (default: every core)."""
    paths = find_traces(spec)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if buckets > 1:
        # Each trace's buckets use the pool; traces go one after the other.
        return FleetReport(str(spec), [replay_one(p, options, buckets, jobs) for p in paths])
    work = [(str(p), options) for p in paths]
    if jobs == 1 or len(paths) == 1:
        results = [_replay_star(w) for w in work]
    else:
        from concurrent.futures import ProcessPoolExecutor  # not on a single trace's path (start-up)

        with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
            results = list(pool.map(_replay_star, work))
    return FleetReport(str(spec), results)
