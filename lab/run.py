"""Orchestrating a lab run: host packages → kernel → rootfs → share → boot → results.

:func:`run_lab` raises :class:`ChargetraceError` when the lab itself broke
(build failure, guest never reported, timeout); hmm-tests failures, guest
WARN/BUG lines or a missing trace come back in :class:`LabResult` (``ok`` is
False and ``problems`` says why), so callers can show what the guest did.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chargetrace.traces.errors import ChargetraceError

from .bugs import build_variant, variant
from .config import HMM_TESTS_LEFT_OUT, LabConfig
from .hmmtests import HmmTestsResult, parse_hmm_tests
from .kernel import KernelBuild, build_kernel
from .packages import HOST_PACKAGES, ensure_host_packages, kernel_source
from .proc import tail
from .qemu import boot, kvm_usable, pick_accel, qemu_argv
from .rootfs import GUEST_INIT, prepare_rootfs, refresh_rootfs
from .trace import TraceSummary, add_provenance, summarize

__all__ = ["LabResult", "build_all", "clean_cache", "dmesg_oom_reports", "dmesg_problems", "run_lab"]

# Kernel log lines that mean the run is not clean (mm/ WARN_ON, BUG_ON, oopses, lockdep).
_DMESG_BAD = re.compile(r"WARNING:|BUG:|kernel BUG|Oops|general protection fault|Call Trace:|"
                        r"page_counter underflow|possible recursive locking|RCU stall")
# An OOM report (mm/oom_kill.c dump_header(): "<comm> invoked oom-killer: ...", a stack dump, the
# memcg's state, then "oom-kill:..." / "Memory cgroup out of memory: Killed process ...") is the
# kernel doing its job under a limit, not a WARN/BUG: its stack dump is not a problem.
_OOM_START = re.compile(r"invoked oom-killer:")
_OOM_END = re.compile(r"Memory cgroup out of memory|Out of memory|oom_reaper:|oom-kill:constraint")


def dmesg_problems(text: str) -> list[str]:
    """The kernel log lines that indicate a WARN/BUG/oops (OOM reports excluded)."""
    bad: list[str] = []
    in_oom = False
    for line in text.splitlines():
        if _OOM_START.search(line):
            in_oom = True
        elif in_oom and _OOM_END.search(line):
            in_oom = False
        elif not in_oom and _DMESG_BAD.search(line):
            bad.append(line.strip())
    return bad


def dmesg_oom_reports(text: str) -> int:
    """How many OOM-killer reports the kernel log holds."""
    return sum(1 for line in text.splitlines() if _OOM_START.search(line))


@dataclass
class LabResult:
    """What one lab run did and measured."""

    kernel: str
    release: str
    source_version: str
    kernel_key: str
    config_sha256: str
    accel: str
    run_dir: Path
    record: bool
    timings: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    hmm: HmmTestsResult = field(default_factory=HmmTestsResult)
    hmm_rc: int | None = None
    insmod_rc: int | None = None
    guest_steps: dict[str, float] = field(default_factory=dict)
    dmesg: list[str] = field(default_factory=list)
    trace: Path | None = None
    summary: TraceSummary | None = None
    replay: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    #: A bug-variant run: the variant's name, and whether the replay named its expected rule.
    bug: str | None = None
    expected_rule_found: bool | None = None
    #: What the kernel itself said (hmm-tests failures, WARN/BUG lines): a lab problem for a clean
    #: kernel, an observation for a bug variant.
    kernel_noticed: list[str] = field(default_factory=list)
    #: OOM-killer reports in the guest's kernel log (expected under --memory-max).
    oom_reports: int = 0
    #: The recorded memcg's memory.events when its command ended (``max``, ``oom``, ``oom_kill``, ...);
    #: empty where the command ran without the wrapper (plain hmm-tests) or the file was unreadable.
    memory_events: dict[str, int] = field(default_factory=dict)
    #: A --workload run: the command's exit status and the tail of its output.
    workload_rc: int | None = None
    workload_output: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hmm"] = {"tests": self.hmm.tests, "totals": self.hmm.totals, "summary": self.hmm.summary,
                    "planned": self.hmm.planned, "device_private": self.hmm.device_private}
        d["ok"] = self.ok
        return json.loads(json.dumps(d, default=str))


def _log(cfg: LabConfig) -> Path:
    return cfg.run_dir / "host.log"


def build_all(cfg: LabConfig) -> tuple[KernelBuild, Path, dict[str, float], dict[str, bool]]:
    """Host packages, kernel (+ test_hmm.ko, hmm-tests) and rootfs, cached; no boot."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    log = _log(cfg)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    ensure_host_packages(HOST_PACKAGES, log=log, install=cfg.install_missing)
    source = kernel_source(cfg.kernel, log=log, install=cfg.install_missing)
    timings["host_packages"] = time.monotonic() - t0
    t0 = time.monotonic()
    kb = build_kernel(source, cfg.cache_dir, jobs=cfg.jobs, log=log, debug_vm=cfg.debug_vm)
    timings["kernel"] = time.monotonic() - t0
    variant_cached = None
    if cfg.bug is not None:
        t0 = time.monotonic()
        kb = build_variant(kb, variant(cfg.bug, cfg.kernel), cfg.cache_dir, jobs=cfg.jobs, log=log)
        timings["variant"] = time.monotonic() - t0
        variant_cached = kb.cached
    rootfs, rootfs_cached, secs = prepare_rootfs(cfg.cache_dir, suite=cfg.suite, mirror=cfg.mirror, log=log)
    timings["rootfs"] = secs
    timings["rootfs_refresh"] = refresh_rootfs(rootfs, kb.modroot, kb.release, log=log)
    cached = {"kernel": kb.cached, "rootfs": rootfs_cached}
    if variant_cached is not None:
        cached["variant"] = variant_cached
    return kb, rootfs, timings, cached


