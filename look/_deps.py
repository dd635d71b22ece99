"""Lazy imports of the optional ``look`` extra (duckdb, plotly, perfetto).

``replay`` and ``record`` never import these packages: each command that needs
one asks for it here, and a missing package becomes one ChargetraceError line
that says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from chargetrace.traces import ChargetraceError

__all__ = ["need"]


def need(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` or raise one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ChargetraceError(
            f"{feature} needs the Python package {top!r} ({exc}); install it with: pip install 'chargetrace[look]'"
        ) from None
