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
import pyarrow.compute as pc

from .errors import ChargetraceError
from .metadata import TraceMeta
from .schema import KINDS

__all__ = ["Integrity", "check_rows"]

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
    counts = pc.value_counts(table.column("kind").combine_chunks().dictionary_decode()
                             if pa.types.is_dictionary(table.column("kind").type) else table.column("kind"))
    return {c["values"]: c["counts"] for c in counts.to_pylist()}


def _seq_gaps(seq: np.ndarray, kinds_lost: np.ndarray, lost_value: np.ndarray, source: str) -> tuple[int, list[str]]:
    """Rows missing between consecutive seq values that no ``lost`` row accounts for.

    The writer numbers rows in arrival order, so a recording has no gaps; a
    ``lost`` row right after a gap may account for up to its count of rows
    (a producer that numbers events before dropping them).
    """
    if seq.size == 0:
        return 0, []
    steps = seq[1:] - seq[:-1]  # uint64, safe: strictly increasing here
    holes = np.flatnonzero(steps > 1)
    missing_total = 0
    listed = []
    if seq[0] != 0:
        missing_total += int(seq[0])
        listed.append(f"seq starts at {int(seq[0])}, not 0")
    for i in holes:
        gap = int(steps[i]) - 1
        after = i + 1
        if kinds_lost[after] and int(lost_value[after]) >= gap:
            continue
        missing_total += gap
        if len(listed) < _MAX_LISTED:
            listed.append(f"seq {int(seq[i])} -> {int(seq[after])}")
    return missing_total, listed


def check_rows(table: pa.Table, meta: TraceMeta, source: str, *, missing_columns: list[str]) -> Integrity:
    """Check a sorted, type-conformant trace table against itself and its metadata."""
    found = Integrity()
    seq = table.column("seq").to_numpy()
    if seq.size > 1:
        same = np.flatnonzero(seq[1:] == seq[:-1])
        if same.size:
            raise ChargetraceError(
                f"{source}: seq {int(seq[same[0]])} appears more than once ({same.size} duplicate row(s)): "
                f"rows were duplicated or two recordings were mixed"
            )
    kind_col = table.column("kind")
    is_lost = pc.equal(kind_col.cast(pa.string()) if pa.types.is_dictionary(kind_col.type) else kind_col, "lost")
    is_lost_np = is_lost.to_numpy(zero_copy_only=False).astype(bool) if table.num_rows else np.zeros(0, bool)
    values = table.column("value").to_numpy()
    lost_values = values[is_lost_np]
    if lost_values.size and int(lost_values.min()) < 0:
        raise ChargetraceError(f"{source}: a 'lost' row has a negative count ({int(lost_values.min())})")
    lost_total = int(lost_values.sum(dtype=np.int64)) if lost_values.size else 0
    empty = int((lost_values == 0).sum())
    if empty:
        # The recorder writes a 'lost' row only for a window that dropped events.
        found.add(f"{empty} 'lost' row(s) with a zero count, which no recorder writes")

    missing, listed = _seq_gaps(seq, is_lost_np, values, source)
    if missing:
        more = "" if len(listed) < _MAX_LISTED else ", ..."
        found.add(f"{missing} row(s) missing: seq has gaps no 'lost' row accounts for ({'; '.join(listed)}{more})")

    unknown = {k: n for k, n in _kind_counts(table).items() if k not in KINDS}
    if unknown:
        names = sorted(unknown, key=lambda k: -unknown[k])
        shown = ", ".join(f"{_printable(k)!r} x{unknown[k]}" for k in names[:_MAX_LISTED])
        found.add(f"{sum(unknown.values())} row(s) of unknown kind(s): {shown}")

    drops = meta.drops.get("total", 0)
    if drops != lost_total:
        found.add(f"metadata counts {drops} dropped event(s) but the 'lost' rows count {lost_total}")
    per_cpu = meta.drops.get("per_cpu") or {}
    if per_cpu and sum(per_cpu.values()) != drops:
        found.add(f"metadata drops per CPU sum to {sum(per_cpu.values())}, not the total {drops}")

    if missing_columns:
        found.add(f"column(s) {', '.join(missing_columns)} missing: filled with defaults")
    if not meta.complete:
        found.add("the recording did not finish (metadata complete=false): rows may be missing")
    if meta.rows is not None and meta.rows != table.num_rows:
        found.add(f"metadata says the writer wrote {meta.rows} row(s), the trace holds {table.num_rows}")
    armed = getattr(meta, "armed_ns", meta.extra.get("armed_ns"))  # a field once the recorder adds it
    if isinstance(armed, int) and table.num_rows:
        early = int(pc.sum(pc.less(table.column("ts_ns"), pa.scalar(armed, pa.uint64()))).as_py() or 0)
        if early:
            found.add(f"{early} row(s) have ts_ns before the recorder armed its probes (armed_ns {armed})")
    return found


def _printable(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
