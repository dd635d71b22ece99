"""Replay settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ReplayConfig", "ENGINES", "COMPILED_FROM_EVENTS"]

#: ``auto`` picks the compiled engine (replay/compiled/) from this many events on,
#: where it pays back numba's start-up (BENCHMARKS.md), else the reference model.
ENGINES = ("auto", "compiled", "reference")
COMPILED_FROM_EVENTS = 200_000


@dataclass
class ReplayConfig:
    #: Era profile name (see replay.eras.PROFILES) overriding the trace's metadata.
    era: str | None = None
    #: Called with the number of events just replayed (progress bars).
    progress: Callable[[int], None] | None = None
    #: "auto", "compiled" or "reference" (ENGINES), for replay.engine.replay_file.
    engine: str = "auto"
    #: Told, in one line, why the compiled engine was not used when it was asked
    #: for (numba missing, a trace it cannot replay); None: printed on stderr.
    notice: Callable[[str], None] | None = None
