"""Tracepoint (and kprobe event) records -> chargetrace trace rows.

Each mapped tracepoint produces the row the chargetrace recorder produces for
the same tracepoint (traces/SCHEMA.md), with ``probe`` = ``tp:SYS:NAME`` so a
converted trace says which tracepoint each row came from:

* ``memcg:count_memcg_events`` / ``mod_memcg_state`` / ``mod_memcg_lruvec_state``
  (added in v6.13 by Shakeel Butt's commit "memcg: add tracing for memcg stat
  updates"; absent in 6.12) -> ``memcg_stat``: memcg = ``memcg_id``, item = the counter's enum
  name from the recorded kernel's BTF (the recorder's own tables,
  ``chargetrace.tracer.catalogue.item_tables``), value = ``val``;
* ``exceptions:page_fault_user`` -> ``fault``; ``sched:sched_process_fork`` ->
  ``fork``; ``sched:sched_process_exit`` -> ``exit`` (value = ``group_dead``);
* ``migrate:mm_migrate_pages`` -> ``page_migration`` (item = reason);
* kprobe events (``probe:FN``, ``kprobes:FN``, ``FN__return`` for a return
  probe) of the functions in :data:`KPROBE_KINDS` whose fetch arguments are
  named after schema columns (``folio=``, ``memcg=``, ``nr_pages=``, ...) ->
  that kind, with ``probe`` = ``kprobe:FN`` / ``kretprobe:FN``.

Other tracepoints of the kmem, pagemap, migrate, sched and exceptions systems
(``mm_page_alloc``, ``mm_lru_insertion``, ...) have no chargetrace kind: they
are counted per name in the result, not dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .textparse import LOST_SYSTEM, Record

__all__ = ["Mapper", "TRACEPOINT_KINDS", "KPROBE_KINDS", "SYSTEM_OF"]

#: (system, name) -> the row kind it maps to.
TRACEPOINT_KINDS: dict[tuple[str, str], str] = {
    ("memcg", "count_memcg_events"): "memcg_stat",
    ("memcg", "mod_memcg_state"): "memcg_stat",
    ("memcg", "mod_memcg_lruvec_state"): "memcg_stat",
    ("exceptions", "page_fault_user"): "fault",
    ("sched", "sched_process_fork"): "fork",
    ("sched", "sched_process_exit"): "exit",
    ("migrate", "mm_migrate_pages"): "page_migration",
}

#: Function -> kind for kprobe events; their named fetch args fill the columns.
KPROBE_KINDS: dict[str, str] = {
    "__mem_cgroup_charge": "charge",
    "__mem_cgroup_uncharge": "uncharge",
    "mem_cgroup_migrate": "transfer",
    "mem_cgroup_replace_folio": "replace",
    "free_zone_device_folio": "device_free",
    "free_zone_device_page": "device_free",
    "split_page_memcg": "split",
    "migrate_vma_setup": "migrate_setup",
    "migrate_vma_pages": "migrate_pages",
    "migrate_vma_finalize": "migrate_finalize",
}
_KPROBE_SYSTEMS = ("probe", "kprobes")
_COLUMNS = ("folio", "folio_new", "nr_pages", "memcg", "memcg_new", "addr", "ret", "value")

#: trace-cmd prints event names without their system: name -> system.
SYSTEM_OF: dict[str, str] = {name: sys for sys, name in TRACEPOINT_KINDS}


def _int(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    text = text.strip().rstrip(",")
    try:
        return int(text, 0)
    except ValueError:
        pass
    if text in ("true", "false"):
        return int(text == "true")
    try:
        return int(text, 16)  # %lx without 0x
    except ValueError:
        return default


class Mapper:
    """Turns records into row dicts; ``items`` names memcg counters per probe
    (a table, or a callable that gives it, asked once at the first counter)."""

    def __init__(self, items: dict[str, dict[int, str]] | Callable[[], dict[str, dict[int, str]]]) -> None:
        self._items = items
        self.unmapped: dict[str, int] = {}
        self.probes_seen: dict[str, tuple[str, str]] = {}  # probe -> (kind, how)
        self.unnamed_items: set[str] = set()
        #: Events the recording tool dropped, per CPU (meta.drops).
        self.drops: dict[str, int] = {}
        self._first_ts: int | None = None
        self._last_lost: dict[int, int] = {}
        self._by_kind: dict[str, Callable[[Record, dict[str, Any]], None]] = {
            "memcg_stat": self._memcg_stat,
            "fault": self._fault,
            "fork": self._fork,
            "exit": self._exit,
            "page_migration": self._page_migration,
        }

    def row(self, rec: Record) -> dict[str, Any] | None:
        if self._first_ts is None:
            self._first_ts = rec.ts_ns
        if rec.system == LOST_SYSTEM:
            return self._lost(rec)
        system = rec.system or SYSTEM_OF.get(rec.name, "")
        base = {"ts_ns": rec.ts_ns, "cpu": rec.cpu, "pid": rec.pid, "tid": rec.tid, "comm": rec.comm}
        kind = TRACEPOINT_KINDS.get((system, rec.name))
        if kind is not None:
            probe = f"tp:{system}:{rec.name}"
            row = {**base, "kind": kind, "probe": probe}
            self._by_kind[kind](rec, row)
            self.probes_seen.setdefault(probe, (kind, "tracepoint"))
            return row
        if system in _KPROBE_SYSTEMS or system.startswith("probe_"):
            func, ret = rec.name, rec.name.endswith("__return")
            func = func[: -len("__return")] if ret else func
            kind = KPROBE_KINDS.get(func)
            if kind is not None:
                probe = f"{'kretprobe' if ret else 'kprobe'}:{func}"
                row = {**base, "kind": kind, "probe": probe}
                for col in _COLUMNS:
                    if col in rec.fields:
                        row[col] = _int(rec.fields[col])
                self.probes_seen.setdefault(probe, (kind, "kprobe"))
                return row
        key = f"{system}:{rec.name}" if system else rec.name
        self.unmapped[key] = self.unmapped.get(key, 0) + 1
        return None

    def _lost(self, rec: Record) -> dict[str, Any]:
        # The tools say how many were dropped, not when: the window reaches back
        # to the previous drop on that CPU (or the first event), so every
        # finding that could depend on them is marked inconclusive.
        n = _int(rec.fields.get("lost"))
        start = self._last_lost.get(rec.cpu, self._first_ts or 0)
        self._last_lost[rec.cpu] = rec.ts_ns
        self.drops[str(rec.cpu)] = self.drops.get(str(rec.cpu), 0) + n
        self.probes_seen.setdefault("recorder", ("lost", "recorder"))
        return {"ts_ns": rec.ts_ns, "cpu": rec.cpu, "kind": "lost", "probe": "recorder", "value": n,
                "span_ns": max(0, rec.ts_ns - start)}

    # -- per kind ----------------------------------------------------------------
    def _memcg_stat(self, rec: Record, row: dict[str, Any]) -> None:
        f = rec.fields
        number = _int(f.get("item"), -1)
        if callable(self._items):
            self._items = self._items()
        name = self._items.get(row["probe"], {}).get(number)
        if name is None:
            # Without the recorded kernel's BTF the number is all there is.
            name = f"item{number}"
            self.unnamed_items.add(row["probe"])
        row.update(memcg=_int(f.get("memcg_id", f.get("id"))), item=name, value=_int(f.get("val")))

    def _fault(self, rec: Record, row: dict[str, Any]) -> None:
        row.update(addr=_int(rec.fields.get("address")), value=_int(rec.fields.get("error_code")))

    def _fork(self, rec: Record, row: dict[str, Any]) -> None:
        f = rec.fields
        row.update(pid=_int(f.get("pid"), rec.pid), value=_int(f.get("child_pid")))

    def _exit(self, rec: Record, row: dict[str, Any]) -> None:
        # group_dead says whether the whole thread group is gone; kernels whose
        # sched_process_exit lacks the field leave it 0 (= not known to be gone).
        row.update(value=_int(rec.fields.get("group_dead"), 0))

    def _page_migration(self, rec: Record, row: dict[str, Any]) -> None:
        f = rec.fields
        row.update(item=f.get("reason", ""), value=_int(f.get("nr_succeeded")), ret=_int(f.get("nr_failed")))
