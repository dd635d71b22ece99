"""Record and replay the corpus's cases, and compare with what the case table says.

Scope: builds ``workloads/mem.c``, provides what a case needs (disk and tmpfs
folders, a memory cgroup outside the scope, a swap device), runs
``chargetrace record -- CMD`` and ``chargetrace replay --json`` through the
real CLI, and lists every difference between the outcome and the case's
expectations (:func:`check`). Used by the live test and by the table command
(``python -m tests.corpus.table``). Limits: root, BCC and gcc are required
(the live tests skip without them); a case whose need cannot be provided is
skipped with the reason (:class:`Unavailable`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cases import CHARGE_RULES, RULE_NEEDS, Case

__all__ = ["Corpus", "Outcome", "Recorded", "Unavailable", "build_mem", "judge", "cgroup_version", "check", "held_pages", "EXIT_CODES", "HOLDERS"]

HERE = Path(__file__).parent
WORKLOADS = HERE / "workloads"
#: replay's exit code per verdict (README "Exit codes")
EXIT_CODES = {"balanced": 0, "violations": 1, "inconclusive": 3, "unchecked": 4}
_SWAPFILE_ENV = "CHARGETRACE_CORPUS_SWAPFILE"


class Unavailable(Exception):
    """A case's need cannot be met on this machine (the message says why)."""


def cgroup_version() -> int:
    """1 when the memory controller is on the v1 hierarchy, else 2."""
    return 1 if Path("/sys/fs/cgroup/memory/memory.usage_in_bytes").exists() else 2


def _is_tmpfs(path: Path) -> bool:
    best, fstype = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        mnt = parts[1]
        if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, parts[2]
    return fstype in ("tmpfs", "ramfs")


@dataclass
class Outcome:
    case: Case
    record_rc: int
    record_stderr: str
    trace: Path
    meta: dict[str, Any]
    report: dict[str, Any]
    replay_rc: int
    seconds: float
    version: int  # cgroup version of the memory controller it ran under
    swap_on: bool  # a swap device was active while it ran
    problems: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return int(self.report.get("events", 0))

    @property
    def checked(self) -> dict[str, int]:
        return {r["rule"]: int(r["checked"]) for r in self.report.get("rules", []) if r.get("checked")}


#: what replay --json's "held" rows split a memcg's legitimate charges into (pages)
HOLDERS = ("anon", "file", "shmem", "kmem", "sock")
#: held pages of a holder the case does not name that still pass: the little a memcg
#: keeps after its tasks are gone (page tables and slab freed with their objects, a
#: few dirty pages); more than this the case table must explain
UNEXPLAINED_MAX = 256


def held_pages(report: dict[str, Any]) -> dict[str, int]:
    """Pages the replay reports as legitimately still charged, by holder: its JSON
    "held" rows with verdict "held" (folio-level and counter-level traces alike)."""
    out = dict.fromkeys(HOLDERS, 0)
    for row in report.get("held", []) or []:
        if row.get("verdict") == "held":
            for k in HOLDERS:
                out[k] += int(row.get(k) or 0)
    return {k: v for k, v in out.items() if v}


def _attached_kinds(meta: dict[str, Any]) -> set[str]:
    return {str(p.get("kind") or p.get("event")) for p in meta.get("probes", []) if p.get("probe")}


