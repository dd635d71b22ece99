"""What the recording covered: the scope's memcgs, its tasks, what it could not see.

Reads the trace metadata's ``scope`` (traces/SCHEMA.md) once and answers the
questions the rules and the report ask: which memcgs are in scope and how they
nest, which of them were observed from their creation (every charge in them is
in the trace), whether the scope is *closed* (no task left, drained) so leaks
may be judged, and what the recording could not see (tasks that moved out,
faults charged to unrecorded memcgs, charges made before the trace).

Limits: traces older than schema 2 name only the scope memcg; their
``exited`` flag is taken as written (the recorder then assumed the main
process's exit ended the scope).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chargetrace.traces import ChargetraceError, TraceMeta

__all__ = ["ScopeView"]


@dataclass
class ScopeView:
    kind: str
    memcg: int
    fresh: bool
    exited: bool
    settled: bool
    #: memcg -> parent memcg for every memcg the recorder listed in scope.
    parents: dict[int, int] = field(default_factory=dict)
    created_in_scope: set[int] = field(default_factory=set)
    paths: dict[int, str] = field(default_factory=dict)
    tasks_left: list[dict] = field(default_factory=list)
    moved_out: list[dict] = field(default_factory=list)
    unseen_fault_share: float = 0.0
    settle: dict = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: TraceMeta) -> "ScopeView":
        try:
            return cls._from_meta(meta)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ChargetraceError(f"malformed scope metadata ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_meta(cls, meta: TraceMeta) -> "ScopeView":
        s = meta.scope
        settle = s.settle or {}
        # schema 2 says whether draining finished; older traces only name the method
        settled = bool(settle.get("done")) if s.settle is not None else bool(s.settled)
        tasks_left = list(s.tasks_left or [])
        view = cls(
            kind=s.kind, memcg=s.memcg, fresh=bool(s.fresh),
            exited=bool(s.exited) and not tasks_left, settled=settled,
            tasks_left=tasks_left, moved_out=list(s.moved_out or []),
            unseen_fault_share=float(s.unseen_fault_share or 0.0), settle=dict(settle),
            phases=dict(s.phases or {}),
        )
        for entry in s.memcgs or []:
            memcg = int(entry.get("memcg") or 0)
            if not memcg:
                continue
            view.parents[memcg] = int(entry.get("parent") or 0)
            view.paths[memcg] = str(entry.get("path") or "")
            if entry.get("created_in_scope"):
                view.created_in_scope.add(memcg)
        if s.memcg and s.memcg not in view.parents:
            view.parents[s.memcg] = 0
        return view

    # -- membership ----------------------------------------------------------------
    @property
    def memcgs(self) -> frozenset[int]:
        """The scope memcg and its descendants (empty for a system-wide trace)."""
        return frozenset(m for m in self.parents if m)

    def children(self, memcg: int) -> list[int]:
        return [m for m, parent in self.parents.items() if parent == memcg and m != memcg]

    def subtree(self, memcg: int) -> list[int]:
        """``memcg`` and every descendant the metadata lists."""
        out, todo = [], [memcg]
        while todo:
            m = todo.pop()
            if m in out:
                continue
            out.append(m)
            todo.extend(self.children(m))
        return out

    # -- what the trace can prove ----------------------------------------------------
    def observed_from_creation(self, memcg: int) -> bool:
        """Every charge of ``memcg`` is in the trace: the recorder created it after
        arming (the scope memcg of a fresh recording), or saw it created inside the
        scope."""
        if not memcg:
            return False
        if memcg == self.memcg:
            return self.fresh
        return memcg in self.created_in_scope

    def closed(self, memcg: int) -> bool:
        """Observed from creation, no task of the scope is left, and it was drained:
        what it still holds is held by something other than the scope's tasks."""
        return self.observed_from_creation(memcg) and self.exited and self.settled

    def unseen(self) -> list[str]:
        """Why the trace may miss charges of the scope's tasks (empty: nothing known)."""
        why = []
        unfollowed = [m for m in self.moved_out if not m.get("followed")]
        if unfollowed:
            pids = ", ".join(f"{m.get('pid')} -> memcg {m.get('memcg')}" for m in unfollowed[:5])
            why.append(f"{len(unfollowed)} task(s) moved to memcgs outside the scope and were not followed ({pids})")
        if self.unseen_fault_share > 0:
            why.append(f"{self.unseen_fault_share:.1%} of the scope's faults charged memcgs the trace did not record")
        return why

    def still_running(self) -> str:
        """The tasks still in the scope at the end, as a phrase ("" if none)."""
        if not self.tasks_left:
            return ""
        shown = ", ".join(f"{t.get('pid')} ({t.get('comm', '')})" for t in self.tasks_left[:5])
        more = f" and {len(self.tasks_left) - 5} more" if len(self.tasks_left) > 5 else ""
        return f"{len(self.tasks_left)} task(s) still in the scope when the recording ended: {shown}{more}"
