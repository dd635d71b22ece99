"""The recorder's BPF program: compile with the chosen variants, attach, arm.

Every probe in tracer/bpf/recorder.c returns at once until :meth:`Program.arm`
sets the one switch (the ``armed`` array), after the last kprobe attached
(BCC attaches tracepoints at load, kprobes one by one after it). The time of
arming is read before the switch flips, so no row is older than it.

In scoped recordings the program also carries the cgroup tracepoints that
follow the scope (``cgroup:cgroup_mkdir``, ``cgroup:cgroup_attach_task``,
v4.13 ed1777de2541 "cgroup: add tracepoints for basic operations") when
tracefs has them; without them the scope is followed by tree rescans only.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from chargetrace.traces import ChargetraceError

from .catalogue import MAIN_SOURCE, Choice, item_tables
from .kernel import KernelInfo
from .trials import attach_kprobes, capture_stderr, compile_cflags
from .transport import ringbuf_pages

__all__ = ["Program", "FOLLOW_TRACEPOINTS"]

#: cgroup tracepoint -> the define enabling its section.
FOLLOW_TRACEPOINTS = {"cgroup_mkdir": "CT_TP_CGMKDIR", "cgroup_attach_task": "CT_TP_CGATTACH"}


class Program:
    """One loaded recorder program (``bpf`` is BCC's object once loaded)."""

    def __init__(self, bcc: Any, kernel: KernelInfo) -> None:
        self.bcc = bcc
        self.kernel = kernel
        self.bpf: Any = None
        self.probe_names: dict[int, str] = {}
        self.tables: dict[int, dict[int, str]] = {}
        self._error = ""

    def follow_probes(self) -> dict[str, str]:
        return {n: (f"tp:cgroup:{n}" if self.kernel.tracepoint_exists("cgroup", n)
                    else "none: no such tracepoint (tree rescans only)") for n in FOLLOW_TRACEPOINTS}

    def load(self, choices: list[Choice], scope_kind: str, ringbuf_mb: float, transport: str) -> bool:
        """Compile and load the chosen variants, attach the kprobes; True when
        the perf buffer is used (``transport`` auto falls back to it)."""
        chosen = [c.variant for c in choices if c.variant is not None]
        if not chosen:
            raise ChargetraceError("no probe attaches on this kernel; see `chargetrace probes`")
        self.cleanup()
        self.probe_names = {v.pid: v.probe for v in chosen}
        self.tables = item_tables(self.kernel)
        extra = [f"-DCT_RB_PAGES={ringbuf_pages(ringbuf_mb)}"]
        if scope_kind == "system":
            extra.append("-DCT_SCOPE_ALL=1")
        else:
            extra += [f"-D{d}=1" for n, d in FOLLOW_TRACEPOINTS.items() if self.kernel.tracepoint_exists("cgroup", n)]
        perf = transport == "perf"
        self.bpf = self._compile(chosen, extra, perf)
        if self.bpf is None and transport == "auto":
            perf = True
            self.bpf = self._compile(chosen, extra, perf)
        if self.bpf is None:
            raise ChargetraceError(f"the recorder's BPF program does not load: {self._error}")
        for v in chosen:
            if v.attach:
                with capture_stderr():
                    try:
                        attach_kprobes(self.bpf, self.bcc, v)
                    except Exception as exc:
                        raise ChargetraceError(f"{v.probe}: attach failed after a good trial ({exc})") from None
        return perf

    def _compile(self, chosen: list[Any], extra: list[str], perf: bool) -> Any:
        flags = compile_cflags(self.kernel, chosen, extra + (["-DCT_PERF=1"] if perf else []))
        with capture_stderr() as lines:
            try:
                return self.bcc.BPF(src_file=str(MAIN_SOURCE).encode(), cflags=flags)
            except Exception as exc:
                err = exc
        self._error = next((ln for ln in lines if "error" in ln), str(err).splitlines()[0])
        return None

    def arm(self) -> int:
        """Let events through; returns armed_ns. The clock is read first, so
        every row's ts_ns (bpf_ktime_get_ns, CLOCK_MONOTONIC) is >= it."""
        armed_ns = time.monotonic_ns()
        self.bpf[b"armed"][ctypes.c_int(0)] = ctypes.c_uint(1)
        return armed_ns

    def cleanup(self) -> None:
        if self.bpf is not None:
            with capture_stderr():
                self.bpf.cleanup()
            self.bpf = None
