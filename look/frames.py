"""Traces, findings and per-memcg ledgers as tables (pandas / Arrow).

One owner for the tabular view of a trace and of its replay: the SQL tables
(query.py), the notebook API (``chargetrace.look``), the HTML report and the
Perfetto export all read from here. Column names follow traces/SCHEMA.md for
events and the replay report's public fields for findings and ledgers; every
table carries a ``trace`` column (the path given) so several traces can be
asked at once. Limits: a trace is read whole into memory (as ``replay`` does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from chargetrace.replay import Report, replay
from chargetrace.traces import Trace, read_trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Analysis",
    "Progress",
    "analyze",
    "events_table",
    "findings_rows",
    "ledger_rows",
    "events",
    "findings",
    "ledger",
    "FINDING_COLUMNS",
]

#: progress(step, done, total): ``step`` names the work (e.g. "read t.parquet").
Progress = Callable[[str, int, int], None]

#: Columns of the findings table (one row per finding, any status).
FINDING_COLUMNS = ("trace", "status", "rule", "seq", "ts_ns", "folio", "memcg", "message", "related_seqs")


@dataclass
class Analysis:
    """A trace and (when asked for) its replay report."""

    name: str
    trace: Trace
    report: Report | None = None


def _paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def analyze(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    with_replay: bool = True,
    progress: Progress | None = None,
) -> list[Analysis]:
    """Read each trace (and replay it when ``with_replay``); raises
    :class:`~chargetrace.traces.ChargetraceError` on bad input."""
    names = _paths(paths)
    out = []
    steps = len(names) * (2 if with_replay else 1)
    done = 0
    for name in names:
        if progress:
            progress(f"read {name}", done, steps)
        trace = read_trace(name)
        done += 1
        report = None
        if with_replay:
            if progress:
                progress(f"replay {name}", done, steps)
            report = replay(trace)
            done += 1
        out.append(Analysis(name, trace, report))
    if progress:
        progress("done", done, steps)
    return out


def _driver_column(trace) -> pa.Array:
    """Each row's driver name, from its pgmap_ops id and the metadata's pgmaps
    table ("" where the row names none), so SQL can GROUP BY driver."""
    names = {int(e["id"]): str(e.get("driver", "")) for e in (trace.meta.pgmaps or [])}
    ids = trace.table.column("pgmap_ops").to_numpy()
    if not names or not ids.size:
        return pa.repeat(pa.scalar("", pa.string()), trace.table.num_rows)
    uniq, inverse = np.unique(ids, return_inverse=True)
    words = pa.array([names.get(int(u), "" if u == 0 else f"pgmap_ops id {int(u)}") for u in uniq], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), words).cast(pa.string())


def events_table(analyses: Sequence[Analysis]) -> pa.Table:
    """All events of all traces as one Arrow table (schema columns + ``trace``);
    dictionary columns are decoded to plain strings so that segments and traces
    with different dictionaries concatenate."""
    tables = []
    for a in analyses:
        t = a.trace.table
        cols, names = [], []
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(pa.string())
            cols.append(col)
            names.append(name)
        cols.insert(0, pa.repeat(pa.scalar(a.name, pa.string()), t.num_rows))
        names.insert(0, "trace")
        cols.append(_driver_column(a.trace))
        names.append("driver")
        tables.append(pa.Table.from_arrays(cols, names=names))
    return pa.concat_tables(tables) if tables else pa.table({"trace": pa.array([], pa.string())})


def _status(report: Report) -> Iterable[tuple[str, Any]]:
    for status, items in (("violation", report.violations), ("inconclusive", report.inconclusive),
                          ("candidate", report.candidates)):
        for f in items:
            yield status, f


def findings_rows(analyses: Sequence[Analysis]) -> list[dict[str, Any]]:
    """One dict per finding (violations, inconclusive findings and candidates)."""
    rows = []
    for a in analyses:
        if a.report is None:
            continue
        for status, f in _status(a.report):
            d = f.to_dict()
            rows.append({
                "trace": a.name, "status": status, "rule": d.get("rule", ""), "seq": d.get("seq", 0),
                "ts_ns": d.get("ts_ns", 0), "folio": d.get("folio", 0), "memcg": d.get("memcg", 0),
                "message": d.get("message", ""), "related_seqs": list(d.get("related_seqs", [])),
            })
    return rows


def ledger_rows(analyses: Sequence[Analysis]) -> list[dict[str, Any]]:
    """One dict per (trace, memcg): the replay report's per-memcg row, as is
    (new fields added to the report appear as new columns)."""
    rows = []
    for a in analyses:
        if a.report is None:
            continue
        for row in a.report.memcgs:
            rows.append({"trace": a.name, **vars(row)})
    return rows


# -- notebook API: pandas DataFrames ------------------------------------------------


def events(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> "pd.DataFrame":
    """Every event of the given traces, one row each (columns as in SCHEMA.md, plus ``trace``)."""
    return events_table(analyze(paths, with_replay=False)).to_pandas()


def findings(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> "pd.DataFrame":
    """Every finding of replaying the given traces (``status``: violation, inconclusive, candidate)."""
    import pandas as pd

    return pd.DataFrame(findings_rows(analyze(paths)), columns=list(FINDING_COLUMNS))


def ledger(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> "pd.DataFrame":
    """The replay's per-memcg ledger of the given traces, one row per (trace, memcg)."""
    import pandas as pd

    rows = ledger_rows(analyze(paths))
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["trace", "memcg"])
