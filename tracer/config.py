"""What a recording is asked to do (:class:`RecordConfig`), what it gives
back (:class:`RecordResult`), and the kernel set-up every recorder command
shares (root check, BCC, tracefs, BTF, headers)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargetrace.traces import ChargetraceError, TraceMeta

from .bccload import load_bcc
from .btf import load_vmlinux_btf
from .catalogue import CATALOGUE, Choice
from .headers import ensure_tracefs, resolve_headers
from .kernel import KernelInfo
from .probecache import fresh_choose

__all__ = ["RecordConfig", "RecordResult", "probe_table", "require_root", "setup_kernel"]


@dataclass
class RecordConfig:
    """What ``chargetrace record`` was asked to do."""

    output: Path
    command: list[str] = field(default_factory=list)
    pid: int | None = None
    cgroup: str | None = None
    duration: float | None = None
    ringbuf_mb: float = 32.0
    #: ``auto`` (ring buffer, else perf), ``ringbuf`` or ``perf``.
    transport: str = "auto"
    poll_ms: float = 10.0
    #: Print a status line on stderr.
    status: bool = True
    #: Seconds to keep recording after the command exits, before settling.
    settle_wait: float = 0.2
    #: Seconds to wait, after the main command exits, for the rest of the
    #: scope's tasks to go (then they are listed in scope.tasks_left).
    exit_wait: float = 2.0
    #: Restrict to these logical events (names in tracer/catalogue.py).
    events: set[str] | None = None
    #: Attach kinds not to use (exercises the fallbacks, e.g. raw_tp).
    skip_how: frozenset[str] = frozenset()
    #: Keep kernel addresses in folio/folio_new (the writer hides them by default).
    raw_pointers: bool = False
    #: Command line to store as provenance (the CLI passes sys.argv).
    argv: list[str] = field(default_factory=list)
    #: memcg counter tracepoints update only the in-kernel ledger; their rows
    #: are written as periodic per-(memcg, item) deltas (tracer/ledger.py).
    aggregate_counters: bool = False
    #: Try a record the ring refuses once more
    #: (off only to measure the transport without them: bench/).
    rescue: bool = True

    def validate(self) -> None:
        """Usage errors, before anything is set up."""
        known = {e.name for e in CATALOGUE}
        unknown = sorted((self.events or set()) - known)
        if unknown:
            raise ChargetraceError(f"--events: unknown event {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if self.exit_wait < 0 or (self.duration is not None and self.duration <= 0):
            raise ChargetraceError("--duration and --exit-wait must be positive")
        _ = self.scope_kind

    @property
    def scope_kind(self) -> str:
        given = [k for k, v in (("command", self.command), ("pid", self.pid), ("cgroup", self.cgroup)) if v]
        if len(given) > 1:
            raise ChargetraceError(f"choose one scope, not {' and '.join(given)}")
        return given[0] if given else "system"


@dataclass
class RecordResult:
    path: Path
    events: int
    drops: int
    exit_status: int | None
    meta: TraceMeta



def setup_kernel() -> tuple[Any, KernelInfo]:
    bcc = load_bcc()
    tracefs = ensure_tracefs()
    btf = load_vmlinux_btf()
    headers = resolve_headers(btf)
    headers.apply()
    return bcc, KernelInfo(os.uname().release, btf, headers, tracefs)


def require_root() -> None:
    if os.geteuid() != 0:
        raise ChargetraceError("recording needs root (BPF, tracefs, memory cgroups); run it with sudo")


def probe_table(events: set[str] | None = None) -> tuple[KernelInfo, list[Choice]]:
    """Trial-attach the catalogue on the running kernel (``chargetrace probes``);
    the outcome also refreshes the recorder's trial cache."""
    require_root()
    bcc, kernel = setup_kernel()
    return kernel, fresh_choose(bcc, kernel, events)
