"""Kernel config fragments: parsing, and checking a final ``.config`` against one.

A fragment line is ``CONFIG_X=value`` or ``# CONFIG_X is not set``; other
comments and blank lines are ignored. ``merge_config.sh`` silently drops symbols
the tree does not define (e.g. MEMCG_KMEM on 6.12, folded into MEMCG), so the
build checks the options that matter for the lab (:data:`REQUIRED`) explicitly.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

__all__ = ["DEBUG_VM_FRAGMENT_NAME", "DEBUG_VM_REQUIRED", "FRAGMENT_NAME", "REQUIRED", "check_config",
           "fragment_bytes", "parse_config"]

FRAGMENT_NAME = "hmm-lab.config"
#: The optional fragment of ``--debug-vm`` kernels, merged after :data:`FRAGMENT_NAME`.
DEBUG_VM_FRAGMENT_NAME = "debug-vm.config"

#: Options without which the lab cannot work; a build whose .config lacks one fails.
REQUIRED = {
    "CONFIG_DEVICE_PRIVATE": "y",
    "CONFIG_TEST_HMM": "m",
    "CONFIG_MEMCG": "y",
    "CONFIG_KPROBES": "y",
    "CONFIG_BPF_SYSCALL": "y",
    "CONFIG_BPF_EVENTS": "y",
    "CONFIG_IKHEADERS": "y",
    "CONFIG_9P_FS": "y",
    "CONFIG_NET_9P_VIRTIO": "y",
    "CONFIG_VIRTIO_PCI": "y",
    "CONFIG_TRANSPARENT_HUGEPAGE_MADVISE": "y",
    "CONFIG_GUP_TEST": "y",
}

#: What a ``--debug-vm`` build must have on top of :data:`REQUIRED`.
DEBUG_VM_REQUIRED = {"CONFIG_DEBUG_VM": "y"}

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def fragment_bytes(name: str = FRAGMENT_NAME) -> bytes:
    """A packaged config fragment (default ``lab/hmm-lab.config``)."""
    return resources.files("chargetrace.lab").joinpath(name).read_bytes()


def parse_config(text: str) -> dict[str, str]:
    """Map each symbol of a fragment or ``.config`` to its value; "is not set" maps to ``n``.

    A symbol given twice keeps its last value, as kconfig does.
    """
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            out[m.group(1)] = "n"
        elif line.startswith("#"):
            continue
        else:
            raise ChargetraceError(f"lab: config line {lineno} is not CONFIG_X=v or '# CONFIG_X is not set': {line!r}")
    return out


def check_config(final: Path | str, required: dict[str, str] = REQUIRED) -> list[str]:
    """The ``required`` options whose value in the final ``.config`` differs, as
    ``"CONFIG_X: wanted y, got n"`` strings (empty list = all good)."""
    text = final.read_text() if isinstance(final, Path) else final
    have = parse_config(text)
    return [
        f"{sym}: wanted {want}, got {have.get(sym, 'n')}"
        for sym, want in required.items()
        if have.get(sym, "n") != want
    ]
