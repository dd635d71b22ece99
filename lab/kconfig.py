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

__all__ = [
    "DEBUG_VM_FRAGMENT_NAME", "DEBUG_VM_REQUIRED", "FRAGMENT_NAME", "REQUIRED", "check_config", "fragment_bytes",
    "parse_config", "required_options", "series_fragment_bytes", "series_fragment_name",
]

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


def series_fragment_name(series: str) -> str:
    """File name of the per-series fragment merged after the common one, e.g. ``hmm-lab-5.10.config``."""
    return f"hmm-lab-{series}.config"


def series_fragment_bytes(series: str) -> bytes | None:
    """The packaged per-series fragment of ``series``, or None if that series needs none.

    Only a series that has one gets it in its cache key: the common fragment's bytes, and so the keys
    of the series without one (6.1, 6.12), stay what they were.
    """
    res = resources.files("chargetrace.lab").joinpath(series_fragment_name(series))
    return res.read_bytes() if res.is_file() else None


def required_options(tree: Path) -> dict[str, str]:
    """:data:`REQUIRED` as it applies to the kernel source ``tree``, found by looking at the tree.

    ``CONFIG_GUP_TEST`` is needed only by an hmm-tests that runs ``hmm_gup_test`` (it opens
    ``/sys/kernel/debug/gup_test``); older trees have neither the test nor the option (it was
    ``CONFIG_GUP_BENCHMARK`` before 9c84f229268f "mm/gup_benchmark: rename to mm/gup_test", 5.11).
    """
    from .kernel import hmm_tests_dir  # kernel.py imports this module

    want = dict(REQUIRED)
    if "gup_test" not in (hmm_tests_dir(tree) / "hmm-tests.c").read_text(errors="replace"):
        del want["CONFIG_GUP_TEST"]
    return want


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
