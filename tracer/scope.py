"""The recording's scope while it runs: which memcgs are in it, where its
tasks went, and the samples taken at each phase.

The BPF side (tracer/bpf/recorder.c) adds a memcg to the scope the moment a
scope task creates it (``cgroup:cgroup_mkdir``) and follows a scope task
into a memcg created while armed (``cgroup:cgroup_attach_task``); a task
moving into the scope joins it. This module completes that from user space:
:meth:`ScopeTracker.rescan` walks the tree below every scope memcg and adds
descendants made by other tasks (their charges before the rescan are not
seen; ``created_in_scope`` says whether they were made while armed), and it
reads back what the BPF side saw (moves out, fault counts) for the metadata.

Samples: :meth:`ScopeTracker.sample` returns one ``usage`` row per scope memcg
that still exists and one ``memstat`` row per memory.stat key (plus v1
``kmem.usage``), to be written as one phase's sample set.

Limits: a task moved with v1's per-thread ``tasks`` file is followed only
when it is its group's leader; a memcg a scope task moved into that existed
before arming is not followed (its earlier charges are unknown): the task is
listed in ``moved_out`` and its later faults count as unseen.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

from .cgroups import Memcg, held_by, hierarchy_id, memcg_mount

__all__ = ["ScopeTracker"]


class ScopeTracker:
    """Scope memcgs and tasks of one recording (not used system-wide)."""

    def __init__(self, bpf: Any, root: Memcg | None, *, fresh: bool, by_tgid: bool = False) -> None:
        self._bpf = bpf
        self.root = root
        self.fresh = fresh
        #: A ``-p`` scope is the process and its children, not everything in
        #: its memcg: its tasks are the scope's thread groups only.
        self.by_tgid = by_tgid
        self.entries: dict[int, dict[str, Any]] = {}
        self._memcgs: dict[int, Memcg] = {}
        self._gone: set[int] = set()
        self._mount, self.version = memcg_mount()
        if root is not None:
            self._add(root, created=fresh)

    # -- BPF maps ------------------------------------------------------------
    def arm_config(self) -> None:
        """Tell the BPF side which hierarchy is the memory controller's."""
        self._bpf[b"conf"][ctypes.c_int(0)] = ctypes.c_uint(hierarchy_id(self.version))

    def add_tgid(self, tgid: int) -> None:
        self._bpf[b"scope_tgid"][ctypes.c_uint(tgid)] = ctypes.c_ubyte(1)

    def _created(self) -> dict[int, int]:
        return {int(k.value): int(v.value) for k, v in self._bpf[b"created"].items()}

    def _add(self, memcg: Memcg, *, created: bool) -> None:
        mid = memcg.id
        if mid in self.entries:
            return
        self._bpf[b"scope_memcg"][ctypes.c_ulonglong(mid)] = ctypes.c_ubyte(1)
        self._memcgs[mid] = memcg
        self.entries[mid] = {"memcg": mid, "parent": memcg.parent_id, "path": str(memcg.path),
                             "created_in_scope": created}

    def _find(self, mid: int) -> Memcg | None:
        """The directory of memcg ``mid`` anywhere in the hierarchy (rare:
        a memcg a scope task made, or was followed into, outside the scope)."""
        for dirpath, _dirs, _files in os.walk(self._mount):
            try:
                if os.stat(dirpath).st_ino == mid:
                    return Memcg(Path(dirpath), self.version)
            except OSError:
                continue
        return None

    def rescan(self) -> None:
        """Add descendants of every scope memcg and the memcgs the BPF side
        put in the scope, with their hierarchy."""
        created = self._created()
        in_bpf = {int(k.value) for k in self._bpf[b"scope_memcg"].keys()}
        for mid in in_bpf - self.entries.keys() - self._gone:
            found = self._find(mid)
            if found is not None:
                self._add(found, created=mid in created)
            else:
                # Removed before a rescan saw it: its rows are in scope all the
                # same; path and parent are unknown ("" and 0). Not walked for again.
                self._gone.add(mid)
                self.entries[mid] = {"memcg": mid, "parent": 0, "path": "", "created_in_scope": mid in created}
        for memcg in list(self._memcgs.values()):
            try:
                below = memcg.descendants()
            except OSError:
                continue
            for child in below:
                try:
                    cid = child.id
                except OSError:
                    continue  # removed meanwhile
                if cid not in self.entries:
                    self._add(child, created=cid in created)

    # -- what the BPF side saw --------------------------------------------------
    def moved_out(self) -> list[dict[str, Any]]:
        out = []
        for k, v in self._bpf[b"moved"].items():
            out.append({"pid": int(k.value), "memcg": int(v.memcg), "followed": bool(v.followed)})
        return sorted(out, key=lambda m: m["pid"])

    def unseen_fault_share(self) -> float:
        counts = [sum(int(x) for x in self._bpf[b"fault_counts"][ctypes.c_int(i)]) for i in (0, 1)]
        return counts[1] / counts[0] if counts[0] else 0.0

    # -- tasks -------------------------------------------------------------------
    def live_memcgs(self) -> list[Memcg]:
        return [m for m in self._memcgs.values() if m.path.is_dir()]

    def _in_tree(self, memcg: Memcg) -> bool:
        return self.root is not None and (memcg.path == self.root.path or self.root.path in memcg.path.parents)

    def tasks(self) -> list[dict[str, Any]]:
        """Processes of the scope now: everything in the scope memcg's tree,
        and the scope's own thread groups in memcgs outside it (never other
        tasks that happen to share a followed memcg)."""
        tgids = {int(k.value) for k in self._bpf[b"scope_tgid"].keys()}
        seen: dict[int, str] = {}
        for memcg in self.live_memcgs():
            whole = self._in_tree(memcg) and not self.by_tgid
            for pid, comm in memcg.tasks():
                if whole or pid in tgids:
                    seen[pid] = comm
        return [{"pid": p, "comm": c} for p, c in sorted(seen.items())]

    def kill_left(self, timeout: float = 2.0) -> None:
        """SIGKILL the scope's tasks (:meth:`tasks`) and wait for them to go;
        only for a scope memcg the recorder created."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.tasks()
            if not left:
                return
            for task in left:
                try:
                    os.kill(task["pid"], 9)
                except OSError:
                    pass
            time.sleep(0.05)

    def oom_kills(self) -> int | None:
        counts = [m.oom_kills() for m in self.live_memcgs()]
        known = [c for c in counts if c is not None]
        return sum(known) if known else None

    # -- samples -----------------------------------------------------------------
    def sample(self) -> tuple[dict[str, list[Any]], dict[int, dict[str, int]]]:
        """Columns of one sample set (usage, then memstat rows, per memcg) and
        the memstat values per memcg."""
        rows: list[tuple[str, str, int, str, int]] = []  # kind, probe, memcg, item, value
        stats: dict[int, dict[str, int]] = {}
        for mid, memcg in self._memcgs.items():
            try:
                usage = memcg.usage()
            except (OSError, ValueError, IndexError):
                continue  # removed by the workload
            f = memcg.usage_file
            rows.append(("usage", f"sample:{f}", mid, f, usage))
            stat = memcg.memstat()
            stats[mid] = dict(stat)
            rows.extend(("memstat", "sample:memory.stat", mid, key, value) for key, value in stat)
        now, me = time.monotonic_ns(), os.getpid()
        cols: dict[str, list[Any]] = {name: [r[i] for r in rows]
                                      for i, name in enumerate(("kind", "probe", "memcg", "item", "value"))}
        cols["ts_ns"] = [now] * len(rows)
        cols["pid"] = [me] * len(rows)
        return cols, stats

    def settle_report(self, result_method: str, done: bool, error: str, usage_after: int | None,
                      stat_after: dict[str, int]) -> dict[str, Any]:
        """``scope.settle`` from a settle attempt and the sample after it."""
        unreclaimed = usage_after if usage_after is not None else 0
        why = error or (held_by(stat_after) if unreclaimed else "")
        if unreclaimed and not why:
            why = "per-CPU charge stock or memory not itemised in memory.stat"
        return {"method": result_method, "done": done, "unreclaimed_bytes": unreclaimed, "why": why}
