"""Memory cgroups for recording scopes: find, create, sample, settle, remove.

Supports the memory controller on cgroup v1 (``/sys/fs/cgroup/memory``, as on
the machine this was written on) and on cgroup v2. A memcg's id is the inode
number of its cgroup directory (= kernfs id = the memcg:* tracepoints' id).
A fresh scope cgroup is created *under the recorder's own memcg*
(``<own>/chargetrace-<pid>``) so that it inherits the recorder's limits and
needs no write access elsewhere. v2 limits: creating a child needs
``+memory`` in the parent's ``cgroup.subtree_control``, which the kernel
refuses while the parent itself holds processes; then this raises.

Samples for reconciliation: :meth:`Memcg.memstat` (every ``memory.stat`` key
as the file spells it, plus v1 ``memory.kmem.usage_in_bytes`` as
``kmem.usage``), :meth:`Memcg.oom_kills` (v2 ``memory.events``, v1
``memory.oom_control``), :meth:`Memcg.tasks`, and the tree below a memcg
(:meth:`Memcg.descendants`).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from chargetrace.traces import ChargetraceError

__all__ = ["Memcg", "SettleResult", "memcg_mount", "memcg_of_pid", "memcg_at", "create_child",
           "remove_stale_children", "hierarchy_id", "held_by"]


@dataclass(frozen=True)
class SettleResult:
    """What :meth:`Memcg.settle` did: ``method`` ("" = none ran), ``done``
    (it ran to its end), ``error`` (why it did not, else "")."""

    method: str
    done: bool
    error: str = ""


@dataclass(frozen=True)
class Memcg:
    """A memory cgroup directory."""

    path: Path
    version: int  # 1 or 2

    @property
    def id(self) -> int:
        """cgroup id = directory inode."""
        return os.stat(self.path).st_ino

    @property
    def usage_file(self) -> str:
        return "memory.usage_in_bytes" if self.version == 1 else "memory.current"

    def usage(self) -> int:
        return int((self.path / self.usage_file).read_text().split()[0])

    @property
    def parent_id(self) -> int:
        return os.stat(self.path.parent).st_ino

    def descendants(self) -> list["Memcg"]:
        """Every memcg below this one, parents before children."""
        out = []
        for root, dirs, _files in os.walk(self.path):
            dirs.sort()
            out.extend(Memcg(Path(root) / d, self.version) for d in dirs)
        return out

    def memstat(self) -> list[tuple[str, int]]:
        """(key, value) of memory.stat in file order, then v1's
        memory.kmem.usage_in_bytes as ``kmem.usage``; [] when unreadable."""
        out: list[tuple[str, int]] = []
        try:
            for line in (self.path / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    out.append((key, int(value)))
        except OSError:
            return []
        if self.version == 1:
            try:
                out.append(("kmem.usage", int((self.path / "memory.kmem.usage_in_bytes").read_text().split()[0])))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def oom_kills(self) -> int | None:
        """OOM kills in this memcg itself (not its children): v1
        memory.oom_control, v2 memory.events.local (5.2+; memory.events,
        which also counts the subtree, before it). The counter came with
        8e675f7af507 "mm/oom_kill: count global and memory cgroup oom kills"
        (v4.13); read by key, so a kernel without the line gives None."""
        name = "memory.oom_control"
        if self.version == 2:
            name = "memory.events.local" if (self.path / "memory.events.local").exists() else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def tasks(self) -> list[tuple[int, str]]:
        """(pid, comm) of the processes in this memcg now."""
        out = []
        for pid in self.procs():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue  # exited meanwhile
            out.append((pid, comm))
        return out

    def procs(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def add_pid(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def settle(self) -> SettleResult:
        """Drain what is left charged (page cache, per-CPU LRU batches) after
        the tasks exited.

        v1: memory.force_empty (drains the per-CPU LRU batches first,
        mem_cgroup_force_empty(); it refuses with EBUSY while tasks remain).
        v2: memory.reclaim of the whole usage; it answers EAGAIN when it
        cannot reach the target, which is the normal outcome here (what stays
        is kernel memory and the per-CPU charge stock, which reclaim cannot
        free, or anon/shmem memory with no swap); the reclaim still ran, with
        lru_add_drain_all() on its last attempt (memory_reclaim(),
        mm/memcontrol.c). Both reclaim the whole subtree. What is left is for
        the caller to sample (usage, memstat).
        v2 without memory.reclaim (before 94968384dde1 "memcg: introduce
        per-memcg reclaim interface", 5.19; found by the file's absence):
        memory.high = 0 drains the per-CPU charge stock and reclaims the
        subtree in the write itself (memory_high_write(), mm/memcontrol.c),
        never invoking the OOM killer as memory.max would; then "max" again."""
        reclaim = self.version == 2 and (self.path / "memory.reclaim").exists()
        method = "force_empty" if self.version == 1 else ("reclaim" if reclaim else "high")
        try:
            if self.version == 1:
                (self.path / "memory.force_empty").write_text("0\n")
            elif reclaim:
                usage = self.usage()
                if usage:
                    (self.path / "memory.reclaim").write_text(f"{usage}\n")
            else:
                (self.path / "memory.high").write_text("0\n")
                (self.path / "memory.high").write_text("max\n")
            return SettleResult(method, True)
        except OSError as exc:
            if self.version == 2 and exc.errno == errno.EAGAIN:
                return SettleResult(method, True)
            return SettleResult("", False, f"{method}: {exc.strerror or exc}")

    def remove(self, timeout: float = 2.0) -> bool:
        """rmdir, retrying while exiting tasks still hold it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    return False
                time.sleep(0.02)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) >= 5 and len(rfields) >= 3:
                out.append((fields[4], rfields[0], rfields[2]))
    return out


