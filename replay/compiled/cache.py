"""Where numba keeps the compiled engine's machine code between runs.

numba compiles the engine on first use (seconds) and, with ``cache=True``,
writes the result next to the source by default: a site-packages folder a
user cannot write to. ``NUMBA_CACHE_DIR`` (read by numba when it is imported)
moves it; unless the user set it, it is ``$XDG_CACHE_HOME/chargetrace/numba``
(``~/.cache/chargetrace/numba``), so later replays only load the cached code.
This module must be imported before numba (replay/compiled/__init__.py does).

numba invalidates a cached function only when its own file changes, not when
a helper it calls from another module does: the cache folder is therefore
named after a digest of every source of this package, so a changed engine
never runs stale machine code.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__all__ = ["JIT", "INLINE", "LOOP", "cache_dir"]


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chargetrace" / "numba" / _sources_digest()


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir())
    if "numba" in sys.modules:  # imported before us (a test, a notebook): numba read its config already
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

#: Options of every compiled function: no Python objects, cached on disk.
JIT = {"cache": True, "nogil": True, "boundscheck": False}
#: Helpers called per event. Not numba's inline="always": it copies the IR of
#: every callee into every caller and took minutes and GiBs to compile this
#: engine; LLVM inlines the small helpers into the loop by itself.
INLINE = dict(JIT, _nrt=False)
#: The per-event loop runs without numba's reference counting: it allocates
#: nothing, and with it every use of the state tuple paid atomic increments
#: (measured on the earlier prototype: 1,090 ns per event with it, 4.8 ns without).
LOOP = dict(JIT, _nrt=False)
