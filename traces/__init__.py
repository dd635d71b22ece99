"""chargetrace's trace format: schema, metadata, writer and reader.

The recorder (``chargetrace.tracer``) writes with :class:`TraceWriter`; the
replay (``chargetrace.replay``) reads with :func:`read_trace`, whose
:attr:`Trace.integrity` lists what makes a readable trace less than whole. The shipped
trace files live beside this package in the repository (see README.md here).
"""

from .errors import ChargetraceError
from .integrity import Integrity
from .metadata import Era, Scope, TraceMeta
from .reader import Trace, TraceStream, read_meta, read_trace, stream_trace, trace_files
from .schema import ARROW_SCHEMA, COLUMNS, KINDS, SCHEMA_VERSION
from .writer import TraceWriter, write_table

__all__ = [
    "ARROW_SCHEMA",
    "COLUMNS",
    "ChargetraceError",
    "Era",
    "Integrity",
    "KINDS",
    "SCHEMA_VERSION",
    "Scope",
    "Trace",
    "TraceStream",
    "TraceMeta",
    "TraceWriter",
    "read_meta",
    "read_trace",
    "stream_trace",
    "trace_files",
    "write_table",
]
