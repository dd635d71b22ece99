"""Host-side checks and provenance for the traces the lab brings back.

The lab asserts on numbers, not exit codes: every device-private event kind
must be present (:data:`REQUIRED_KINDS`) and the transport must have dropped
nothing. Provenance (kernel, config hash, command, date) goes into the trace's
own metadata so a shipped file explains itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargetrace.traces import read_trace, write_table

__all__ = ["REQUIRED_KINDS", "TraceSummary", "add_provenance", "summarize"]

#: Kinds one hmm-tests run must produce on a device-private kernel.
REQUIRED_KINDS = ("charge", "uncharge", "transfer", "migrate_setup", "migrate_pages", "migrate_finalize",
                  "device_free", "device_fault")


@dataclass
class TraceSummary:
    """Event counts and completeness of one trace."""

    path: Path
    events: int
    kinds: dict[str, int]
    drops: int
    kernel_release: str
    era: dict[str, Any] = field(default_factory=dict)

    @property
    def missing_kinds(self) -> list[str]:
        """:data:`REQUIRED_KINDS` with no event in the trace."""
        return [k for k in REQUIRED_KINDS if self.kinds.get(k, 0) == 0]


def summarize(path: Path) -> TraceSummary:
    """Count events per kind and read the drop total of the trace at ``path``."""
    trace = read_trace(path)
    kinds = Counter(trace.table.column("kind").to_pylist())
    meta = trace.meta
    return TraceSummary(path=path, events=trace.num_events, kinds=dict(sorted(kinds.items())),
                        drops=int(meta.drops.get("total", 0) or 0), kernel_release=meta.kernel_release,
                        era={"migrate": meta.era.migrate, "device_free_refcount": meta.era.device_free_refcount,
                             "detected_by": meta.era.detected_by})


def add_provenance(path: Path, provenance: dict[str, Any]) -> None:
    """Merge ``provenance`` into the trace's metadata, rewriting it as one file."""
    trace = read_trace(path)
    trace.meta.provenance = {**trace.meta.provenance, **provenance}
    write_table(trace.table, path, trace.meta)