def _prepare_share(cfg: LabConfig, kb: KernelBuild) -> Path:
    share = cfg.run_dir
    out = share / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy2(kb.test_hmm_ko, share / "test_hmm.ko")
    shutil.copy2(kb.hmm_tests, share / "hmm-tests")
    (share / "run.sh").write_bytes(resources.files("chargetrace.lab").joinpath("guest/run.sh").read_bytes())
    _share_package(share / "py")
    work = share / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    for f in cfg.workload_files:
        shutil.copy2(f, work / f.name)
    env = f"MODE={'record' if cfg.record else 'plain'}\nTRACE={cfg.trace_name}\nRINGBUF_MB={cfg.ringbuf_mb}\n"
    if cfg.workload:
        env += f"WORKLOAD={shlex.quote(cfg.workload)}\n"
    if cfg.memory_max is not None:
        env += f"MEMORY_MAX={cfg.memory_max}\n"
    if HMM_TESTS_LEFT_OUT.get(cfg.kernel):
        env += "HMM_TESTS_ARGS=" + shlex.quote(" ".join(f"-T {t}" for t in HMM_TESTS_LEFT_OUT[cfg.kernel])) + "\n"
    (share / "job.env").write_text(env)
    return share


#: Subpackages of chargetrace the guest imports (pyproject.toml's package-dir, each a folder of its own).
_SUBPACKAGES = ("traces", "replay", "tracer", "lab", "look", "convert")


