"""Import perf and trace-cmd recordings of tracepoints as chargetrace traces.

An importer is on the recording side of the one-way data path: it produces
traces through :class:`chargetrace.traces.TraceWriter` like the recorder, and
the replay reads them like any other trace. ``textparse`` reads the tools'
text (and their binary files through the tools), ``mapping`` turns
tracepoints into rows, ``run`` writes the trace with its provenance.
"""

from .run import ConvertConfig, ConvertResult, convert_file

__all__ = ["ConvertConfig", "ConvertResult", "convert_file"]
