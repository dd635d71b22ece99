"""The compiled replay engine: the reference model and rules as a numba loop.

``replay_compiled(path, config)`` returns the same :class:`Report` as
:func:`chargetrace.replay.replay` (verdict, findings, coverage, per-memcg
ledger, per-driver figures; tests/test_engines.py proves it on every shipped
trace, every mutation and generated streams), streaming the trace batch by batch with per-folio
state in flat arrays. The reference model (replay/model.py, replay/rules/)
stays the specification: each compiled function names the reference method it
mirrors. Limits: the rule list and the schema kinds are fixed here
(layout.py); a trace or reference that goes beyond them raises
:class:`Unsupported` and the caller replays with the reference engine.
"""

from . import cache  # noqa: F401  (sets NUMBA_CACHE_DIR before numba is imported)
from .driver import Unsupported, replay_compiled  # noqa: E402

__all__ = ["replay_compiled", "Unsupported"]
