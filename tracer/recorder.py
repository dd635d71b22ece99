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

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from chargetrace.traces import ChargetraceError, Scope, TraceMeta, TraceWriter

from .cgroups import Memcg, create_child, memcg_at, memcg_of_pid, remove_stale_children
from .command import shell_status, spawn_in
from .config import RecordConfig, RecordResult, probe_table, require_root, setup_kernel
from .decode import EVENT_SIZE
from .drivers import PgmapTable
from .diskwriter import DiskWriter
from .kernel import detect_era
from .ledger import CounterDeltas, ledger_cflags, ledger_rows, read_ledger, recursion_misses, stop_probes
from .probecache import cached_choose, forget
from .program import Program
from .scope import ScopeTracker
from .transport import Transport, ringbuf_pages

_setup_kernel = setup_kernel  # tests and older callers

__all__ = ["RecordConfig", "Recording", "RecordResult", "probe_table", "VERSION"]

try:
    VERSION = importlib.metadata.version("chargetrace")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.1.0"
# Decode when this many bytes are buffered or this much time passed.
_DECODE_BYTES = 1 << 20
_DECODE_SECONDS = 0.25
# Check this often that a segment was closed in the last _FLUSH_AGE seconds,
# so that rows of a quiet recording reach the disk within ~2 s.
_FLUSH_SECONDS = 0.5
_FLUSH_AGE = 1.5
# Rescan the scope's cgroup tree this often.
_RESCAN_SECONDS = 0.2


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Recording:
    """One recording session (see the module docstring)."""

    def __init__(self, config: RecordConfig, *, stream: TextIO | None = None) -> None:
        self.config = config
        self.stream = stream or sys.stderr
        self._stop_reason = ""
        self._bpf: Any = None
        self._program: Program | None = None
        self._cgroup: Memcg | None = None
        self._created_cgroup = False
        self._scope: ScopeTracker | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: TraceWriter | None = None
        self._disk: DiskWriter | None = None
        self._transport: Transport | None = None
        self._drops_per_cpu: dict[str, int] = {}
        self._last_decode = time.monotonic()
        self._discard = False
        self._deltas: CounterDeltas | None = None
        self._kprobe_funcs: dict[str, str] = {}
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
        require_root()
        if scope_kind == "command" and not shutil.which(cfg.command[0]):
            raise ChargetraceError(f"{cfg.command[0]}: command not found")
        bcc, kernel = setup_kernel()
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
        self._program = Program(bcc, kernel)
        ledger = ledger_cflags(aggregate_counters=cfg.aggregate_counters, rescue=cfg.rescue)
        try:
            perf = self._program.load(choices, scope_kind, cfg.ringbuf_mb, cfg.transport, ledger)
        except ChargetraceError:
            if not cached:
                raise
            # A cached choice that no longer attaches (kernel state changed in
            # a way the key does not see): try the probes again, once.
            forget(key)
            choices, key, cached = cached_choose(bcc, kernel, cfg.events, cfg.skip_how)
            perf = self._program.load(choices, scope_kind, cfg.ringbuf_mb, cfg.transport, ledger)
        self._kprobe_funcs = {fn: c.variant.probe for c in choices if c.variant is not None
                              for _, _, fn in c.variant.attach}
        self._bpf = self._program.bpf
        self._check_interrupted()
        if scope_kind != "system":
            self._scope = ScopeTracker(self._bpf, self._cgroup, fresh=scope.fresh, by_tgid=scope_kind == "pid")
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
                "scope_follow": self._program.follow_probes(),
            },
        )
        self._writer = TraceWriter(cfg.output, self.meta, raw_pointers=cfg.raw_pointers)
        self._disk = DiskWriter(self._writer, self._program.probe_names, self._program.tables,
                                PgmapTable(self.meta, self._writer.pgmap_id))
        if cfg.aggregate_counters:
            self._deltas = CounterDeltas(self._program.probe_names, self._program.tables, time.monotonic_ns())
        self._check_interrupted()
        self.meta.armed_ns = self._program.arm()
        self._sample("start")
        self._check_interrupted()
        if scope_kind == "command":
            self._spawn()

    def _spawn(self) -> None:
        assert self._cgroup is not None and self._scope is not None
        self._proc = spawn_in(self.config.command, self._cgroup, self._scope.add_tgid)

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
                self._disk.put_flush(_FLUSH_AGE)
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
        due = now - self._last_decode >= _DECODE_SECONDS
        if force or windows or pending * EVENT_SIZE >= _DECODE_BYTES or (due and (pending or self._deltas)):
            raw = self._transport.drain()
            if raw:
                self._disk.put_raw(raw)
                self.events += len(raw) // EVENT_SIZE
            self._last_decode = now
            if self._deltas is not None:
                self._put_deltas(self._deltas, ledger_rows(self._bpf))
        if windows:
            total = self.meta.drops.get("total", 0)
            for w in windows:
                total += w.count
                key = str(w.cpu)
                self._drops_per_cpu[key] = self._drops_per_cpu.get(key, 0) + w.count
            self.meta.drops.update({"total": total, "per_cpu": dict(self._drops_per_cpu)})
            self._disk.put_columns({
                "ts_ns": [w.ts_ns for w in windows],
                "cpu": [w.cpu for w in windows],
                "kind": ["lost"] * len(windows),
                "probe": ["recorder"] * len(windows),
                "value": [w.count for w in windows],
                "span_ns": [w.span_ns for w in windows],
                "pid": [os.getpid()] * len(windows),
            })

    def _put_deltas(self, deltas: CounterDeltas, snapshot: Any) -> None:
        assert self._disk is not None
        cols = deltas.rows(snapshot, time.monotonic_ns())
        if cols is not None:
            self._disk.put_columns(cols)
            self.events += len(cols["ts_ns"])

    def _close_ledger(self) -> None:
        """End of recording: disarm, empty the ring, then one ledger snapshot
        gives both the last counter deltas and the metadata ``ledger``; the
        kernel's skipped probe runs go to ``drops.missed``."""
        assert self._transport is not None
        stop_probes(self._bpf)
        time.sleep(0.002)  # programs already past the switch finish
        self._transport.finish()
        snapshot = list(ledger_rows(self._bpf))
        deltas, self._deltas = self._deltas, None
        self._pump(force=True)
        if deltas is not None:
            self._put_deltas(deltas, snapshot)
        self.meta.ledger = read_ledger(snapshot, self._program.tables if self._program else {})
        self.meta.drops["missed"] = recursion_misses(self._bpf, self._kprobe_funcs)
        rescued = self._transport.rescued()
        if rescued:
            self.meta.drops["rescued"] = rescued

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
            self.exit_status = scope.exit_status = shell_status(self._proc.returncode)
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
        self._close_ledger()
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
        if self._cgroup is not None and self._created_cgroup and self._scope is not None:
            # Before the program goes: tasks() reads its scope maps.
            self._scope.kill_left()
        if self._program is not None:
            self._program.cleanup()
            self._bpf = None
        if self._cgroup is not None and self._created_cgroup:
            # Children the workload left behind, deepest first.
            for child in reversed(self._cgroup.descendants()):
                child.remove(timeout=0.5)
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
