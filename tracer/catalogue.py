"""The probe catalogue: logical events and their candidate probes.

Each logical event (``fault``, ``charge``, ``memcg_events``, ...) lists
candidate probe *variants* in preference order: tracepoint, raw tracepoint,
fentry/fexit, kprobe. :func:`.trials.choose_probes` decides per event by
actually compiling, loading and attaching the candidates; this module only
says what the candidates are, what each needs (prechecks, cflags) and how
its ``item`` numbers are named.

Limits: one variant per logical event; fentry variants exist only for the
6.9+ function names (older eras use kprobes, whose symbol is picked at attach
time); ``device_fault`` uses a device-private driver's ``migrate_to_ram``
callback (test_hmm, nouveau, amdkfd) and nothing else: ``do_swap_page`` also
runs for every ordinary swap-in, so with no such driver loaded the event has
no probe and ``probes`` says why. Results are cached per kernel build by
:mod:`.probecache`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kernel import KernelInfo

__all__ = [
    "BPF_DIR",
    "MAIN_SOURCE",
    "Variant",
    "LogicalEvent",
    "CATALOGUE",
    "VARIANTS",
    "Choice",
    "item_tables",
]

BPF_DIR = Path(__file__).with_name("bpf")
MAIN_SOURCE = BPF_DIR / "recorder.c"



@dataclass(frozen=True)
class Variant:
    """One physical way to observe a logical event."""

    #: ``tracepoint``, ``raw_tp``, ``fentry`` or ``kprobe`` (SCHEMA.md ``how``).
    how: str
    #: The -D name enabling the C section (its value is the probe id).
    define: str
    #: The ``probe`` column string, e.g. ``tp:memcg:count_memcg_events``.
    probe: str
    #: kprobes to attach after loading: (``kprobe``|``kretprobe``, symbol, C function).
    attach: tuple[tuple[str, str, str], ...] = ()
    #: Enum naming the ``item`` column (``vm_event_item``, ...), or fixed names.
    item_enum: tuple[str, ...] = ()
    item_names: tuple[tuple[int, str], ...] = ()
    #: Extra cflags computed from the kernel (raw-tp argument counts, ...).
    cflags: Callable[[KernelInfo], list[str]] = field(default=lambda k: [], compare=False)
    #: Why the variant cannot work on this kernel without trying it, or None.
    precheck: Callable[[KernelInfo], str | None] = field(default=lambda k: None, compare=False)
    #: Probe id (position in :data:`VARIANTS` + 1), set below.
    pid: int = 0
    #: Reads kernel structs by offset (folio, memcg, task, ...).
    reads_structs: bool = False
    #: Why this variant observes the event on the kernels that have it (era, argument, commit);
    #: ``chargetrace probes`` prints it beside the choice.
    note: str = ""

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(sym for _, sym, _ in self.attach))


@dataclass(frozen=True)
class LogicalEvent:
    name: str
    kind: str
    variants: tuple[Variant, ...]
    #: What to say in ``probes`` when nothing attached and that is expected.
    note: str = ""


def _tp(category: str, event: str, define: str, **kw: Any) -> Variant:
    def pre(k: KernelInfo, c: str = category, e: str = event) -> str | None:
        return None if k.tracepoint_exists(c, e) else f"tracepoint: no {c}:{e} in tracefs"

    return Variant("tracepoint", define, f"tp:{category}:{event}", precheck=pre, **kw)


def _raw(event: str, define: str, *, needs_folio: bool = False, **kw: Any) -> Variant:
    kw.setdefault("reads_structs", needs_folio)
    def pre(k: KernelInfo, e: str = event) -> str | None:
        if k.btf is not None and k.raw_tp_nargs(e) is None:
            return f"raw_tp: no btf_trace_{e} in BTF"
        # Without BTF, tracefs says whether the event exists (the catalogue's raw
        # tracepoints are all TRACE_EVENTs); trying a missing one would make the
        # combined trial program (_batch_trial) fail to load as a whole.
        if k.btf is None and (k.tracefs / "events").is_dir() and not any((k.tracefs / "events").glob(f"*/{e}")):
            return f"raw_tp: no {e} event in tracefs (and no BTF)"
        if needs_folio and not k.can_read_folios:
            return "raw_tp: struct offsets unknown (no BTF, no headers)"
        return None

    return Variant("raw_tp", define, f"raw_tp:{event}", precheck=pre, **kw)


def _fentry(fn: str, define: str, *, ret: bool = False, **kw: Any) -> Variant:
    def pre(k: KernelInfo, f: str = fn) -> str | None:
        if k.btf is None:
            return "fentry: kernel has no BTF"
        if not k.btf.has_func(f):
            return f"fentry: no function {f} in BTF"
        if not k.can_read_folios:
            return "fentry: struct offsets unknown"
        return None

    return Variant("fentry", define, f"{'fexit' if ret else 'fentry'}:{fn}", precheck=pre, reads_structs=True, **kw)


def _kprobe(sym: str, define: str, entry: str | None, ret: str | None, **kw: Any) -> Variant:
    attach = []
    if entry:
        attach.append(("kprobe", sym, entry))
    if ret:
        attach.append(("kretprobe", sym, ret))

    def pre(k: KernelInfo, s: str = sym) -> str | None:
        if not k.has_symbol(s):
            return f"kprobe: no symbol {s}"
        if not k.can_read_folios:
            return "kprobe: struct offsets unknown (no BTF, no headers)"
        return None

    probe = f"{'kretprobe' if ret else 'kprobe'}:{sym}"
    return Variant("kprobe", define, probe, attach=tuple(attach), precheck=pre, reads_structs=True, **kw)


def _hugetlb_commit() -> Variant:
    """mem_cgroup_hugetlb_try_charge + mem_cgroup_commit_charge (6.7-6.12):
    the commit is a hugetlb charge only after this thread's successful
    try_charge (charge_memcg() commits too); both symbols must exist."""
    syms = ("mem_cgroup_hugetlb_try_charge", "mem_cgroup_commit_charge")

    def pre(k: KernelInfo) -> str | None:
        for s in syms:
            if not k.has_symbol(s):
                return f"kprobe: no symbol {s}"
        return None if k.can_read_folios else "kprobe: struct offsets unknown (no BTF, no headers)"

    return Variant("kprobe", "CT_KP_HUGETLB_COMMIT", "kretprobe:mem_cgroup_commit_charge", attach=(
        ("kretprobe", syms[0], "ct_kret_htlb_try"),
        ("kprobe", syms[1], "ct_kp_htlb_commit"),
        ("kretprobe", syms[1], "ct_kret_htlb_commit"),
    ), precheck=pre, reads_structs=True)


def _nargs(event: str, define: str) -> Callable[[KernelInfo], list[str]]:
    def flags(k: KernelInfo) -> list[str]:
        n = k.raw_tp_nargs(event)
        return [f"-D{define}={n}"] if n is not None else []

    return flags


def _split_flags(k: KernelInfo) -> list[str]:
    # split_page_memcg(head, nr) splits to order 0 (<= 6.9); from ≈6.10 it is
    # split_page_memcg(head, old_order, new_order) ("mm: memcg: make
    # split_page_memcg() take orders", Zi Yan). Without BTF (lab kernels) the
    # two-argument form is assumed: anon THP splits go to order 0 in both.
    return ["-DCT_SPLIT_HAS_ORDERS=1"] if k.btf is not None and k.btf.func_nargs("split_page_memcg") == 3 else []


def _exit_flags(k: KernelInfo) -> list[str]:
    return ["-DCT_EXIT_HAS_GROUP_DEAD=1"] if k.tracepoint_has_field("sched", "sched_process_exit", "group_dead") else []


_REASON = ("migrate_reason",)


CATALOGUE: tuple[LogicalEvent, ...] = (
    LogicalEvent("fault", "fault", (
        _tp("exceptions", "page_fault_user", "CT_TP_FAULT"),
        _raw("page_fault_user", "CT_RAW_FAULT"),
        _fentry("handle_mm_fault", "CT_FE_FAULT"),
        _kprobe("handle_mm_fault", "CT_KP_FAULT", "ct_kp_fault", None),
    )),
    # Only migrate_to_ram callbacks: do_swap_page() calls them in its
    # is_device_private_entry() branch alone (mm/memory.c), so a row is a
    # device-private fault by construction.
    LogicalEvent("device_fault", "device_fault", (
        _kprobe("dmirror_devmem_fault", "CT_KP_DEVICE_FAULT", "ct_kp_device_fault", "ct_kret_device_fault"),
        _kprobe("nouveau_dmem_migrate_to_ram", "CT_KP_DEVICE_FAULT", "ct_kp_device_fault", "ct_kret_device_fault"),
        _kprobe("svm_migrate_to_ram", "CT_KP_DEVICE_FAULT", "ct_kp_device_fault", "ct_kret_device_fault"),
    ), note="needs a device-private driver loaded (test_hmm, nouveau, amdkfd); do_swap_page is not used: "
            "it also runs for ordinary swap-ins"),
    LogicalEvent("migrate_setup", "migrate_setup", (
        _kprobe("migrate_vma_setup", "CT_KP_MVMA_SETUP", "ct_kp_mvma_setup", "ct_kret_mvma_setup",
                item_names=((0, "migrate_vma_setup"),)),
    )),
    LogicalEvent("migrate_pages", "migrate_pages", (
        _kprobe("migrate_vma_pages", "CT_KP_MVMA_PAGES", "ct_kp_mvma_pages", "ct_kret_mvma_pages",
                item_names=((0, "migrate_vma_pages"),)),
    )),
    LogicalEvent("migrate_finalize", "migrate_finalize", (
        _kprobe("migrate_vma_finalize", "CT_KP_MVMA_FINALIZE", "ct_kp_mvma_finalize", None,
                item_names=((0, "migrate_vma_finalize"),)),
    )),
    # migrate_device_* (6.1+, e778406b40db): driver eviction, separate events
    # because both families can fire in one recording.
    LogicalEvent("device_range", "migrate_setup", (
        _kprobe("migrate_device_range", "CT_KP_MDEV_RANGE", "ct_kp_mdev_range", "ct_kret_mdev_range",
                item_names=((1, "migrate_device_range"),)),
    )),
    LogicalEvent("device_pages", "migrate_pages", (
        _kprobe("migrate_device_pages", "CT_KP_MDEV_PAGES", "ct_kp_mdev_pages", "ct_kret_mdev_pages",
                item_names=((1, "migrate_device_pages"),)),
    )),
    LogicalEvent("device_finalize", "migrate_finalize", (
        _kprobe("migrate_device_finalize", "CT_KP_MDEV_FINALIZE", "ct_kp_mdev_finalize", None,
                item_names=((1, "migrate_device_finalize"),)),
    )),
    LogicalEvent("page_migration", "page_migration", (
        _tp("migrate", "mm_migrate_pages", "CT_TP_MIGRATE", item_enum=_REASON),
        _raw("mm_migrate_pages", "CT_RAW_MIGRATE", item_enum=_REASON,
             cflags=_nargs("mm_migrate_pages", "CT_RAW_MIGRATE_NARGS")),
    )),
    LogicalEvent("charge", "charge", (
        _fentry("__mem_cgroup_charge", "CT_FE_CHARGE", ret=True),
        _kprobe("__mem_cgroup_charge", "CT_KP_CHARGE", "ct_kp_charge", "ct_kret_charge"),  # 5.15+
        _kprobe("mem_cgroup_charge", "CT_KP_CHARGE", "ct_kp_charge", "ct_kret_charge",  # 5.8-5.14
                note="5.8-5.14: mem_cgroup_charge(struct page *, mm, gfp) is the global charge entry (3fea5a499d57 "
                     "\"mm: memcontrol: convert page cache to a new mem_cgroup_charge() API\"); 1f4c6a1cf274 \"mm, "
                     "memcg: inline mem_cgroup_{charge/uncharge} to improve disabled memcg config\" (5.15) made it "
                     "an inline wrapper. The head page is read as the folio: nr = 1, or 1 << compound_order"),
    )),
    # Swap-in charges the swap-cache folio outside __mem_cgroup_charge.
    LogicalEvent("swapin_charge", "charge", (
        _kprobe("mem_cgroup_swapin_charge_folio", "CT_KP_SWAPIN", "ct_kp_swapin", "ct_kret_swapin"),
        _kprobe("mem_cgroup_swapin_charge_page", "CT_KP_SWAPIN", "ct_kp_swapin", "ct_kret_swapin"),  # 5.11+
    )),
    # hugetlb folios are charged to a memcg from 6.7 (8cba9576df60), v2 with
    # memory_hugetlb_accounting only.
    LogicalEvent("hugetlb_charge", "charge", (
        _kprobe("mem_cgroup_charge_hugetlb", "CT_KP_HUGETLB", "ct_kp_hugetlb", "ct_kret_hugetlb"),
        _hugetlb_commit(),  # 6.7-6.12
    ), note="hugetlb memory is charged only from 6.7"),
    LogicalEvent("uncharge", "uncharge", (
        _fentry("__mem_cgroup_uncharge", "CT_FE_UNCHARGE"),
        _kprobe("__mem_cgroup_uncharge", "CT_KP_UNCHARGE", "ct_kp_uncharge", None),  # 5.15+
        _kprobe("mem_cgroup_uncharge", "CT_KP_UNCHARGE", "ct_kp_uncharge", None,  # <= 5.14
                note="<= 5.14: mem_cgroup_uncharge(struct page *) is global (inline wrapper from 1f4c6a1cf274, "
                     "5.15); memcg read from the page at entry"),
    )),
    LogicalEvent("uncharge_batch", "uncharge", (
        _kprobe("__mem_cgroup_uncharge_folios", "CT_KP_UNCHARGE_FOLIOS", "ct_kp_uncharge_folios", None),  # 6.9+
        _kprobe("__mem_cgroup_uncharge_list", "CT_KP_UNCHARGE_LIST", "ct_kp_uncharge_list", None),  # 5.15-6.8
        _kprobe("mem_cgroup_uncharge_list", "CT_KP_UNCHARGE_LIST", "ct_kp_uncharge_list", None,  # <= 5.14
                note="<= 5.14: mem_cgroup_uncharge_list(struct list_head *) is global (release_pages() batches); "
                     "one row per page chained through page->lru"),
    )),
    LogicalEvent("transfer", "transfer", (
        _fentry("mem_cgroup_migrate", "CT_FE_TRANSFER", ret=True),
        _kprobe("mem_cgroup_migrate", "CT_KP_TRANSFER", "ct_kp_transfer", "ct_kret_transfer",
                note="mem_cgroup_migrate(old, new): pages up to 5.15, folios from 5.16; force-charges new until "
                     "85ce2c517ade \"memcontrol: only transfer the memcg data for migration\" (6.7)"),
    )),
    LogicalEvent("replace", "replace", (
        _kprobe("mem_cgroup_replace_folio", "CT_KP_REPLACE", "ct_kp_replace", "ct_kret_replace"),  # 6.7+
    ), note="only >= 6.7"),
    # A large-folio split copies memcg_data to the new folios without a charge
    # event: the model needs to know. Folios: folio_split_memcg_refs() from
    # "mm: separate folio_split_memcg_refs() from split_page_memcg()" (v6.15),
    # which also sees device-private THP splits (6.19+); before it,
    # split_page_memcg() (mm/memcontrol.c), which from then on is called only
    # for kernel pages (split_page(), mm/page_alloc.c) and must not be used.
    LogicalEvent("split", "split", (
        _kprobe("folio_split_memcg_refs", "CT_KP_SPLIT_REFS", "ct_kp_split_refs", None),
        _kprobe("split_page_memcg", "CT_KP_SPLIT", "ct_kp_split", None, cflags=_split_flags),
    )),
    LogicalEvent("device_free", "device_free", (
        _fentry("free_zone_device_folio", "CT_FE_DEVICE_FREE"),
        _kprobe("free_zone_device_folio", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None),  # 6.10+
        _kprobe("free_zone_device_page", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None),  # 5.18-6.9
        _kprobe("free_devmap_managed_page", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None,  # <= 5.17
                note="<= 5.17: put_devmap_managed_page() (mm/swap.c) drops a reference on every put and calls "
                     "free_devmap_managed_page(page) (mm/memremap.c) only when the count reaches 1 (07d802699528 "
                     "\"mm: devmap: refactor 1-based refcounting for ZONE_DEVICE pages\"); it uncharges and calls "
                     "pgmap->ops->page_free(). So the free, not the put, is probed: value = refcount 1"),
    )),
    LogicalEvent("memcg_events", "memcg_stat", (
        _tp("memcg", "count_memcg_events", "CT_TP_MEMCG_EVENTS", item_enum=("vm_event_item",)),
        _raw("count_memcg_events", "CT_RAW_MEMCG_EVENTS", needs_folio=True, item_enum=("vm_event_item",)),
    ), note="memcg tracepoints are new in 6.16"),
    LogicalEvent("memcg_lruvec_state", "memcg_stat", (
        _tp("memcg", "mod_memcg_lruvec_state", "CT_TP_MEMCG_LRUVEC", item_enum=("node_stat_item",)),
        _raw("mod_memcg_lruvec_state", "CT_RAW_MEMCG_LRUVEC", needs_folio=True, item_enum=("node_stat_item",)),
    ), note="memcg tracepoints are new in 6.16"),
    LogicalEvent("memcg_state", "memcg_stat", (
        # memcg_stat_item extends node_stat_item (MEMCG_SWAP = NR_VM_NODE_STAT_ITEMS, ...)
        _tp("memcg", "mod_memcg_state", "CT_TP_MEMCG_STATE", item_enum=("memcg_stat_item", "node_stat_item")),
        _raw("mod_memcg_state", "CT_RAW_MEMCG_STATE", needs_folio=True,
             item_enum=("memcg_stat_item", "node_stat_item")),
    ), note="memcg tracepoints are new in 6.16"),
    # R12: pagemap:mm_lru_insertion reading the folio's memcg. Raw tracepoint only: BCC's generated
    # args struct of the tracepoint has "enum lru_list lru", an incomplete type without kernel headers.
    LogicalEvent("lru_insert", "lru_insert", (_raw("mm_lru_insertion", "CT_RAW_LRU", needs_folio=True),)),
    LogicalEvent("fork", "fork", (
        _tp("sched", "sched_process_fork", "CT_TP_FORK"),
        _raw("sched_process_fork", "CT_RAW_FORK", needs_folio=True),
    )),
    LogicalEvent("exit", "exit", (
        _tp("sched", "sched_process_exit", "CT_TP_EXIT", cflags=_exit_flags),
        _raw("sched_process_exit", "CT_RAW_EXIT", cflags=_nargs("sched_process_exit", "CT_RAW_EXIT_NARGS")),
    )),
)


# Assign probe ids: the variant's position + 1 (0 = no probe).
_numbered: list[Variant] = []
for _event in CATALOGUE:
    _vs = []
    for _v in _event.variants:
        _v = Variant(**{**_v.__dict__, "pid": len(_numbered) + 1})
        _numbered.append(_v)
        _vs.append(_v)
    object.__setattr__(_event, "variants", tuple(_vs))
VARIANTS: tuple[Variant, ...] = tuple(_numbered)
del _numbered, _event, _vs, _v


@dataclass
class Choice:
    """The outcome for one logical event (an entry of ``meta.probes``)."""

    event: str
    kind: str
    variant: Variant | None
    #: Why each tried/skipped variant did not work, in order.
    reasons: list[str] = field(default_factory=list)

    def as_meta(self) -> dict[str, Any]:
        # "kind": the schema kind the event's rows carry (several catalogue
        # events, e.g. memcg_events/memcg_state, emit one kind).
        if self.variant is not None:
            return {"event": self.event, "kind": self.kind, "probe": self.variant.probe, "how": self.variant.how}
        note = next((e.note for e in CATALOGUE if e.name == self.event and e.note), "")
        reason = "; ".join(self.reasons + ([f"note: {note}"] if note else []))
        return {"event": self.event, "kind": self.kind, "probe": None, "how": None, "reason": reason}

    def explanation(self) -> str:
        """Why the chosen variant: what ruled out the ones before it, and its own note ("" if none)."""
        if self.variant is None:
            return ""
        return "; ".join([*self.reasons, *([self.variant.note] if self.variant.note else [])])


def _enum_names(values: dict[str, int], strip_mr: bool) -> dict[int, str]:
    """value -> the best name: aliases such as NR_LRU_BASE (= NR_INACTIVE_ANON)
    and sentinels (NR_VM_NODE_STAT_ITEMS, MR_TYPES, ...) lose to real items."""

    def rank(name: str) -> int:
        return 1 if name.endswith(("_BASE", "_ITEMS", "_TYPES")) or name.startswith("NR_VM_") else 0

    out: dict[int, str] = {}
    for name, value in values.items():
        if strip_mr:
            name = re.sub(r"^MR_", "", name).lower()
        if value not in out or rank(name) < rank(out[value]):
            out[value] = name
    return out


def item_tables(kernel: KernelInfo) -> dict[int, dict[int, str]]:
    """Per probe id, numeric ``item`` -> name (BTF enums, fixed names). For
    several enums (memcg_stat_item extends node_stat_item) the first listed
    wins for a value both define."""
    tables: dict[int, dict[int, str]] = {}
    for v in VARIANTS:
        table: dict[int, str] = {}
        if v.item_enum == _REASON:
            # The tracepoint's own names ("syscall_or_cpuset"), as perf and
            # trace_pipe print them; BTF's MR_* names are the fallback.
            table.update(kernel.tracepoint_symbols("migrate", "mm_migrate_pages", "reason"))
        for enum_name in v.item_enum if not table else ():
            if kernel.btf is None or not kernel.btf.has_enum(enum_name):
                continue
            names = _enum_names(kernel.btf.enum(enum_name), enum_name == "migrate_reason")
            for value, name in names.items():
                table.setdefault(value, name)
        table.update(dict(v.item_names))
        if table:
            tables[v.pid] = table
    return tables
