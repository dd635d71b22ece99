"""The live recorder: a context-managed recording session.

``Recording(RecordConfig(...))`` sets everything up on ``__enter__`` (root
check, BCC, tracefs, headers, probe choice by trial attach, the final BPF
program, scope maps, the trace writer), :meth:`Recording.run` pumps events to
disk until the scope ends, the duration passes or SIGINT/SIGTERM arrives, and
``__exit__`` tears down (command killed if still running, cgroup removed,
writer closed so the trace is valid). A failed setup releases what it took.

Arming: every probe returns at once until one switch (the BPF ``armed``
array) is set, after the last probe attached; its CLOCK_MONOTONIC time is
``armed_ns`` and no row is older. So ``-p``, ``--cgroup`` and system-wide
recordings start consistent however long the attaching took.

Scopes: ``command`` (runs CMD in a fresh memcg created after the probes are
attached: ``scope.fresh``), ``pid``, ``cgroup`` and ``system``. Folio-level
rows and memcg counters are filtered in BPF by memcg id (read from the folio
or the tracepoint), faults/fork/exit by the scope's thread groups, closed
under fork. Memcgs created inside the scope and tasks moving in or out are
followed (:mod:`.scope`). Samples (usage + memory.stat) are taken at phases
``start`` (armed, before the command), ``exit`` (no task left, bounded wait)
and ``settled`` (after force_empty / memory.reclaim), or ``end`` when tasks
still ran. Limits: ``page_migration`` is recorded system-wide. A recorder
killed with SIGKILL keeps the segments already written (``<out>.partial/``,
one closed at least every ~2 s); its command dies with it
(PR_SET_PDEATHSIG) and the next recording removes its empty scope cgroup.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from chargetrace.traces import ChargetraceError, Scope, TraceMeta, TraceWriter

from .bccload import load_bcc
from .btf import load_vmlinux_btf
from .catalogue import (
    CATALOGUE,
    MAIN_SOURCE,
    Choice,
    attach_kprobes,
    capture_stderr,
    choose_probes,
    compile_cflags,
    item_tables,
)
from .cgroups import Memcg, create_child, memcg_at, memcg_of_pid, remove_stale_children
from .decode import EVENT_SIZE
from .diskwriter import DiskWriter
from .probecache import cached_choose, forget
from .scope import ScopeTracker
from .headers import ensure_tracefs, resolve_headers
from .kernel import KernelInfo, detect_era
from .transport import Transport, ringbuf_pages

__all__ = ["RecordConfig", "Recording", "RecordResult", "probe_table", "VERSION"]

try:
    VERSION = importlib.metadata.version("chargetrace")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.1.0"
# Decode when this many bytes are buffered or this much time passed.
_DECODE_BYTES = 1 << 20
_DECODE_SECONDS = 0.25
# Close a segment with what is buffered at least this often (quiet workloads).
_FLUSH_SECONDS = 1.0
# Rescan the scope's cgroup tree this often.
_RESCAN_SECONDS = 0.2


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
    #: Command line to store as provenance (the CLI passes sys.argv).
    argv: list[str] = field(default_factory=list)

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


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _setup_kernel() -> tuple[Any, KernelInfo]:
    bcc = load_bcc()
    tracefs = ensure_tracefs()
    btf = load_vmlinux_btf()
    headers = resolve_headers(btf)
    headers.apply()
    return bcc, KernelInfo(os.uname().release, btf, headers, tracefs)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ChargetraceError("recording needs root (BPF, tracefs, memory cgroups); run it with sudo")


def probe_table(events: set[str] | None = None) -> tuple[KernelInfo, list[Choice]]:
    """Trial-attach the catalogue on the running kernel (``chargetrace probes``)."""
    _require_root()
    bcc, kernel = _setup_kernel()
    return kernel, choose_probes(bcc, kernel, events)


def _shell_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG(SIGKILL): a recorder killed with SIGKILL must not leave
    # the traced command running unobserved in a cgroup nobody removes.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Recording:
    """One recording session (see the module docstring)."""

    def __init__(self, config: RecordConfig, *, stream: TextIO | None = None) -> None:
        self.config = config
        self.stream = stream or sys.stderr
        self._stop_reason = ""
        self._bpf: Any = None
        self._cgroup: Memcg | None = None
        self._created_cgroup = False
        self._scope: ScopeTracker | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: TraceWriter | None = None
        self._disk: DiskWriter | None = None
        self._transport: Transport | None = None
        self._tables: dict[int, dict[int, str]] = {}
        self._probe_names: dict[int, str] = {}
        self._drops_per_cpu: dict[str, int] = {}
        self._last_decode = time.monotonic()
        self._discard = False
        self.meta = TraceMeta()
        self.events = 0
        self.exit_status: int | None = None

    # -- setup -------------------------------------------------------------
    def __enter__(self) -> "Recording":
        # Handlers first: a signal during the (seconds long) probe trials must
        # end the session cleanly too, not vanish inside libbcc or raise
        # KeyboardInterrupt half-way through setup.
        self._handlers = {
            sig: signal.signal(sig, lambda s, f: self.stop(signal.Signals(s).name))
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            self._start()
        except BaseException:
            # A setup that did not finish leaves no trace: one that says
            # "nothing happened" would replay as balanced.
            self._discard = True
            self._teardown()
            self._restore_signals()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._teardown()
        finally:
            self._restore_signals()

    def _restore_signals(self) -> None:
        for sig, handler in getattr(self, "_handlers", {}).items():
            signal.signal(sig, handler)
        self._handlers = {}

    def _say(self, text: str) -> None:
        if self.config.status:
            self.stream.write(f"chargetrace: {text}\n")
            self.stream.flush()

    def _check_interrupted(self) -> None:
        if self._stop_reason:
            what = f"{self.config.command[0]} never ran" if self.config.command else "nothing was recorded"
            raise ChargetraceError(f"{self._stop_reason} during setup: {what}; no trace written")

    def _start(self) -> None:
        cfg = self.config
        cfg.validate()
        scope_kind = cfg.scope_kind
        _require_root()
        if scope_kind == "command" and not shutil.which(cfg.command[0]):
            raise ChargetraceError(f"{cfg.command[0]}: command not found")
        bcc, kernel = _setup_kernel()
        self._bcc, self._kernel = bcc, kernel
        era = detect_era(kernel)
        self._say("choosing probes (compile + load trials; cached per kernel build) ...")
        choices, key, cached = cached_choose(bcc, kernel, cfg.events, cfg.skip_how)
        self._check_interrupted()

        scope = Scope(kind=scope_kind)
        tgids: list[int] = []
        if scope_kind == "command":
            scope.command = list(cfg.command)
            own = memcg_of_pid("self")
            remove_stale_children(own)
            self._cgroup = create_child(own, f"chargetrace-{os.getpid()}")
            self._created_cgroup = True
            scope.fresh = True
        elif scope_kind == "pid":
            assert cfg.pid is not None
            scope.pid = cfg.pid
            self._cgroup = memcg_of_pid(cfg.pid)
            tgids.append(cfg.pid)
        elif scope_kind == "cgroup":
            assert cfg.cgroup is not None
            self._cgroup = memcg_at(cfg.cgroup)
            tgids.extend(self._cgroup.procs())
        if self._cgroup is not None:
            scope.cgroup_path = str(self._cgroup.path)
            scope.memcg = self._cgroup.id

        self._say("compiling the recorder and attaching its probes ...")
        try:
            perf = self._load(choices, scope_kind)
        except ChargetraceError:
            if not cached:
                raise
            # A cached choice that no longer attaches (kernel state changed in
            # a way the key does not see): try the probes again, once.
            forget(key)
            choices, key, cached = cached_choose(bcc, kernel, cfg.events, cfg.skip_how)
            perf = self._load(choices, scope_kind)
        self._check_interrupted()
        if scope_kind != "system":
            self._scope = ScopeTracker(self._bpf, self._cgroup, fresh=scope.fresh)
            self._scope.arm_config()
            for tgid in tgids:
                self._scope.add_tgid(tgid)
            self._scope.rescan()
        # The perf fallback gets the same total memory, split per CPU.
        self._transport = Transport(self._bpf, perf=perf, perf_pages=ringbuf_pages(cfg.ringbuf_mb / kernel.ncpus),
                                    ring_bytes=ringbuf_pages(cfg.ringbuf_mb) * 4096)

        transport = (f"perf buffer {cfg.ringbuf_mb / kernel.ncpus:g} MiB/CPU (wakeup_events=64)" if perf
                     else f"ring buffer {cfg.ringbuf_mb:g} MiB")
        self.meta = TraceMeta(
            recorder=f"chargetrace {VERSION} record",
            kernel_release=kernel.release,
            host=socket.gethostname(),
            era=era,
            probes=[c.as_meta() for c in choices],
            started_at=_now_iso(),
            scope=scope,
            page_size=os.sysconf("SC_PAGE_SIZE"),
            ncpus=kernel.ncpus,
            provenance={
                "command": " ".join(cfg.argv) if cfg.argv else "",
                "transport": transport,
                "headers": kernel.headers.kind,
                "bcc": getattr(bcc, "__version__", ""),
                "date": datetime.now(timezone.utc).date().isoformat(),
                "probe_trials": "cached" if cached else "run",
                "scope_follow": self._follow_probes(),
            },
        )
        self._writer = TraceWriter(cfg.output, self.meta)
        self._disk = DiskWriter(self._writer, self._probe_names, self._tables)
        self._check_interrupted()
        self._arm()
        self._sample("start")
        self._check_interrupted()
        if scope_kind == "command":
            self._spawn()

    def _follow_probes(self) -> dict[str, str]:
        have = {n: self._kernel.tracepoint_exists("cgroup", n) for n in ("cgroup_mkdir", "cgroup_attach_task")}
        return {n: (f"tp:cgroup:{n}" if ok else "none: no such tracepoint (tree rescans only)") for n, ok in have.items()}

    def _load(self, choices: list[Choice], scope_kind: str) -> bool:
        """Compile the final program and attach its kprobes; True = perf buffer."""
        cfg = self.config
        chosen = [c.variant for c in choices if c.variant is not None]
        if not chosen:
            raise ChargetraceError("no probe attaches on this kernel; see `chargetrace probes`")
        self._probe_names = {v.pid: v.probe for v in chosen}
        self._tables = item_tables(self._kernel)
        extra = [f"-DCT_RB_PAGES={ringbuf_pages(cfg.ringbuf_mb)}"]
        if scope_kind == "system":
            extra.append("-DCT_SCOPE_ALL=1")
        else:
            # cgroup tracepoints (v4.13): follow memcgs and moves (scope.py).
            for name, define in (("cgroup_mkdir", "CT_TP_CGMKDIR"), ("cgroup_attach_task", "CT_TP_CGATTACH")):
                if self._kernel.tracepoint_exists("cgroup", name):
                    extra.append(f"-D{define}=1")
        if self._bpf is not None:
            with capture_stderr():
                self._bpf.cleanup()
            self._bpf = None
        perf = cfg.transport == "perf"
        self._bpf = self._compile(chosen, extra, perf)
        if self._bpf is None and cfg.transport == "auto":
            perf = True
            self._bpf = self._compile(chosen, extra, perf)
        if self._bpf is None:
            raise ChargetraceError(f"the recorder's BPF program does not load: {self._compile_error}")
        for v in chosen:
            if v.attach:
                with capture_stderr():
                    try:
                        attach_kprobes(self._bpf, self._bcc, v)
                    except Exception as exc:
                        raise ChargetraceError(f"{v.probe}: attach failed after a good trial ({exc})") from None
        return perf

    def _arm(self) -> None:
        """Let events through: the clock is read first, so every row's ts_ns
        (bpf_ktime_get_ns, CLOCK_MONOTONIC) is >= armed_ns."""
        self.meta.armed_ns = time.monotonic_ns()
        self._bpf[b"armed"][ctypes.c_int(0)] = ctypes.c_uint(1)

    _compile_error = ""

    def _compile(self, chosen: list[Any], extra: list[str], perf: bool) -> Any:
        flags = compile_cflags(self._kernel, chosen, extra + (["-DCT_PERF=1"] if perf else []))
        with capture_stderr() as lines:
            try:
                return self._bcc.BPF(src_file=str(MAIN_SOURCE).encode(), cflags=flags)
            except Exception as exc:
                err = exc
        self._compile_error = next((ln for ln in lines if "error" in ln), str(err).splitlines()[0])
        return None

    def _spawn(self) -> None:
        """Start the command stopped on a FIFO, move it into the scope memcg
        and the tgid set, then let it exec. The trampoline shell does almost
        nothing after the move, so the scope sees the command from its exec.
        (A FIFO rather than an inherited pipe: dash cannot redirect fds >= 10
        and the recorder holds many BPF fds; nothing leaks into the command.)"""
        assert self._cgroup is not None and self._scope is not None
        tmpdir = tempfile.mkdtemp(prefix="chargetrace-")
        fifo = os.path.join(tmpdir, "go")
        os.mkfifo(fifo, 0o600)
        trampoline = 'f=$1; shift; read _ < "$f" || exit 125; exec "$@"'
        try:
            try:
                self._proc = subprocess.Popen(
                    ["/bin/sh", "-c", trampoline, "sh", fifo, *self.config.command],
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ChargetraceError(f"{self.config.command[0]}: cannot start ({exc.strerror})") from None
            self._scope.add_tgid(self._proc.pid)
            self._cgroup.add_pid(self._proc.pid)
            # Opening for write succeeds once the shell has opened for read.
            while True:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:
                    if self._proc.poll() is not None:
                        return
                    time.sleep(0.001)
            os.write(fd, b"\n")
            os.close(fd)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    # -- main loop ---------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        if not self._stop_reason:
            self._stop_reason = reason

    def run(self) -> RecordResult:
        cfg = self.config
        start = time.monotonic()
        next_status = start + 0.5
        next_flush = start + _FLUSH_SECONDS
        next_rescan = start + _RESCAN_SECONDS
        poll = cfg.poll_ms / 1000.0
        while not self._stop_reason:
            time.sleep(poll)
            self._pump()
            now = time.monotonic()
            if now >= next_flush:
                self._pump(force=True)
                assert self._disk is not None
                self._disk.put_flush()
                next_flush = now + _FLUSH_SECONDS
            if self._scope is not None and now >= next_rescan:
                self._scope.rescan()
                next_rescan = now + _RESCAN_SECONDS
            if cfg.status and now >= next_status:
                self._status(now - start)
                next_status = now + (0.5 if self.stream.isatty() else 5.0)
            if cfg.duration is not None and now - start >= cfg.duration:
                self.stop("duration")
            if self._proc is not None and self._proc.poll() is not None:
                self.stop("command exited")
            if cfg.pid is not None and not Path(f"/proc/{cfg.pid}").exists():
                self.stop("process exited")
        self._finish()
        assert self._writer is not None
        return RecordResult(self._writer.target, self.events, int(self.meta.drops["total"]), self.exit_status, self.meta)

    def _pump(self, force: bool = False) -> None:
        assert self._transport is not None and self._disk is not None
        self._transport.poll()
        now = time.monotonic()
        windows = self._transport.drops()
        pending = (self._transport.events_seen - self.events)
        # Rows the recorder adds itself (lost, samples) must come after every
        # event already delivered: decode first whenever one is due.
        if force or windows or pending * EVENT_SIZE >= _DECODE_BYTES or (pending and now - self._last_decode >= _DECODE_SECONDS):
            raw = self._transport.drain()
            if raw:
                self._disk.put_raw(raw)
                self.events += len(raw) // EVENT_SIZE
            self._last_decode = now
        if windows:
            total = self.meta.drops.get("total", 0)
            for w in windows:
                total += w.count
                key = str(w.cpu)
                self._drops_per_cpu[key] = self._drops_per_cpu.get(key, 0) + w.count
            self.meta.drops = {"total": total, "per_cpu": dict(self._drops_per_cpu)}
            self._disk.put_columns({
                "ts_ns": [w.ts_ns for w in windows],
                "cpu": [w.cpu for w in windows],
                "kind": ["lost"] * len(windows),
                "probe": ["recorder"] * len(windows),
                "value": [w.count for w in windows],
                "span_ns": [w.span_ns for w in windows],
                "pid": [os.getpid()] * len(windows),
            })

    def _status(self, elapsed: float) -> None:
        assert self._writer is not None and self._transport is not None
        rate = self._transport.events_seen / elapsed if elapsed > 0 else 0.0
        size = self._writer.bytes_on_disk
        line = (
            f"chargetrace: {elapsed:6.1f}s  {self._transport.events_seen:>10,} events  {rate:>10,.0f}/s  "
            f"drops {self.meta.drops['total']:,}  {size / 1e6:.1f} MB"
        )
        if self.stream.isatty():
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _sample(self, phase: str) -> dict[int, dict[str, int]]:
        """Write one phase's sample set (usage + memstat per scope memcg)."""
        if self._scope is None or self._disk is None:
            return {}
        self._pump(force=True)  # keep seq order = time order around the sample
        self._scope.rescan()
        cols, stats = self._scope.sample()
        if cols["kind"]:
            self.meta.scope.phases[phase] = self._disk.rows
            self._disk.put_columns(cols)
        self.meta.scope.memcgs = list(self._scope.entries.values())
        return stats

    def _wait_tasks(self, deadline: float) -> list[dict[str, Any]]:
        """Keep recording until no task is left in the scope, or the deadline."""
        assert self._scope is not None
        while True:
            self._pump()
            self._scope.rescan()
            left = self._scope.tasks()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(self.config.poll_ms / 1000.0)

    def _linger(self, seconds: float) -> None:
        # Late work of exiting tasks (exit_mmap uncharges, the per-CPU charge
        # stock flush) lands shortly after they are reaped.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(self.config.poll_ms / 1000.0)
            self._pump()

    def _finish(self) -> None:
        """Stop the command if needed, wait for the scope's tasks, sample,
        settle, drain everything."""
        cfg, scope = self.config, self.meta.scope
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self.exit_status = scope.exit_status = _shell_status(self._proc.returncode)
        if self._scope is not None:
            ended = self._proc is not None or (cfg.pid is not None and not Path(f"/proc/{cfg.pid}").exists())
            wait = cfg.exit_wait if ended else 0.0
            left = self._wait_tasks(time.monotonic() + wait)
            scope.tasks_left = left
            scope.exited = not left
            if left and self._created_cgroup:
                # Our memcg must go; what outlived the bound is reported, then killed.
                self._scope.kill_left()
            self._linger(cfg.settle_wait)
            self._sample("exit" if scope.exited else "end")
            scope.oom_kills = self._scope.oom_kills()
            scope.moved_out = self._scope.moved_out()
            scope.unseen_fault_share = self._scope.unseen_fault_share()
            if self._created_cgroup and self._cgroup is not None:
                self._settle()
        else:
            scope.unseen_fault_share = 0.0
        self._pump(force=True)
        self._pump(force=True)
        self.meta.provenance["stopped_by"] = self._stop_reason

    def _settle(self) -> None:
        assert self._cgroup is not None
        result = self._cgroup.settle()
        self.meta.scope.settled = result.method
        time.sleep(self.config.poll_ms / 1000.0)
        stats = self._sample("settled")
        root = stats.get(self._cgroup.id, {})
        # v1 memory.stat keys are local; total_* cover the subtree.
        total = {k[6:]: v for k, v in root.items() if k.startswith("total_")}
        if "kmem.usage" in root:
            total["kmem.usage"] = root["kmem.usage"]
        try:
            usage: int | None = self._cgroup.usage()
        except (OSError, ValueError):
            usage = None
        assert self._scope is not None
        self.meta.scope.settle = self._scope.settle_report(result.method, result.done, result.error, usage,
                                                           total or root)

    # -- teardown ----------------------------------------------------------
    def _teardown(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._bpf is not None:
            with capture_stderr():
                self._bpf.cleanup()
            self._bpf = None
        if self._cgroup is not None and self._created_cgroup:
            if self._scope is not None:
                self._scope.kill_left()
                # Children the workload left behind, deepest first.
                for child in reversed(self._cgroup.descendants()):
                    child.remove(timeout=0.5)
            self._cgroup.remove()
            self._created_cgroup = False
        if self._disk is not None:
            disk, self._disk = self._disk, None
            try:
                disk.close()
            finally:
                self._close_writer()
        else:
            self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is None or self._writer.closed:
            return
        if self._discard:
            shutil.rmtree(self._writer.segment_dir, ignore_errors=True)
            self._writer.closed = True
            return
        self.meta.ended_at = _now_iso()
        self._writer.close()
