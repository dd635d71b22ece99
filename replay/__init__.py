"""Offline replay of chargetrace traces against the reference accounting model.

``replay(read_trace(path))`` returns a :class:`Report` (the reference model;
``replay_file(path, ReplayConfig(engine=...))`` replays the trace at a path
with the engine asked for, the compiled one streaming it): a verdict (balanced,
violations, inconclusive, unchecked), every finding with its rule, folio, memcg
and seq, what each rule checked (coverage), what each memcg still holds, and
per-memcg and per-rule tables. This package reads traces only; it never
imports the recorder.
"""

from .config import ReplayConfig
from .engine import replay, replay_file
from .eras import PROFILES, EraProfile, select_era
from .findings import Finding
from .report import BALANCED, EXIT_CODES, INCONCLUSIVE, UNCHECKED, VIOLATIONS, Report

__all__ = [
    "BALANCED",
    "EXIT_CODES",
    "EraProfile",
    "Finding",
    "INCONCLUSIVE",
    "PROFILES",
    "Report",
    "ReplayConfig",
    "UNCHECKED",
    "VIOLATIONS",
    "replay",
    "replay_file",
    "select_era",
]
