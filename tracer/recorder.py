"""The live recorder: a context-managed recording session.

``Recording(RecordConfig(...))`` sets everything up on ``__enter__`` (root
check, BCC, tracefs, headers, probe choice by trial attach, the final BPF
program, scope maps, the trace writer), :meth:`Recording.run` pumps events to
disk until the scope ends, the duration passes or SIGINT/SIGTERM arrives, and
``__exit__`` tears down (command killed if still running, cgroup removed,
writer closed so the trace is valid). A failed setup releases what it took.

Scopes: ``command`` (runs CMD in a fresh memcg created after the probes are
attached: ``scope.fresh``), ``pid``, ``cgroup`` and ``system``. Folio-level
rows and memcg counters are filtered in BPF by memcg id (read from the folio
or the tracepoint), faults/fork/exit by the scope's thread groups, closed
under fork. Limits: ``--cgroup`` seeds the thread groups from cgroup.procs
at start only (plus their forks); ``-p`` follows the memcg the process was in
at start (a later move is not followed); ``page_migration`` is recorded
system-wide. A recorder killed with SIGKILL keeps the segments already
written (``<out>.partial/``); its command dies with it (PR_SET_PDEATHSIG) and
the next recording removes its empty scope cgroup.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from chargetrace.traces import ChargetraceError, Scope, TraceMeta, TraceWriter

from .bccload import load_bcc
from .btf import load_vmlinux_btf
from .catalogue import (
    MAIN_SOURCE,
    Choice,
    attach_kprobes,
    capture_stderr,
    choose_probes,
    compile_cflags,
    item_tables,
)
from .cgroups import Memcg, create_child, memcg_at, memcg_of_pid, remove_stale_children
from .decode import EVENT_SIZE, decode
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
    #: Restrict to these logical events (names in tracer/catalogue.py).
    events: set[str] | None = None
    #: Attach kinds not to use (exercises the fallbacks, e.g. raw_tp).
    skip_how: frozenset[str] = frozenset()
    #: Keep kernel addresses in folio/folio_new (the writer hides them by default).
    raw_pointers: bool = False
    #: Command line to store as provenance (the CLI passes sys.argv).
    argv: list[str] = field(default_factory=list)

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


class _DiskWriter:
    """Decodes and writes on its own thread, in arrival order.

    Parquet writing and decoding took ~75 % of the recorder's time inline,
    during which nobody read the ring buffer (it overflowed under a
    fault-heavy task). pyarrow and numpy release the GIL for the heavy parts,
    so the reading loop keeps running while this thread works. Everything
    for the trace (decoded events, lost and usage rows) goes through the one
    queue, so rows keep their order.
    """

    def __init__(self, writer: TraceWriter, probe_names: dict[int, str], tables: dict[int, dict[int, str]]) -> None:
        self.writer = writer
        self._probe_names = probe_names
        self._tables = tables
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chargetrace-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without work; the error is raised in put()/close()
            what, payload = item
            try:
                cols = decode(payload, self._probe_names, self._tables) if what == "raw" else payload
                self.writer.append_columns(cols)
            except BaseException as exc:  # handed to the main thread
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, ChargetraceError):
                raise err
            raise ChargetraceError(f"writing the trace failed: {type(err).__name__}: {err}") from None

    def put_raw(self, raw: bytes) -> None:
        self._check()
        self._queue.put(("raw", raw))

    def put_columns(self, cols: dict[str, Any]) -> None:
        self._check()
        self._queue.put(("cols", cols))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Write everything queued (the writer itself is closed by the caller)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._check()


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: TraceWriter | None = None
        self._disk: _DiskWriter | None = None
        self._transport: Transport | None = None
        self._tables: dict[int, dict[int, str]] = {}
        self._probe_names: dict[int, str] = {}
        self._drops_per_cpu: dict[str, int] = {}
        self._last_decode = time.monotonic()
        self._pending_bytes = 0
        self.meta = TraceMeta()
        self.events = 0
        self.exit_status: int | None = None

    # -- setup -------------------------------------------------------------
    def __enter__(self) -> "Recording":
        # Handlers first: a SIGINT during the (seconds long) probe trials must
        # end the session cleanly too, not vanish inside libbcc or raise
        # KeyboardInterrupt half-way through setup.
        self._handlers = {
            sig: signal.signal(sig, lambda s, f: self.stop(signal.Signals(s).name))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._start()
        except BaseException:
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

    def _start(self) -> None:
        cfg = self.config
        scope_kind = cfg.scope_kind
        _require_root()
        if scope_kind == "command" and not shutil.which(cfg.command[0]):
            raise ChargetraceError(f"{cfg.command[0]}: command not found")
        bcc, kernel = _setup_kernel()
        self._bcc, self._kernel = bcc, kernel
        era = detect_era(kernel)
        choices = choose_probes(bcc, kernel, cfg.events, cfg.skip_how)
        chosen = [c.variant for c in choices if c.variant is not None]
        if not chosen:
            raise ChargetraceError("no probe attaches on this kernel; see `chargetrace probes`")
        self._probe_names = {v.pid: v.probe for v in chosen}
        self._tables = item_tables(kernel)

        scope = Scope(kind=scope_kind)
        memcgs: list[int] = []
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
            memcgs.append(scope.memcg)

        perf = cfg.transport == "perf"
        extra = [f"-DCT_RB_PAGES={ringbuf_pages(cfg.ringbuf_mb)}"]
        if scope_kind == "system":
            extra.append("-DCT_SCOPE_ALL=1")
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
                        attach_kprobes(self._bpf, bcc, v)
                    except Exception as exc:
                        raise ChargetraceError(f"{v.probe}: attach failed after a good trial ({exc})") from None
        for mid in memcgs:
            self._bpf[b"scope_memcg"][ctypes.c_ulonglong(mid)] = ctypes.c_ubyte(1)
        for tgid in tgids:
            self._bpf[b"scope_tgid"][ctypes.c_uint(tgid)] = ctypes.c_ubyte(1)
        # The perf fallback gets the same total memory, split per CPU.
        self._transport = Transport(self._bpf, perf=perf, perf_pages=ringbuf_pages(cfg.ringbuf_mb / kernel.ncpus),
                                    ring_bytes=ringbuf_pages(cfg.ringbuf_mb) * 4096)

        transport = f"perf buffer {cfg.ringbuf_mb / kernel.ncpus:g} MiB/CPU (wakeup_events=64)" if perf else f"ring buffer {cfg.ringbuf_mb:g} MiB"
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
            },
        )
        self._writer = TraceWriter(cfg.output, self.meta, raw_pointers=cfg.raw_pointers)
        self._disk = _DiskWriter(self._writer, self._probe_names, self._tables)
        self._sample_usage()
        if scope_kind == "command" and not self._stop_reason:
            self._spawn()

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
        assert self._cgroup is not None
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
            self._bpf[b"scope_tgid"][ctypes.c_uint(self._proc.pid)] = ctypes.c_ubyte(1)
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
        poll = cfg.poll_ms / 1000.0
        while not self._stop_reason:
            time.sleep(poll)
            self._pump()
            now = time.monotonic()
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
        # Rows the recorder adds itself (lost, usage) must come after every
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

    def _sample_usage(self) -> None:
        if self._cgroup is None or self._writer is None:
            return
        if self._transport is not None:
            self._pump(force=True)  # keep seq order = time order around the sample
        try:
            value = self._cgroup.usage()
        except (OSError, ValueError):
            return
        f = self._cgroup.usage_file
        assert self._disk is not None
        self._disk.put_columns({
            "ts_ns": [time.monotonic_ns()],
            "kind": ["usage"],
            "probe": [f"sample:{f}"],
            "memcg": [self.meta.scope.memcg],
            "item": [f],
            "value": [value],
            "pid": [os.getpid()],
        })

    def _finish(self) -> None:
        """Stop the command if needed, settle its memcg, drain everything."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self.exit_status = self._proc.returncode
            self.meta.scope.exited = True
            # Late work of the exiting task (exit_mmap uncharges) and the
            # per-CPU charge stock flush land shortly after wait() returns.
            deadline = time.monotonic() + self.config.settle_wait
            while time.monotonic() < deadline:
                time.sleep(self.config.poll_ms / 1000.0)
                self._pump()
            self._sample_usage()
            if self._cgroup is not None and self._created_cgroup:
                self.meta.scope.settled = self._cgroup.settle()
                time.sleep(self.config.poll_ms / 1000.0)
                self._sample_usage()
        elif self.config.pid is not None and not Path(f"/proc/{self.config.pid}").exists():
            self.meta.scope.exited = True
        else:
            self._sample_usage()
        self._pump(force=True)
        self._pump(force=True)
        self.meta.provenance["stopped_by"] = self._stop_reason

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
            self._cgroup.remove()
            self._created_cgroup = False
        if self._disk is not None:
            disk, self._disk = self._disk, None
            try:
                disk.close()
            except BaseException as exc:
                # Rows were not written: the trace must say it is unfinished.
                if self._writer is not None:
                    self._writer.abort(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                if self._writer is not None and not self._writer.closed:
                    self.meta.ended_at = _now_iso()
                    self._writer.close()
        elif self._writer is not None and not self._writer.closed:
            self.meta.ended_at = _now_iso()
            self._writer.close()
