"""The one exception type of chargetrace.

Every user-facing failure (bad trace, missing privilege, a kernel without a
probe) raises :class:`ChargetraceError` with a one-line message that names the
file or the problem; the CLI prints it and exits 2.
"""

from __future__ import annotations

__all__ = ["ChargetraceError"]


class ChargetraceError(Exception):
    """A failure the user can act on; ``str(err)`` is one line."""