def _share_package(dest: Path) -> None:
    """This checkout's chargetrace as a plain package tree in the run's share (``/lab/py``), which
    run.sh puts first on the guest's PYTHONPATH. The rootfs' own install (refresh_rootfs) is shared by
    every run on the host: a concurrent run of another checkout reinstalls its code there, and a guest
    would record with that (seen: a 5.10 run recorded with a checkout lacking its probes)."""
    import importlib

    shutil.rmtree(dest, ignore_errors=True)
    pkg = dest / "chargetrace"
    pkg.mkdir(parents=True)
    # Module files, not the package's own path: an editable install maps the package to the checkout root.
    root = Path(importlib.import_module("chargetrace.cli").__file__ or "").parent
    for name in ("__init__.py", "cli.py"):
        if (root / name).is_file():
            shutil.copy2(root / name, pkg / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sub in _SUBPACKAGES:
        src = Path(importlib.import_module(f"chargetrace.{sub}").__file__ or "").parent
        shutil.copytree(src, pkg / sub, ignore=ignore)


def _scratch_disks(cfg: LabConfig) -> tuple[Path, ...]:
    # Sparse: a 1 GiB swap disk costs the host only what the guest writes to it.
    disks = []
    for i, mb in enumerate(cfg.scratch_disks_mb):
        d = cfg.run_dir / f"scratch-{i}.img"
        with d.open("wb") as f:
            f.truncate(mb << 20)
        disks.append(d)
    return tuple(disks)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_steps(path: Path) -> dict[str, float]:
    steps: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            name, _, up = line.partition(" ")
            steps[name] = float(up)
    except (OSError, ValueError):
        pass
    return steps


def _read_events(path: Path) -> dict[str, int]:
    # memory.events: "<name> <count>" lines (Documentation/admin-guide/cgroup-v2.rst).
    events: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            name, _, count = line.partition(" ")
            if count.strip().isdigit():
                events[name] = int(count)
    except OSError:
        pass
    return events


def run_lab(cfg: LabConfig) -> LabResult:
    """Build (or reuse) everything, boot the guest, run hmm-tests (recorded or not), collect results."""
    t_all = time.monotonic()
    kb, rootfs, timings, cached = build_all(cfg)
    config_sha = hashlib.sha256((kb.directory / "kbuild" / ".config").read_bytes()).hexdigest()[:12]
    share = _prepare_share(cfg, kb)
    accel = pick_accel(cfg.accel)
    if accel == "kvm" and cfg.accel == "kvm" and not kvm_usable()[0]:
        (share / "host.log").open("a").write(f"\nkvm requested although: {kvm_usable()[1]}\n")
    disks = _scratch_disks(cfg)
    argv = qemu_argv(bzimage=kb.bzimage, rootfs=rootfs, share=share, init=GUEST_INIT, accel=accel,
                     mem=cfg.mem, smp=cfg.smp, disks=disks, root_tag=kb.root_tag)
    (share / "qemu.cmd").write_text(" ".join(argv) + "\n")
    try:
        br = boot(argv, console=share / "console.log", timeout_s=cfg.timeout_s, accel=accel)
    finally:
        for d in disks:
            d.unlink(missing_ok=True)
    timings["boot_and_run"] = br.seconds

    out = share / "out"
    res = LabResult(kernel=cfg.kernel, release=kb.release, source_version=kb.source.version,
                    kernel_key=kb.key, config_sha256=config_sha, accel=accel, run_dir=share,
                    record=cfg.record, timings=timings, cached=cached, bug=cfg.bug)
    res.guest_steps = _read_steps(out / "steps.txt")
    rc = _read_int(out / f"{cfg.command_name}.rc")
    if br.timed_out:
        raise ChargetraceError(f"lab: guest did not power off within {cfg.timeout_s}s; console: "
                               f"{tail(br.console, 3)}")
    if rc is None:
        raise ChargetraceError(f"lab: guest ended (qemu exit {br.returncode}) without running {cfg.command_name}; "
                               f"console: {tail(br.console, 3)}; run.log: {tail(out / 'run.log', 3)}")
    res.insmod_rc = _read_int(out / "insmod.rc")
    res.memory_events = _read_events(out / "memory.events")
    try:
        kernel_log = (out / "dmesg.txt").read_text(errors="replace")
        res.dmesg = dmesg_problems(kernel_log)
        res.oom_reports = dmesg_oom_reports(kernel_log)
    except OSError:
        res.problems.append("no dmesg.txt from the guest")
    if res.insmod_rc != 0:
        res.problems.append(f"insmod test_hmm.ko failed (rc {res.insmod_rc})")
    if cfg.workload:
        res.workload_rc = rc
        try:
            res.workload_output = (out / "workload.log").read_text(errors="replace").splitlines()[-20:]
        except OSError:
            pass
        if rc != 0:
            res.problems.append(f"the workload exited with status {rc}")
    else:
        _hmm_results(res, rc, out)
    if cfg.bug is None and not (cfg.memory_max is not None and not cfg.workload):
        # A clean kernel must pass its own tests quietly; a bug variant is expected not to, and
        # hmm-tests under a memory.max below its working set has tests OOM-killed by design.
        res.problems += res.kernel_noticed
    if res.dmesg:
        res.kernel_noticed.append(f"{len(res.dmesg)} WARN/BUG lines in dmesg, first: {res.dmesg[0]}")
        if cfg.bug is None:
            res.problems.append(res.kernel_noticed[-1])
    if cfg.record:
        trace = out / cfg.trace_name
        if trace.exists():
            res.trace = trace
            _check_trace(cfg, res)
        else:
            res.problems.append(f"no trace {trace} (recorder: {tail(out / 'record.err', 3)})")
    timings["total"] = time.monotonic() - t_all
    (share / "result.json").write_text(json.dumps(res.to_json(), indent=2, sort_keys=True) + "\n")
    return res


def _hmm_results(res: LabResult, rc: int, out: Path) -> None:
    res.hmm_rc = rc
    try:
        res.hmm = parse_hmm_tests((out / "hmm-tests.log").read_text(errors="replace"))
    except OSError:
        pass
    if res.hmm_rc != 0 or not res.hmm.ok:
        dp = res.hmm.device_private
        res.kernel_noticed.append(f"hmm-tests failed: rc {res.hmm_rc}, {res.hmm.summary}, device_private {dp}")
    if res.hmm.device_private["pass"] == 0:
        res.problems.append("no device_private test passed")


def _check_trace(cfg: LabConfig, res: LabResult) -> None:
    assert res.trace is not None
    add_provenance(res.trace, {
        "lab": "chargetrace lab (QEMU " + res.accel + ", lab/hmm-lab.config"
               + (" + lab/debug-vm.config (CONFIG_DEBUG_VM=y)" if cfg.debug_vm else "") + ", out-of-tree test_hmm.ko)",
        "debug_vm": cfg.debug_vm,
        "kernel_release": res.release,
        "kernel_source": f"linux-source-{cfg.kernel} {res.source_version}",
        "config_sha256": res.config_sha256,
        "lab_kernel_key": res.kernel_key,
        "command": f"chargetrace record -o /lab/out/{cfg.trace_name} --ringbuf-mb {cfg.ringbuf_mb} -- "
                   + (cfg.workload or " ".join(["hmm-tests", *(f"-T {t}" for t in HMM_TESTS_LEFT_OUT.get(cfg.kernel, ()))])),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"workload": {"command": cfg.workload, "rc": res.workload_rc, "output": res.workload_output}}
           if cfg.workload else
           {"hmm_tests": {"rc": res.hmm_rc, "summary": res.hmm.summary, "totals": res.hmm.totals,
                          "device_private": res.hmm.device_private}}),
        **({"memory_max": cfg.memory_max} if cfg.memory_max is not None else {}),
        **({"memory_events": res.memory_events} if res.memory_events else {}),
        "oom_reports_in_dmesg": res.oom_reports,
        **({"bug_variant": {**variant(cfg.bug, cfg.kernel).provenance(),
                            "kernel_said": {"hmm_tests": res.hmm.summary, "dmesg": res.dmesg[:20]}}}
           if cfg.bug else {}),
    })
    res.summary = s = summarize(res.trace)
    if s.drops:
        res.problems.append(f"the recorder dropped {s.drops} events")
    if s.missing_kinds and not cfg.workload:
        res.problems.append(f"no {', '.join(s.missing_kinds)} events in {res.trace.name}")
    res.replay = _replay(res.trace)
    if cfg.bug is not None:
        rule = variant(cfg.bug, cfg.kernel).rule
        res.expected_rule_found = any(v.get("rule") == rule for v in res.replay["violations"])
        if not res.expected_rule_found:
            res.problems.append(f"bug variant {cfg.bug}: replay did not report {rule} "
                                f"(verdict {res.replay['verdict']})")
    elif res.replay["verdict"] != "balanced":
        res.problems.append(f"replay verdict {res.replay['verdict']}: {len(res.replay['violations'])} violation(s)"
                            f", {len(res.replay['inconclusive'])} inconclusive")


def _replay(trace: Path) -> dict[str, Any]:
    # The host-side check of the guest's trace: the same code as `chargetrace replay --json`.
    from chargetrace.replay import replay
    from chargetrace.traces import read_trace

    t0 = time.monotonic()
    report = replay(read_trace(trace)).to_json()
    report["seconds"] = round(time.monotonic() - t0, 1)
    (trace.parent / "replay.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def clean_cache(cfg: LabConfig, *, kernels: bool = True, rootfs: bool = False, runs: bool = True) -> list[Path]:
    """Delete cached kernels of ``cfg.kernel``'s series, rootfs and/or run dirs; return what was removed."""
    removed: list[Path] = []
    targets: list[Path] = []
    if kernels:
        targets += sorted((cfg.cache_dir / "kernel").glob(f"{cfg.kernel}.*-*"))
        # Bug variants built on those kernels (lab/bugs.py).
        targets += sorted((cfg.cache_dir / "kernel-bugs").glob(f"{cfg.kernel}.*-*"))
    if rootfs:
        targets += sorted((cfg.cache_dir / "rootfs").glob("*"))
    if runs:
        targets.append(cfg.run_dir)
    for t in targets:
        if t.exists():
            shutil.rmtree(t)
            removed.append(t)
    return removed
