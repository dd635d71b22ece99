"""Integrity of a loaded trace: is anything missing, forged or inconsistent?

Scope: checks on the rows and the metadata together, after the reader has
decoded and type-checked them. Two outcomes:

* **refused** (:class:`ChargetraceError`): the rows cannot be one trace at all —
  a ``seq`` that appears twice, a negative ``lost`` count;
* **reported** (:class:`Integrity` ``problems``): the trace reads, but it is not
  the whole recording — ``seq`` gaps that no ``lost`` row accounts for, rows of
  unknown kinds, drop counters that disagree with the ``lost`` rows, columns
  filled with defaults, a recording that did not finish, fewer rows than the
  writer wrote. ``replay`` never calls such a trace balanced.

Limits: rows removed from the very end of a trace are found only through the
metadata's ``rows`` count, which version 1 traces lack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .arrays import kind_mask, numpy_of, value_counts
from .errors import ChargetraceError
from .metadata import TraceMeta
from .schema import KINDS

__all__ = ["Integrity", "RowChecker", "check_rows"]

#: Problems listed in full; the rest are counted (a forged trace can have millions).
_MAX_LISTED = 5


@dataclass
class Integrity:
    """What the reader found wrong with a trace that it could still read."""

    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def _kind_counts(table: pa.Table) -> dict[str, int]:
    return value_counts(table.column("kind"))


class RowChecker:
    """The row checks of :func:`check_rows`, fed batch by batch in ``seq`` order
    (a streaming replay never holds the whole table): what carries over a batch
    boundary (the previous seq) is kept here, so a gap between two batches counts
    as one inside a batch would."""

    def __init__(self, source: str, meta: TraceMeta) -> None:
        self.source = source
        self.meta = meta
        armed = getattr(meta, "armed_ns", meta.extra.get("armed_ns"))  # a field once the recorder adds it
        self.armed = armed if isinstance(armed, int) else None
        self.rows = 0
        self.prev: int | None = None
        self.missing = 0
        self.listed: list[str] = []
        self.lost_total = 0
        self.empty_lost = 0
        self.early = 0

    def feed(self, seq: np.ndarray, is_lost: np.ndarray, value: np.ndarray, ts: np.ndarray) -> None:
        """One batch of sorted rows: ``seq`` and ``ts`` as uint64, ``value`` int64, ``is_lost`` bool."""
        if not seq.size:
            return
        if self.prev is None and int(seq[0]) != 0:
            self.missing += int(seq[0])
            self.listed.append(f"seq starts at {int(seq[0])}, not 0")
        if self.prev is not None:
            seq = np.concatenate([np.array([self.prev], np.uint64), seq])
            lost_ext = np.concatenate([np.zeros(1, bool), is_lost])
            value_ext = np.concatenate([np.zeros(1, np.int64), value])
        else:
            lost_ext, value_ext = is_lost, value
        if seq.size > 1:
            same = np.flatnonzero(seq[1:] == seq[:-1])
            if same.size:
                raise ChargetraceError(
                    f"{self.source}: seq {int(seq[same[0]])} appears more than once ({same.size} duplicate row(s)): "
                    f"rows were duplicated or two recordings were mixed"
                )
        lost_values = value[is_lost]
        if lost_values.size and int(lost_values.min()) < 0:
            raise ChargetraceError(f"{self.source}: a 'lost' row has a negative count ({int(lost_values.min())})")
        self.lost_total += int(lost_values.sum(dtype=np.int64)) if lost_values.size else 0
        self.empty_lost += int((lost_values == 0).sum())
        # Rows missing between consecutive seq values that no ``lost`` row accounts for.
        # The writer numbers rows in arrival order, so a recording has no gaps; a
        # ``lost`` row right after a gap may account for up to its count of rows
        # (a producer that numbers events before dropping them).
        steps = seq[1:] - seq[:-1]  # uint64, safe: strictly increasing here
        for i in np.flatnonzero(steps > 1):
            gap = int(steps[i]) - 1
            after = i + 1
            if lost_ext[after] and int(value_ext[after]) >= gap:
                continue
            self.missing += gap
            if len(self.listed) < _MAX_LISTED:
                self.listed.append(f"seq {int(seq[i])} -> {int(seq[after])}")
        self.prev = int(seq[-1])
        self.rows += int(ts.size)
        if self.armed is not None:
            self.early += int(np.count_nonzero(ts < np.uint64(max(self.armed, 0))))

    def finish(self, kind_counts: dict[str, int], missing_columns: list[str]) -> Integrity:
        found = Integrity()
        meta = self.meta
        if self.empty_lost:
            # The recorder writes a 'lost' row only for a window that dropped events.
            found.add(f"{self.empty_lost} 'lost' row(s) with a zero count, which no recorder writes")
        if self.missing:
            more = "" if len(self.listed) < _MAX_LISTED else ", ..."
            found.add(f"{self.missing} row(s) missing: seq has gaps no 'lost' row accounts for "
                      f"({'; '.join(self.listed)}{more})")
        unknown = {k: n for k, n in kind_counts.items() if k not in KINDS}
        if unknown:
            names = sorted(unknown, key=lambda k: -unknown[k])
            shown = ", ".join(f"{_printable(k)!r} x{unknown[k]}" for k in names[:_MAX_LISTED])
            found.add(f"{sum(unknown.values())} row(s) of unknown kind(s): {shown}")
        drops = meta.drops.get("total", 0)
        if drops != self.lost_total:
            found.add(f"metadata counts {drops} dropped event(s) but the 'lost' rows count {self.lost_total}")
        per_cpu = meta.drops.get("per_cpu") or {}
        if per_cpu and sum(per_cpu.values()) != drops:
            found.add(f"metadata drops per CPU sum to {sum(per_cpu.values())}, not the total {drops}")
        if missing_columns:
            found.add(f"column(s) {', '.join(missing_columns)} missing: filled with defaults")
        if not meta.complete:
            found.add("the recording did not finish (metadata complete=false): rows may be missing")
        if meta.rows is not None and meta.rows != self.rows:
            found.add(f"metadata says the writer wrote {meta.rows} row(s), the trace holds {self.rows}")
        if self.early:
            found.add(f"{self.early} row(s) have ts_ns before the recorder armed its probes "
                      f"(armed_ns {self.armed})")
        return found


def check_rows(table: pa.Table, meta: TraceMeta, source: str, *, missing_columns: list[str]) -> Integrity:
    """Check a sorted, type-conformant trace table against itself and its metadata."""
    checker = RowChecker(source, meta)
    checker.feed(numpy_of(table.column("seq")), kind_mask(table.column("kind"), "lost"), numpy_of(table.column("value")),
                 numpy_of(table.column("ts_ns")))
    return checker.finish(_kind_counts(table) if table.num_rows else {}, missing_columns)


def _printable(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