def check(case: Case, o: Outcome) -> list[str]:
    """Every way the outcome differs from the case's expectations (empty: as expected)."""
    problems = []
    rep, scope = o.report, o.meta.get("scope", {})
    if o.record_rc != case.exit_status:
        problems.append(f"record exited {o.record_rc}, expected the command's status {case.exit_status}"
                        f" ({o.record_stderr.strip().splitlines()[-1:] or ''})")
    if scope.get("exit_status") != case.exit_status:
        problems.append(f"scope.exit_status {scope.get('exit_status')}, expected {case.exit_status}")
    if case.oom_kills is not None and scope.get("oom_kills") != case.oom_kills:
        problems.append(f"scope.oom_kills {scope.get('oom_kills')}, expected {case.oom_kills}")
    if not rep:
        return problems + ["replay printed no JSON report"]
    verdict = rep.get("verdict")
    if verdict != case.verdict:
        found = [f"{v['rule']}: {v['message']}" for v in rep.get("violations", []) + rep.get("inconclusive", [])]
        found += [f"note: {n}" for n in rep.get("notes", [])]
        problems.append(f"verdict {verdict}, expected {case.verdict}; " + "; ".join(found[:4]))
    if o.replay_rc != EXIT_CODES.get(case.verdict, -1):
        problems.append(f"replay exited {o.replay_rc} for expected verdict {case.verdict}")
    kinds = _attached_kinds(o.meta)
    version = o.version
    required = [r for r in case.rules
                if set(RULE_NEEDS[r][0]) <= kinds and version in RULE_NEEDS[r][1]]
    if {"charge", "uncharge"} <= kinds:
        required += case.folio_rules
    checked = o.checked
    for rule in required:
        if checked.get(rule, 0) <= 0:
            problems.append(f"rule {rule} checked nothing")
    most = max((checked.get(r, 0) for r in CHARGE_RULES), default=0)
    if most < case.min_charges:
        problems.append(f"the charge rules ({', '.join(CHARGE_RULES)}) checked at most {most} events; "
                        f"the workload charged >= {case.min_charges} in the scope")
    moved = scope.get("moved_out")
    if moved is None:
        problems.append("metadata has no scope.moved_out")
    elif len(moved) != case.moved_out or any(bool(m.get("followed")) != case.followed for m in moved):
        problems.append(f"scope.moved_out is {moved}, expected {case.moved_out} task(s) followed={case.followed}")
    elif moved and not case.followed and not scope.get("unseen_fault_share"):
        problems.append("a task moved out unfollowed, yet scope.unseen_fault_share is 0")
    unseen = (rep.get("scope") or {}).get("unseen")
    if bool(unseen) != bool(case.moved_out and not case.followed):
        problems.append(f"replay's scope.unseen is {unseen!r}")
    memcgs = scope.get("memcgs") or []
    want = case.scope_memcgs_v2 if version == 2 and case.scope_memcgs_v2 is not None else case.scope_memcgs
    if len(memcgs) != want:
        problems.append(f"scope.memcgs has {len(memcgs)} memcg(s), expected {want}")
    left = scope.get("tasks_left")
    if left is None or len(left) != case.tasks_left:
        problems.append(f"scope.tasks_left is {left}, expected {case.tasks_left} task(s)")
    if scope.get("exited") != (case.tasks_left == 0):
        problems.append(f"scope.exited is {scope.get('exited')}")
    replay_left = (rep.get("scope") or {}).get("tasks_left") or []
    if len(replay_left) != case.tasks_left:
        problems.append(f"replay's scope.tasks_left is {replay_left}, expected {case.tasks_left} task(s)")
    held = held_pages(rep)
    named = set()
    for h in case.held:
        keys = h.holder.split("+")
        named.update(keys)
        got = sum(held.get(k, 0) for k in keys)
        if got < h.min_pages and not (h.swappable and o.swap_on):
            problems.append(f"expected >= {h.min_pages} pages reported held by {h.holder}, got {got} ({held})")
    for k, pages in held.items():
        if k not in named and pages > UNEXPLAINED_MAX:
            problems.append(f"{pages} pages reported held by {k}, which the case does not explain")
    coverage = rep.get("coverage")
    if coverage is None:
        problems.append("replay --json has no coverage")
    elif coverage.get("of_substance") != (case.verdict != "unchecked"):
        problems.append(f"coverage.of_substance is {coverage.get('of_substance')} for expected verdict {case.verdict}")
    return problems


