"""Running host commands for the lab: logged, timed, failures as ChargetraceError."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

__all__ = ["run", "tail"]


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file, joined with `` | `` (for one-line errors)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def run(
    argv: Sequence[str | Path],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> float:
    """Run ``argv``, appending its output to ``log``; return wall seconds.

    Raises :class:`ChargetraceError` naming the step and the log's last lines
    when the command fails or cannot be started.
    """
    args = [str(a) for a in argv]
    label = what or args[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {shlex.join(args)}\n")
        out.flush()
        try:
            rc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            raise ChargetraceError(f"lab: {label}: cannot run {args[0]}: {exc}") from exc
    if rc != 0:
        raise ChargetraceError(f"lab: {label} failed (exit {rc}); see {log}: {tail(log, 3)}")
    return time.monotonic() - t0
