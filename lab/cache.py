"""The lab cache: keys and directory layout.

Layout under the cache root::

    kernel/<series>/<source version>-<key>/   source tree, kbuild/, and the artifacts
    rootfs/<suite>-<key>/                       debootstrap rootfs (+ venv with chargetrace's deps)
    runs/<series>/                              the last run's share (scripts, logs, trace)

A directory is complete only when its ``done.json`` stamp exists; an
interrupted build is resumed (make is incremental) rather than trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chargetrace.traces.errors import ChargetraceError

__all__ = ["RECIPE", "is_done", "kernel_key", "locked", "read_stamp", "rootfs_key", "write_stamp"]

#: Bump when the build procedure changes in a way the inputs below do not capture.
RECIPE = "chargetrace-lab/1"

_STAMP = "done.json"


def kernel_key(source_version: str, fragment: bytes) -> str:
    """12 hex digits identifying a kernel build: recipe, source package version, and
    the fragment's options (comments and blank lines do not count: editing a
    comment must not cost a kernel build)."""
    h = hashlib.sha256(f"{RECIPE}\n{source_version}\n".encode())
    h.update(_options_only(fragment))
    return h.hexdigest()[:12]


def _options_only(fragment: bytes) -> bytes:
    # "# CONFIG_X is not set" is an option, not a comment (Kconfig's own syntax).
    lines = [line.strip() for line in fragment.splitlines()]
    kept = [line for line in lines if line and (not line.startswith(b"#") or line.endswith(b"is not set"))]
    return b"\n".join(kept) + b"\n"


def rootfs_key(suite: str, debs: tuple[str, ...] | list[str], pip: tuple[str, ...] | list[str]) -> str:
    """12 hex digits identifying a rootfs: recipe, suite, Debian packages, pip requirements."""
    text = "\n".join([RECIPE, suite, " ".join(sorted(debs)), " ".join(sorted(pip))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def is_done(directory: Path) -> bool:
    """True if ``directory`` holds a completed build."""
    return (directory / _STAMP).is_file()


def write_stamp(directory: Path, info: dict[str, Any]) -> None:
    """Mark ``directory`` complete, recording ``info`` (versions, timings)."""
    tmp = directory / (_STAMP + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / _STAMP)


def read_stamp(directory: Path) -> dict[str, Any]:
    """The info recorded by :func:`write_stamp` (empty if none)."""
    try:
        return json.loads((directory / _STAMP).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def locked(directory: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if missing) for a build step.

    Two builds in one kernel tree corrupt each other's objects (seen: a lab
    test started while a manual build ran), so every build step takes this.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ChargetraceError(f"lab: {directory} is being built by another process") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