class Corpus:
    """Builds the workloads once and runs cases in a private working folder."""

    def __init__(self, workdir: Path, *, python: str = sys.executable, mem: Path | None = None,
                 disk_root: Path | None = None, swap_device: str | None = None,
                 timeout_scale: float = 1.0) -> None:
        """``mem``: a ``workloads/mem.c`` built beforehand (the lab guest has no gcc), else
        built here; ``disk_root``: the folder for disk file-system cases (the lab guest's
        root is 9p, which keeps no page cache: its ext4 scratch disk); ``swap_device``: the
        device a swap case turns on (and off after) instead of a temporary swap file;
        ``timeout_scale``: multiplies each case's timeout (a TCG guest is slower)."""
        self.workdir = workdir
        self.python = python
        self.version = cgroup_version()
        self.disk_root = disk_root
        self.swap_device = swap_device
        self.timeout_scale = timeout_scale
        if mem is not None:
            self.mem = mem
        else:
            self.mem = workdir / "mem"
            build_mem(self.mem)

    # -- what cases need ------------------------------------------------------------
    def _disk_dir(self) -> Path:
        if self.disk_root is not None:
            return Path(tempfile.mkdtemp(prefix="chargetrace-corpus-", dir=self.disk_root))
        for base in (Path("/var/tmp"), Path(tempfile.gettempdir()), self.workdir):
            if base.is_dir() and not _is_tmpfs(base):
                return Path(tempfile.mkdtemp(prefix="chargetrace-corpus-", dir=base))
        raise Unavailable("no disk file system for page-cache cases (every candidate folder is tmpfs)")

    def _tmpfs_dir(self) -> Path:
        shm = Path("/dev/shm")
        if not (shm.is_dir() and _is_tmpfs(shm)):
            raise Unavailable("/dev/shm is not a tmpfs")
        return Path(tempfile.mkdtemp(prefix="chargetrace-corpus-", dir=shm))

    def _huge_tmpfs_dir(self, cleanup: list) -> Path:
        """A private tmpfs mounted with huge=always: shmem in PMD-sized folios whatever the
        system-wide shmem_enabled says (Documentation/admin-guide/mm/transhuge.rst)."""
        d = Path(tempfile.mkdtemp(prefix="chargetrace-corpus-huge-", dir=self.workdir))
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "huge=always,size=128M", "chargetrace-corpus", str(d)],
                              capture_output=True, text=True)
        if proc.returncode:
            d.rmdir()
            raise Unavailable(f"cannot mount a huge=always tmpfs: {proc.stderr.strip()[:200]}")
        cleanup.append(lambda: (subprocess.run(["umount", str(d)], check=False), d.rmdir()))
        return d

    def _outside_cgroup(self) -> Path:
        root = Path("/sys/fs/cgroup/memory") if self.version == 1 else Path("/sys/fs/cgroup")
        path = root / f"chargetrace-corpus-outside-{os.getpid()}"
        path.mkdir(exist_ok=True)
        return path

    def _swap(self, cleanup: list) -> None:
        if _swap_active():
            return
        if self.swap_device:
            proc = subprocess.run(["swapon", self.swap_device], capture_output=True, text=True)
            if proc.returncode:
                raise Unavailable(f"swapon {self.swap_device}: {proc.stderr.strip()[:200]}")
            cleanup.append(lambda: _swapoff(str(self.swap_device)))
            return
        # The README's test command runs this case too: a temporary swap file is
        # the default (removed after the case); =0 forbids it on a machine where
        # even a temporary swap file is unwelcome.
        if os.environ.get(_SWAPFILE_ENV, "1") == "0":
            raise Unavailable(f"no swap device and {_SWAPFILE_ENV}=0 forbids a temporary swap file "
                              "(the lab guest has swap)")
        folder = self._disk_dir()
        cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
        swapfile = folder / "swapfile"
        for argv in (["dd", "if=/dev/zero", f"of={swapfile}", "bs=1M", "count=256", "status=none"],
                     ["chmod", "600", str(swapfile)], ["mkswap", "-q", str(swapfile)],
                     ["swapon", "-p", "-2", str(swapfile)]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode:
                # e.g. a file system that cannot hold swap files (overlayfs), or no swap support
                raise Unavailable(f"cannot add a swap file: {' '.join(argv[:1])}: {proc.stderr.strip()[:200]}")
        cleanup.append(lambda: _swapoff(str(swapfile)))

    # -- one case -------------------------------------------------------------------
    def record(self, case: Case, out: Path) -> Recorded:
        """Provide what ``case`` needs and record it to ``out`` (no replay: in the lab the
        guest records and the host judges, :func:`judge`)."""
        if self.version not in case.only:
            raise Unavailable(f"runs on cgroup v{'/v'.join(map(str, case.only))} only")
        cleanup: list = []
        try:
            subst = {"mem": str(self.mem), "wl": str(WORKLOADS), "disk": "", "tmpfs": "", "hugetmpfs": "",
                     "outside": ""}
            joined = " ".join(case.argv)
            for key, make in (("disk", self._disk_dir), ("tmpfs", self._tmpfs_dir)):
                if "{" + key + "}" in joined:
                    d = make()
                    subst[key] = str(d)
                    cleanup.append(lambda d=d: shutil.rmtree(d, ignore_errors=True))
            if "{hugetmpfs}" in joined:
                subst["hugetmpfs"] = str(self._huge_tmpfs_dir(cleanup))
            if "outside" in case.needs:
                o = self._outside_cgroup()
                subst["outside"] = str(o)
                cleanup.append(lambda o=o: _rmdir_cgroup(o))
            if "swap" in case.needs:
                self._swap(cleanup)
            argv = [a.format(**subst) for a in case.argv]
            swap_on = _swap_active()
            t0 = time.monotonic()
            rec = subprocess.run([self.python, "-m", "chargetrace.cli", "record", "--quiet", "-o", str(out),
                                  *case.record_args, "--", *argv], capture_output=True, text=True,
                                 timeout=case.timeout * self.timeout_scale)
            seconds = time.monotonic() - t0
        finally:
            for fn in reversed(cleanup):
                fn()
        return Recorded(case.name, rec.returncode, rec.stderr, str(out), seconds, self.version, swap_on)

    def run(self, case: Case, out: Path) -> Outcome:
        """Record and replay ``case``; the trace is written to ``out``."""
        return judge(case, self.record(case, out), python=self.python)


@dataclass(frozen=True)
class Recorded:
    """What recording one case left (JSON-able: the lab guest writes it next to the trace)."""

    case: str
    record_rc: int
    record_stderr: str
    trace: str
    seconds: float
    version: int
    swap_on: bool


def judge(case: Case, rec: Recorded, *, python: str = sys.executable, trace: Path | None = None) -> Outcome:
    """Replay a recorded case with ``chargetrace replay --json`` and compare with the table
    (:func:`check`). ``trace`` overrides ``rec.trace`` (the host's path of a guest's trace)."""
    out = trace or Path(rec.trace)
    t0 = time.monotonic()
    rep = subprocess.run([python, "-m", "chargetrace.cli", "replay", "--json", str(out)],
                         capture_output=True, text=True, timeout=case.timeout)
    seconds = rec.seconds + time.monotonic() - t0
    meta = _meta(out) if out.exists() else {}
    try:
        report = json.loads(rep.stdout)
    except ValueError:
        report = {}
    o = Outcome(case, rec.record_rc, rec.record_stderr, out, meta, report, rep.returncode, seconds, rec.version,
                rec.swap_on)
    if not out.exists():
        o.problems = [f"no trace: record exited {rec.record_rc}: {rec.record_stderr.strip()[-300:]}"]
    else:
        o.problems = check(case, o)
    return o


def build_mem(out: Path) -> None:
    """Build ``workloads/mem.c`` statically (it runs as-is in the lab guest)."""
    subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(out), str(WORKLOADS / "mem.c")], check=True)


def _swapoff(what: str) -> None:
    # swapoff can fail for a moment right after the case (seen once on the loaded host: the
    # swap file stayed on, and a later live test's tmpfs pages went to it); a swap device left
    # on changes every later case, so retry, and say so if it stays on.
    for _ in range(20):
        if subprocess.run(["swapoff", what], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    print(f"corpus harness: swapoff {what} failed; swap stays on", file=sys.stderr)


def _swap_active() -> bool:
    return len(Path("/proc/swaps").read_text().splitlines()) > 1


def _meta(trace: Path) -> dict[str, Any]:
    from chargetrace.traces import read_trace

    return json.loads(read_trace(trace).meta.to_json())


def _rmdir_cgroup(path: Path) -> None:
    # the workload has exited; the kernel may need a moment to let the last task go
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
