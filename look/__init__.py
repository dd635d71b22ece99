"""Look at traces and ask them questions: SQL, an HTML report, a Perfetto export.

Notebook API (pandas DataFrames)::

    from chargetrace import look
    look.events("traces/hmm-tests-6.1.parquet")      # one row per event (+ `trace`)
    look.findings(["a.parquet", "b.parquet"])         # replay findings of each trace
    look.ledger("t.parquet")                          # replay per-memcg ledger
    look.query_df("t.parquet", "SELECT kind, count(*) FROM events GROUP BY kind")

``write_report`` writes the self-contained HTML report, ``export_perfetto`` a
Perfetto trace. DuckDB, plotly and perfetto come from the optional ``look``
extra (``pip install 'chargetrace[look]'``) and are imported only when used.
"""

from __future__ import annotations

from .frames import Analysis, analyze, events, findings, ledger
from .perfetto import export_perfetto
from .query import TABLES, QueryResult, query, query_df
from .report import write_report

__all__ = [
    "Analysis",
    "QueryResult",
    "TABLES",
    "analyze",
    "events",
    "export_perfetto",
    "findings",
    "ledger",
    "query",
    "query_df",
    "write_report",
]

