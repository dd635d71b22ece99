"""Offline replay of chargetrace traces against the reference accounting model.

``replay(read_trace(path))`` returns a :class:`Report`: a verdict (balanced,
violations, inconclusive), every finding with its rule, folio, memcg and seq,
and per-memcg and per-rule tables. This package reads traces only; it never
imports the recorder.
"""

from .config import ReplayConfig
from .engine import replay
from .eras import PROFILES, EraProfile, select_era
from .findings import Finding
from .report import BALANCED, INCONCLUSIVE, VIOLATIONS, Report

__all__ = [
    "BALANCED",
    "EraProfile",
    "Finding",
    "INCONCLUSIVE",
    "PROFILES",
    "Report",
    "ReplayConfig",
    "VIOLATIONS",
    "replay",
    "select_era",
]
