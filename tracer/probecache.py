"""Probe trial results cached per kernel build.

Choosing probes (:func:`.trials.choose_probes`) compiles and loads the BPF
program several times: 8-13 s on a 2-core machine, minutes under QEMU TCG.
The outcome depends only on the kernel build, its loaded modules (a driver
callback such as ``dmirror_devmem_fault`` exists only while test_hmm is
loaded), the BPF sources, BCC and the options asked for, so it is cached
under ``$XDG_CACHE_HOME/chargetrace/probes/`` (``~/.cache`` when unset) with
a key hashed from all of those. A build is told apart by its release, its
``/proc/version`` line and its GNU build id (``/sys/kernel/notes``).

Limits: the cache is trusted when the key matches; the recorder drops the
entry and tries again when a cached choice then fails to attach
(:func:`forget`). Unwritable cache directories are ignored (no cache).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .bccload import cache_dir
from .catalogue import BPF_DIR, CATALOGUE, VARIANTS, Choice
from .trials import choose_probes
from .kernel import KernelInfo

__all__ = ["cache_key", "cached_choose", "fresh_choose", "forget", "CACHE_VERSION"]

#: Bump when the stored layout changes.
CACHE_VERSION = 1

_SOURCES = (Path(__file__).with_name("catalogue.py"), Path(__file__).with_name("kernel.py"))


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _modules() -> bytes:
    # Names only: use counts and addresses change without changing what attaches.
    names = sorted(line.split(maxsplit=1)[0] for line in _read("/proc/modules").decode("ascii", "replace").splitlines()
                   if line.strip())
    return "\n".join(names).encode()


def cache_key(kernel: KernelInfo, only: set[str] | None, skip_how: frozenset[str], bcc_version: str = "") -> str:
    """Hex digest naming one (kernel build, modules, sources, options) state."""
    h = hashlib.sha256()
    for part in (
        str(CACHE_VERSION).encode(),
        kernel.release.encode(),
        _read("/proc/version"),
        _read("/sys/kernel/notes"),  # holds the GNU build id note
        _modules(),
        bcc_version.encode(),
        ",".join(sorted(only or ())).encode(),
        ",".join(sorted(skip_how)).encode(),
        *(_read(p) for p in sorted(BPF_DIR.glob("*.[ch]"))),
        *(_read(p) for p in _SOURCES),
    ):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _path(key: str) -> Path:
    return cache_dir() / "probes" / f"{key}.json"


def _load(key: str) -> list[Choice] | None:
    try:
        data = json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None
    kinds = {e.name: e.kind for e in CATALOGUE}
    out: list[Choice] = []
    try:
        for entry in data["choices"]:
            variant = None
            if entry["pid"]:
                variant = VARIANTS[int(entry["pid"]) - 1]
                if variant.probe != entry["probe"]:
                    return None  # the catalogue changed under the same key
            if entry["event"] not in kinds:
                return None
            out.append(Choice(entry["event"], kinds[entry["event"]], variant, list(entry["reasons"])))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return out


def _store(key: str, choices: list[Choice]) -> None:
    data: dict[str, Any] = {"choices": [
        {"event": c.event, "pid": c.variant.pid if c.variant else 0,
         "probe": c.variant.probe if c.variant else None, "reasons": c.reasons}
        for c in choices
    ]}
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def forget(key: str) -> None:
    """Drop a cached entry (a cached choice failed to attach)."""
    try:
        _path(key).unlink()
    except OSError:
        pass


def cached_choose(bcc: Any, kernel: KernelInfo, only: set[str] | None = None,
                  skip_how: frozenset[str] = frozenset()) -> tuple[list[Choice], str, bool]:
    """(choices, cache key, whether they came from the cache)."""
    key = cache_key(kernel, only, skip_how, getattr(bcc, "__version__", ""))
    cached = _load(key)
    if cached is not None:
        return cached, key, True
    choices = choose_probes(bcc, kernel, only, skip_how)
    _store(key, choices)
    return choices, key, False


def fresh_choose(bcc: Any, kernel: KernelInfo, only: set[str] | None = None,
                 skip_how: frozenset[str] = frozenset()) -> list[Choice]:
    """Run the trials whatever the cache holds, and store the outcome
    (``chargetrace probes``: a diagnosis that also refreshes the cache)."""
    choices = choose_probes(bcc, kernel, only, skip_how)
    _store(cache_key(kernel, only, skip_how, getattr(bcc, "__version__", "")), choices)
    return choices