def memcg_mount() -> tuple[Path, int]:
    """Where the memory controller is mounted and its cgroup version."""
    for point, fstype, opts in _mounts():
        if fstype == "cgroup" and "memory" in opts.split(","):
            return Path(point), 1
    for point, fstype, _ in _mounts():
        if fstype == "cgroup2":
            controllers = Path(point) / "cgroup.controllers"
            try:
                if "memory" in controllers.read_text().split():
                    return Path(point), 2
            except OSError:
                continue
    raise ChargetraceError("no memory cgroup controller is mounted (cgroup v1 memory or v2 with memory)")


def memcg_of_pid(pid: int | str = "self") -> Memcg:
    """The memory cgroup of a process."""
    root, version = memcg_mount()
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError as exc:
        raise ChargetraceError(f"process {pid}: cannot read its cgroup ({exc.strerror})") from None
    for line in text.splitlines():
        hid, controllers, path = line.split(":", 2)
        if version == 1 and "memory" in controllers.split(","):
            return Memcg(root / path.lstrip("/"), 1)
        if version == 2 and hid == "0":
            return Memcg(root / path.lstrip("/"), 2)
    raise ChargetraceError(f"process {pid}: no memory cgroup in /proc/{pid}/cgroup")


def memcg_at(path: str | os.PathLike[str]) -> Memcg:
    """A memory cgroup given by directory (absolute, or relative to the mount)."""
    root, version = memcg_mount()
    p = Path(path)
    if not p.is_absolute() or not p.exists():
        p = root / str(path).lstrip("/")
    if not (p / "cgroup.procs").exists():
        raise ChargetraceError(f"{path}: not a memory cgroup directory (under {root})")
    return Memcg(p, version)


def create_child(parent: Memcg, name: str) -> Memcg:
    """mkdir a fresh child memcg (the scope of ``record -- CMD``)."""
    path = parent.path / name
    try:
        if parent.version == 2:
            ctl = parent.path / "cgroup.subtree_control"
            if "memory" not in ctl.read_text().split():
                ctl.write_text("+memory\n")
        path.mkdir()
    except OSError as exc:
        raise ChargetraceError(f"cannot create memory cgroup {path} ({exc.strerror or exc})") from None
    return Memcg(path, parent.version)


def remove_stale_children(parent: Memcg, prefix: str = "chargetrace-") -> list[Path]:
    """rmdir ``<prefix><pid>`` children left by a recorder that was killed
    (SIGKILL skips its cleanup) when that pid is gone and the cgroup is empty."""
    removed = []
    for child in parent.path.glob(f"{prefix}*"):
        pid = child.name[len(prefix):]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        memcg = Memcg(child, parent.version)
        if not memcg.procs() and memcg.remove(timeout=0.1):
            removed.append(child)
    return removed


def hierarchy_id(version: int) -> int:
    """The memory controller's hierarchy id, as the cgroup tracepoints' root
    field gives it (cgroup->root->hierarchy_id): the second column of its
    /proc/cgroups line, which is 0 (the default hierarchy) when it is on v2."""
    try:
        for line in Path("/proc/cgroups").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "memory":
                return int(parts[1])
    except (OSError, ValueError, IndexError):
        pass
    if version == 2:
        return 0
    raise ChargetraceError("/proc/cgroups: no memory controller line")


#: memory.stat keys that hold memory reclaim leaves behind, and why (v1 and v2 names).
_HELD = (
    ("shmem", "shmem/tmpfs/memfd pages (reclaim needs swap)"),
    ("rss", "anonymous pages (reclaim needs swap)"),
    ("anon", "anonymous pages (reclaim needs swap)"),
    ("kmem.usage", "kernel memory (slab, page tables: freed with their objects)"),
    ("kernel", "kernel memory (slab, page tables: freed with their objects)"),
    ("sock", "socket buffers"),
    ("cache", "page cache"),
    ("file", "page cache"),
)


def held_by(stat: dict[str, int]) -> str:
    """Why memory stayed charged after settling, from a memory.stat sample:
    each non-zero holder with its bytes, largest first ("" when none)."""
    seen: dict[str, int] = {}
    for key, why in _HELD:
        value = stat.get(key, 0)
        if key in ("cache", "file"):
            value -= stat.get("shmem", 0)  # v1 cache and v2 file include shmem
        if value > 0 and why not in seen:
            seen[why] = value
    return "; ".join(f"{why}: {v} bytes" for why, v in sorted(seen.items(), key=lambda kv: -kv[1]))
