"""Replay settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ReplayConfig"]


@dataclass
class ReplayConfig:
    #: Era profile name (see replay.eras.PROFILES) overriding the trace's metadata.
    era: str | None = None
    #: Called with the number of events just replayed (progress bars).
    progress: Callable[[int], None] | None = None
