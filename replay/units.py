"""What a memcg holds, and in which unit each source reports it: one table.

Scope: the memcg counters that the replay model and the counter rules read
(``memcg_stat`` rows from the memcg:* tracepoints, present from Linux 6.13:
0aa3ef363792 "memcg: add tracing for memcg stat updates"),
and the ``memory.stat`` keys the recorder samples (``memstat`` rows, cgroup v1
and v2). Every rule that turns a counter into pages goes through this module;
none keeps its own list.

The kernel facts behind it are written out in docs/memcg-contents.md (what a
memcg holds, per kernel era) and docs/accounting.md (per-CPU stock, splits).

Units, checked against the 6.18 sources (mm/memcontrol.c, mm/memcontrol-v1.c,
include/trace/events/memcg.h) and by tests/live/test_units_live.py on this
machine's kernel:

* ``count_memcg_events`` (tracepoint ``memcg:count_memcg_events``) reports
  **event counts**. On cgroup v1 PGPGIN/PGPGOUT are one event per charged /
  uncharged folio whatever its size: memcg1_charge_statistics() ("pagein of a
  big page is an event. So, ignore page size") for charges, migration
  force-charges and v1 swap-out, and the uncharge batch's ``pgpgout``
  (uncharge_folio() does ``ug->pgpgout++`` per non-kmem folio, then
  memcg1_uncharge_batch()). A large folio charged once and split before it is
  freed is uncharged piece by piece (split_page_memcg() copies memcg_data), so
  PGPGOUT then exceeds PGPGIN by the extra pieces. From 6.11 these exist only
  with CONFIG_MEMCG_V1 (memcg_vm_event_stat[]).
* ``mod_memcg_state`` / ``mod_memcg_lruvec_state`` report **page deltas**:
  mod_memcg_state() and mod_memcg_lruvec_state() pass the value through
  memcg_state_val_in_pages() before the tracepoint. Items the kernel keeps in
  pages (NR_ANON_MAPPED, NR_FILE_PAGES, NR_SHMEM, NR_*_THPS, MEMCG_KMEM,
  MEMCG_SOCK, MEMCG_SWAP, NR_PAGETABLE) are exact, and a large folio moves them
  by its page count (__lruvec_stat_mod_folio() with folio_nr_pages()). Items the
  kernel keeps in bytes or KiB (NR_SLAB_*_B, bytes since "mm: memcg: convert
  vmstat slab counters to bytes" in v5.9, MEMCG_PERCPU_B, MEMCG_ZSWAP_B, NR_KERNEL_STACK_KB) are **rounded**: a
  positive sub-page delta becomes 1 page and a negative one rounds away from
  zero (the unsigned division in memcg_state_val_in_pages(), from "mm: memcg:
  normalize the value passed into memcg_rstat_updated()", v6.7). Their sums
  are not byte-exact, so no rule sums them; the slab is counted through
  MEMCG_KMEM, which the objcg code charges in whole pages
  (obj_cgroup_charge_pages() -> account_kmem()).
* ``memory.stat`` prints bytes for sizes. v2 keys are hierarchical
  (memory_stat_format() reads the rstat-aggregated state); v1 plain keys are
  local to the memcg and ``total_*`` keys hierarchical (memcg1_stat_format(),
  mm/memcontrol-v1.c). v1 has no ``kernel``/``sock`` keys: kernel memory is
  ``memory.kmem.usage_in_bytes`` (sampled as item ``kmem.usage``), and socket
  memory is charged to ``tcpmem``, not to the memory counter
  (mem_cgroup_charge_skmem() on v1).

What the kernel's usage figure (memory.current on v2, memory.usage_in_bytes on
v1: the memcg's page_counter, hierarchical) contains: every charged folio
(anon, page cache, shmem/tmpfs/memfd), kernel memory (kmem: slab, page tables,
stacks, percpu, vmalloc), socket memory on v2 only, and up to
MEMCG_CHARGE_BATCH pages of per-CPU charge stock (try_charge_memcg()).
Swap is counted apart (v1 memcg1_swapout() moves the charge off the memory
counter; v2 keeps the folio's charge until it is freed, then only swap.current).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "EVENTS",
    "PAGES",
    "ROUNDED_PAGES",
    "CounterUnit",
    "COUNTERS",
    "MEMSTAT_KEYS",
    "Held",
    "held_from_counters",
    "held_from_memstat",
    "MEMCG_CHARGE_BATCH",
]

#: Unit of a counter delta as the tracepoint reports it.
EVENTS = "events"  # one per folio (or per occurrence), whatever its size
PAGES = "pages"  # exact page delta
ROUNDED_PAGES = "rounded pages"  # a byte/KiB counter rounded to pages per update: not summable

#: Pages of charge a CPU may hold in its stock (try_charge_memcg(), mm/memcontrol.c).
MEMCG_CHARGE_BATCH = 64

_EV_TP = "memcg:count_memcg_events"
_STATE_TP = "memcg:mod_memcg_state"
_LRUVEC_TP = "memcg:mod_memcg_lruvec_state"


@dataclass(frozen=True)
class CounterUnit:
    """One memcg counter: which tracepoint reports it, in which unit, and which
    charge (if any) it measures."""

    item: str  #: enum name as the recorder resolves it from BTF
    tracepoint: str
    unit: str  #: EVENTS, PAGES or ROUNDED_PAGES
    holds: str  #: anon, file, shmem, kmem, sock, swap, or "" (not a held charge)
    source: str  #: kernel file / function / commit that decides the unit


COUNTERS: dict[str, CounterUnit] = {
    c.item: c
    for c in (
        CounterUnit("PGPGIN", _EV_TP, EVENTS, "",
                    "mm/memcontrol-v1.c memcg1_charge_statistics(): one event per charged folio"),
        CounterUnit("PGPGOUT", _EV_TP, EVENTS, "",
                    "mm/memcontrol.c uncharge_folio() ug->pgpgout++ per folio; memcg1_uncharge_batch()"),
        CounterUnit("THP_FAULT_ALLOC", _EV_TP, EVENTS, "", "mm/huge_memory.c: one event per THP fault"),
        CounterUnit("NR_ANON_MAPPED", _LRUVEC_TP, PAGES, "anon",
                    "mm/rmap.c __folio_add_anon_rmap()/__folio_remove_rmap(): +-folio_nr_pages()"),
        CounterUnit("NR_ANON_THPS", _LRUVEC_TP, PAGES, "",
                    "mm/rmap.c: PMD-mapped anon THP pages (part of NR_ANON_MAPPED)"),
        CounterUnit("NR_FILE_PAGES", _LRUVEC_TP, PAGES, "file",
                    "mm/filemap.c __filemap_add_folio()/page_cache_delete(): +-nr pages, shmem included"),
        CounterUnit("NR_SHMEM", _LRUVEC_TP, PAGES, "shmem",
                    "mm/shmem.c shmem_add_to_page_cache(): +-nr pages (also in NR_FILE_PAGES)"),
        CounterUnit("NR_SHMEM_THPS", _LRUVEC_TP, PAGES, "", "mm/shmem.c: huge shmem pages (part of NR_SHMEM)"),
        CounterUnit("NR_FILE_THPS", _LRUVEC_TP, PAGES, "", "mm/filemap.c: huge page-cache pages"),
        CounterUnit("MEMCG_KMEM", _STATE_TP, PAGES, "kmem",
                    "mm/memcontrol.c account_kmem_nmi_safe()/uncharge_batch(): whole pages, slab included"),
        CounterUnit("MEMCG_SOCK", _STATE_TP, PAGES, "sock",
                    "mm/memcontrol.c mem_cgroup_charge_skmem()/uncharge_skmem() (v2 memory counter)"),
        CounterUnit("MEMCG_SWAP", _STATE_TP, PAGES, "swap",
                    "mm/memcontrol.c __mem_cgroup_try_charge_swap(); mm/memcontrol-v1.c memcg1_swapout()"),
        CounterUnit("NR_PAGETABLE", _LRUVEC_TP, PAGES, "", "include/linux/mm.h pagetable_*_ctor(): part of kmem"),
        CounterUnit("NR_SLAB_RECLAIMABLE_B", _LRUVEC_TP, ROUNDED_PAGES, "",
                    "bytes; mm/memcontrol.c memcg_state_val_in_pages() rounds each update"),
        CounterUnit("NR_SLAB_UNRECLAIMABLE_B", _LRUVEC_TP, ROUNDED_PAGES, "",
                    "bytes; mm/memcontrol.c memcg_state_val_in_pages() rounds each update"),
        CounterUnit("MEMCG_PERCPU_B", _STATE_TP, ROUNDED_PAGES, "",
                    "bytes; mm/memcontrol.c memcg_state_val_in_pages() rounds each update"),
        CounterUnit("MEMCG_ZSWAP_B", _STATE_TP, ROUNDED_PAGES, "",
                    "bytes; mm/memcontrol.c memcg_state_val_in_pages() rounds each update"),
        CounterUnit("NR_KERNEL_STACK_KB", _LRUVEC_TP, ROUNDED_PAGES, "",
                    "KiB; mm/memcontrol.c memcg_page_state_unit() = SZ_1K, rounded per update"),
    )
}

#: memory.stat keys (``memstat`` rows) the replay reads -> what they hold.
#: All are bytes as the file prints them. ``hier`` = hierarchical value.
MEMSTAT_KEYS: dict[str, tuple[str, bool]] = {
    # cgroup v2: memory_stat_format(), mm/memcontrol.c (hierarchical)
    "anon": ("anon", True),
    "file": ("file", True),  # page cache including shmem
    "shmem": ("shmem", True),
    "kernel": ("kmem", True),  # MEMCG_KMEM: slab, stacks, page tables, percpu, vmalloc
    "sock": ("sock", True),
    # cgroup v1: memcg1_stat_format(), mm/memcontrol-v1.c (local; total_* hierarchical)
    "rss": ("anon", False),
    "cache": ("file", False),  # NR_FILE_PAGES, shmem included
    "total_rss": ("anon", True),
    "total_cache": ("file", True),
    "total_shmem": ("shmem", True),
    "kmem.usage": ("kmem", True),  # memory.kmem.usage_in_bytes (page_counter: hierarchical)
}
# v1 "shmem" (local) has the same key as v2's; which one it is follows from the
# usage file the trace samples (see held_from_memstat).


@dataclass
class Held:
    """Pages a memcg holds, by kind of memory. ``file`` excludes shmem."""

    anon: int = 0
    file: int = 0
    shmem: int = 0
    kmem: int = 0
    sock: int = 0
    source: str = ""  #: "memory.stat" or "counters"

    def total(self, v1: bool) -> int:
        """Pages the kernel's usage figure contains (v1: socket memory is not
        charged to the memory counter)."""
        return self.anon + self.file + self.shmem + self.kmem + (0 if v1 else self.sock)

    def legitimately_held(self) -> int:
        """Pages that may stay charged once every task exited: page cache of files
        that still exist, shmem/tmpfs, kernel objects and socket buffers."""
        return self.file + self.shmem + self.kmem + self.sock

    def folio_backed(self) -> int:
        """Of those, the pages held in folios a ``charge`` row can have charged: page
        cache and shmem. Kernel objects and socket buffers are charged through
        obj_cgroup / page_counter paths (mm/memcontrol.c __memcg_kmem_charge_page(),
        mem_cgroup_charge_skmem()) that never produce a folio charge, so they can
        never explain a folio charge left open."""
        return self.file + self.shmem

    def describe(self) -> str:
        parts = [(self.file, "page cache"), (self.shmem, "shmem/tmpfs"), (self.kmem, "kernel memory"),
                 (self.sock, "socket buffers"), (self.anon, "anon")]
        return ", ".join(f"{n} page(s) of {what}" for n, what in parts if n) or "nothing"

    def __add__(self, other: "Held") -> "Held":
        return Held(self.anon + other.anon, self.file + other.file, self.shmem + other.shmem,
                    self.kmem + other.kmem, self.sock + other.sock, self.source or other.source)


def held_from_counters(counters: Mapping[str, int]) -> Held:
    """Held pages from summed page-unit counter deltas (a memcg observed from
    its creation, so the sums are absolute)."""
    file_all = counters.get("NR_FILE_PAGES", 0)
    shmem = counters.get("NR_SHMEM", 0)
    return Held(
        anon=counters.get("NR_ANON_MAPPED", 0),
        file=file_all - shmem,
        shmem=shmem,
        kmem=counters.get("MEMCG_KMEM", 0),
        sock=counters.get("MEMCG_SOCK", 0),
        source="counters",
    )


def held_from_memstat(values: Mapping[str, int], page_size: int, v1: bool,
                      hierarchical: bool = True) -> Held | None:
    """Held pages from sampled memory.stat keys, or None if none of them was
    sampled. v1: the ``total_*`` keys when ``hierarchical`` and present."""
    if not any(key in values for key in MEMSTAT_KEYS):
        return None

    def pick(local: str, total: str) -> int:
        key = total if hierarchical and total in values else local
        return values.get(key, 0) // page_size

    if v1:
        anon, file_all, shmem = pick("rss", "total_rss"), pick("cache", "total_cache"), pick("shmem", "total_shmem")
        kmem, sock = values.get("kmem.usage", 0) // page_size, 0
    else:
        anon, file_all, shmem = (values.get(k, 0) // page_size for k in ("anon", "file", "shmem"))
        kmem, sock = values.get("kernel", 0) // page_size, values.get("sock", 0) // page_size
    return Held(anon, file_all - shmem, shmem, kmem, sock, "memory.stat")
