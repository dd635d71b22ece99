"""SQL over traces with DuckDB: ``events``, ``findings`` and ``ledger`` tables.

``events`` holds every row of every trace given (traces/SCHEMA.md columns plus
``trace``, the path as given, and ``driver``, the name the metadata's ``pgmaps``
gives the row's ``pgmap_ops``, "" for none); ``findings`` and ``ledger`` hold the replay
report's findings and per-memcg rows (``frames.py``). The traces are read with
the trace reader (so every bad input is one error line, and older schema
versions get their column defaults) and handed to DuckDB as Arrow tables
without a copy. The replay runs only when the SQL names ``findings`` or
``ledger``, so plain event questions cost a read and nothing more.

Limits: everything is held in memory; DuckDB's SQL dialect.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from chargetrace.traces import ChargetraceError

from ._deps import need
from .frames import FINDING_COLUMNS, Progress, analyze, events_table, findings_rows, ledger_rows

__all__ = ["QueryResult", "query", "query_df", "TABLES"]

#: The tables a query can name, with what they hold.
TABLES = {
    "events": "every trace row (SCHEMA.md columns) plus `trace` and `driver` (device rows' driver name)",
    "findings": "replay findings: trace, status, rule, seq, ts_ns, folio, memcg, message, related_seqs",
    "ledger": "replay per-memcg ledger: trace, memcg, charged, uncharged, live, pgpgin, pgpgout, ...",
}

_NEEDS_REPLAY = re.compile(r"\b(findings|ledger)\b", re.I)


@dataclass
class QueryResult:
    """Column names and rows of a query's answer."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        return json.dumps(self.to_records(), indent=2, default=_json_default)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buf.getvalue()


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


#: Kernel pointers and ids do not fit int64: these columns are uint64.
_UNSIGNED = ("seq", "ts_ns", "folio", "memcg")


def _arrow_of(rows: list[dict[str, Any]], columns: Iterable[str]) -> pa.Table:
    cols = list(dict.fromkeys([*columns, *(k for r in rows for k in r)]))
    if not rows:
        return pa.table({c: pa.array([], pa.uint64() if c in _UNSIGNED else pa.string()) for c in cols})
    arrays = {}
    for c in cols:
        values = [r.get(c) for r in rows]
        arrays[c] = pa.array(values, pa.uint64()) if c in _UNSIGNED else pa.array(values)
    return pa.table(arrays)


def _connect(paths: list[str], sql: str, progress: Progress | None):
    duckdb = need("duckdb", "chargetrace query")
    analyses = analyze(paths, with_replay=bool(_NEEDS_REPLAY.search(sql)), progress=progress)
    con = duckdb.connect(":memory:")
    ev = events_table(analyses)
    con.register("events", ev)
    replayed = any(a.report is not None for a in analyses)
    if replayed:
        con.register("findings", _arrow_of(findings_rows(analyses), FINDING_COLUMNS))
        con.register("ledger", _arrow_of(ledger_rows(analyses), ("trace", "memcg")))
    return duckdb, con


def query(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], sql: str,
          *, progress: Progress | None = None) -> QueryResult:
    """Run ``sql`` over the traces at ``paths``; raises ChargetraceError for bad
    input and for SQL DuckDB rejects (the message is DuckDB's first line)."""
    paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
    if not paths:
        raise ChargetraceError("query: no trace given")
    if not sql.strip():
        raise ChargetraceError("query: empty SQL")
    duckdb, con = _connect(paths, sql, progress)
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return QueryResult([], [])
        columns = [d[0] for d in cur.description]
        return QueryResult(columns, [tuple(r) for r in cur.fetchall()])
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChargetraceError(f"query: {first}") from None
    finally:
        con.close()


def query_df(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], sql: str):
    """As :func:`query`, as a pandas DataFrame (for notebooks)."""
    import pandas as pd

    res = query(paths, sql)
    return pd.DataFrame.from_records(res.rows, columns=res.columns)
