"""Find and import BCC's Python bindings (``python3-bpfcc``) from any interpreter.

BCC is not on PyPI (PyPI's ``bcc`` is an unrelated lattice package), so a
pyenv or venv Python cannot ``import bcc`` even when Debian's package is
installed. Debian's bindings are plain ctypes over ``libbcc.so.0`` and do not
depend on the CPython ABI, so we expose *only* that one package: a cache
directory holding a single symlink ``bcc -> /usr/lib/python3/dist-packages/bcc``
is put at the end of ``sys.path``. The rest of dist-packages stays hidden.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from chargetrace.traces import ChargetraceError

__all__ = ["load_bcc", "MIN_BCC_VERSION", "DIST_PACKAGES_DIRS", "cache_dir"]

#: Oldest BCC with BPF_RINGBUF_OUTPUT, ring_buffer_consume and raw tracepoints.
MIN_BCC_VERSION = (0, 16)
#: Where Debian/Ubuntu install python3-bpfcc (and Fedora python3-bcc).
DIST_PACKAGES_DIRS = (
    Path("/usr/lib/python3/dist-packages"),
    Path("/usr/lib/python3/site-packages"),
)

_INSTALL_HINT = "apt-get install python3-bpfcc (Fedora: dnf install python3-bcc)"


def cache_dir() -> Path:
    """chargetrace's cache directory (``$XDG_CACHE_HOME/chargetrace``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chargetrace"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _shim(dist_bcc: Path) -> Path:
    shim = cache_dir() / "bcc-shim"
    link = shim / "bcc"
    shim.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and os.readlink(link) == str(dist_bcc)):
        tmp = shim / f".bcc.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(dist_bcc)
        os.replace(tmp, link)
    return shim


def load_bcc() -> ModuleType:
    """Import ``bcc``, through the single-package shim when needed.

    Raises :class:`ChargetraceError` naming the package to install when no
    usable BCC exists, or when it is older than :data:`MIN_BCC_VERSION`.
    """
    try:
        bcc = importlib.import_module("bcc")
    except ImportError:
        bcc = None
    if bcc is None or not hasattr(bcc, "BPF"):
        # A foreign "bcc" (the PyPI lattice package) must not shadow Debian's.
        sys.modules.pop("bcc", None)
        for dist in DIST_PACKAGES_DIRS:
            if (dist / "bcc" / "__init__.py").is_file():
                shim = str(_shim(dist / "bcc"))
                if shim not in sys.path:
                    sys.path.insert(0, shim)
                try:
                    bcc = importlib.import_module("bcc")
                except Exception as exc:  # libbcc.so missing, ctypes errors, ...
                    raise ChargetraceError(
                        f"cannot import BCC from {dist / 'bcc'} ({type(exc).__name__}: {exc}); "
                        f"reinstall it: {_INSTALL_HINT}"
                    ) from None
                break
        else:
            raise ChargetraceError(f"BCC Python bindings not found; install them: {_INSTALL_HINT}")
    version = getattr(bcc, "__version__", "0")
    if _version_tuple(version) < MIN_BCC_VERSION:
        raise ChargetraceError(
            f"BCC {version} is too old (need >= {'.'.join(map(str, MIN_BCC_VERSION))}); {_INSTALL_HINT}"
        )
    return bcc
