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
from .query import TABLES, QueryResult, query, query_df

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


def write_report(*args, **kwargs):  # noqa: ANN002, ANN003 - see report.write_report
    """See :func:`chargetrace.look.report.write_report`."""
    from .report import write_report as _write

    return _write(*args, **kwargs)


def export_perfetto(*args, **kwargs):  # noqa: ANN002, ANN003 - see perfetto.export_perfetto
    """See :func:`chargetrace.look.perfetto.export_perfetto`."""
    from .perfetto import export_perfetto as _export

    return _export(*args, **kwargs)
