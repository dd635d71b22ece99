"""Properties of tracer/bpf/recorder.c every probe must keep (source checks;
the live tests load and run the program)."""

from __future__ import annotations

import re

from chargetrace.tracer.catalogue import MAIN_SOURCE

SRC = MAIN_SOURCE.read_text()

# Probe entry points: BCC tracepoint/raw-tp/fentry macros and kprobe functions.
_ENTRY = re.compile(
    r"^\s*(?:TRACEPOINT_PROBE\([^)]*\)|RAW_TRACEPOINT_PROBE\([^)]*\)|KFUNC_PROBE\([^)]*\)|KRETFUNC_PROBE\([^)]*\)"
    r"|int (ct_k\w+)\(struct pt_regs \*ctx\))\s*\\?\s*\n?\s*\{\s*\\?\s*\n?(.*?)(?:;)",
    re.M | re.S,
)


def _entries() -> list[tuple[str, str]]:
    out = []
    for m in _ENTRY.finditer(SRC):
        head = m.group(0).split("{")[0].strip()
        first = m.group(2).replace("\\", "").strip()
        out.append((head, first))
    return out


def test_every_probe_checks_the_arming_switch_first() -> None:
    entries = _entries()
    assert len(entries) >= 40  # every section, not a regex that matches nothing
    late = [head for head, first in entries if first != "CT_GATE()"]
    assert not late, f"probes that do not start with CT_GATE(): {late}"


def test_int_returns_are_sign_extended() -> None:
    # PT_REGS_RC is the raw 64-bit register; an int-returning callee leaves its
    # upper half zero, so -ENOMEM would read as 4294967284 without the cast.
    uses = re.findall(r"(\([^()]*\))?\s*PT_REGS_RC\(ctx\)", SRC)
    assert uses, "no PT_REGS_RC use found"
    assert all(cast in ("(int)", "(u32)") for cast in uses), uses
