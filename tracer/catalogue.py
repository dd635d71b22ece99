"""The probe catalogue: logical events, their candidate probes, trial attach.

Each logical event (``fault``, ``charge``, ``memcg_events``, ...) lists
candidate probe *variants* in preference order: tracepoint, raw tracepoint,
fentry/fexit, kprobe (kernel-facts §2-3). :func:`choose_probes` decides per
event by ACTUALLY compiling, loading and attaching each candidate in
tracer/bpf/recorder.c with only that variant enabled; the first that attaches
wins. ``support_kfunc()`` and kallsyms are not trusted to say yes (on the
machine this was written on, support_kfunc() is True but every
BPF_PROG_TYPE_TRACING load fails with EPERM); a missing symbol is trusted to
say no.

Limits: one variant per logical event; fentry variants exist only for the
6.9+ function names (older eras use kprobes, whose symbol is picked at attach
time); ``device_fault`` uses the test_hmm driver's ``dmirror_devmem_fault`` or
else ``do_swap_page`` (which also sees ordinary swap-ins).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
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
    "choose_probes",
    "trial_attach",
    "capture_stderr",
]

BPF_DIR = Path(__file__).with_name("bpf")
MAIN_SOURCE = BPF_DIR / "recorder.c"

# Ring buffer pages used by trial compiles (they never deliver events).
_TRIAL_RB_PAGES = 16


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
    LogicalEvent("device_fault", "device_fault", (
        _kprobe("dmirror_devmem_fault", "CT_KP_DEVICE_FAULT", "ct_kp_device_fault", "ct_kret_device_fault"),
        _kprobe("do_swap_page", "CT_KP_DEVICE_FAULT", "ct_kp_device_fault", "ct_kret_device_fault"),
    )),
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
        _kprobe("mem_cgroup_charge", "CT_KP_CHARGE", "ct_kp_charge", "ct_kret_charge"),  # 5.8-5.14
    )),
    LogicalEvent("uncharge", "uncharge", (
        _fentry("__mem_cgroup_uncharge", "CT_FE_UNCHARGE"),
        _kprobe("__mem_cgroup_uncharge", "CT_KP_UNCHARGE", "ct_kp_uncharge", None),  # 5.15+
        _kprobe("mem_cgroup_uncharge", "CT_KP_UNCHARGE", "ct_kp_uncharge", None),  # <= 5.14
    )),
    LogicalEvent("uncharge_batch", "uncharge", (
        _kprobe("__mem_cgroup_uncharge_folios", "CT_KP_UNCHARGE_FOLIOS", "ct_kp_uncharge_folios", None),  # 6.9+
        _kprobe("__mem_cgroup_uncharge_list", "CT_KP_UNCHARGE_LIST", "ct_kp_uncharge_list", None),  # 5.15-6.8
    )),
    LogicalEvent("transfer", "transfer", (
        _fentry("mem_cgroup_migrate", "CT_FE_TRANSFER", ret=True),
        _kprobe("mem_cgroup_migrate", "CT_KP_TRANSFER", "ct_kp_transfer", "ct_kret_transfer"),
    )),
    LogicalEvent("replace", "replace", (
        _kprobe("mem_cgroup_replace_folio", "CT_KP_REPLACE", "ct_kp_replace", "ct_kret_replace"),  # 6.7+
    ), note="only >= 6.7"),
    # A large-folio split copies memcg_data to the new folios without a charge
    # event (split_page_memcg(), mm/memcontrol.c): the model needs to know.
    LogicalEvent("split", "split", (
        _kprobe("split_page_memcg", "CT_KP_SPLIT", "ct_kp_split", None, cflags=_split_flags),
    )),
    LogicalEvent("device_free", "device_free", (
        _fentry("free_zone_device_folio", "CT_FE_DEVICE_FREE"),
        _kprobe("free_zone_device_folio", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None),  # 6.10+
        _kprobe("free_zone_device_page", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None),  # 5.18-6.9
        _kprobe("free_devmap_managed_page", "CT_KP_DEVICE_FREE", "ct_kp_device_free", None),  # <= 5.17
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
        return {"event": self.event, "kind": self.kind, "probe": None, "how": None, "reason": "; ".join(self.reasons)}


@contextlib.contextmanager
def capture_stderr() -> Iterator[list[str]]:
    """Capture fd 2 (libbcc and libbpf print there, not to sys.stderr)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def variant_cflags(kernel: KernelInfo, variant: Variant) -> list[str]:
    return [f"-D{variant.define}={variant.pid}", *variant.cflags(kernel)]


def compile_cflags(kernel: KernelInfo, variants: list[Variant], extra: list[str]) -> list[str]:
    folio_reads = any(v.reads_structs for v in variants)
    flags = [f"-I{BPF_DIR}", *kernel.base_cflags(folio_reads), *extra]
    for v in variants:
        flags += variant_cflags(kernel, v)
    return flags


def _first_error(lines: list[str], exc: BaseException) -> str:
    for line in lines:
        if ": error:" in line:
            return line.split(": error:", 1)[1].strip()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_reason(variant: Variant, lines: list[str], exc: BaseException) -> str:
    blob = "\n".join(lines) + "\n" + str(exc)
    if "Failed to compile" in blob:
        return f"{variant.how}: compile failed: {_first_error(lines, exc)}"
    if variant.how == "fentry" and ("Operation not permitted" in blob or "super-user" in blob):
        return "fentry: BPF_PROG_TYPE_TRACING refused (EPERM)"
    if "Operation not permitted" in blob:
        return f"{variant.how}: load refused (EPERM)"
    for line in lines:
        if line.strip() and not line.startswith(("In file included", " ")):
            return f"{variant.how}: {line.strip()}"
    return f"{variant.how}: {_first_error(lines, exc)}"


def _attach_reason(kernel: KernelInfo, kind: str, sym: str, lines: list[str], exc: BaseException) -> str:
    if not kernel.has_kprobe_events:
        return "kprobe: CONFIG_KPROBES not set (no kprobe_events)"
    detail = next((ln.strip() for ln in lines if ln.strip()), str(exc).splitlines()[0])
    return f"{kind}: attach to {sym} failed ({detail})"


def attach_kprobes(bpf: Any, bcc: Any, variant: Variant) -> None:
    """Load (verifier) and attach a kprobe variant's functions."""
    for kind, sym, fn in variant.attach:
        bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
    for kind, sym, fn in variant.attach:
        if kind == "kprobe":
            bpf.attach_kprobe(event=sym.encode(), fn_name=fn.encode())
        else:
            bpf.attach_kretprobe(event=sym.encode(), fn_name=fn.encode(), maxactive=64)


def _compile(bcc: Any, kernel: KernelInfo, variants: list[Variant]) -> tuple[Any, list[str], BaseException | None]:
    flags = compile_cflags(kernel, variants, [f"-DCT_RB_PAGES={_TRIAL_RB_PAGES}", "-DCT_SCOPE_ALL=1"])
    with capture_stderr() as lines:
        try:
            return bcc.BPF(src_file=str(MAIN_SOURCE).encode(), cflags=flags), lines, None
        except Exception as exc:  # bcc raises bare Exception for everything
            return None, lines, exc


def _try_kprobes(bpf: Any, bcc: Any, kernel: KernelInfo, variant: Variant) -> str | None:
    """Load (verifier) and attach one kprobe variant's functions in ``bpf``."""
    for _kind, _sym, fn in variant.attach:
        with capture_stderr() as lines:
            try:
                bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
            except Exception as exc:
                return f"kprobe: {fn} rejected by the verifier ({_first_error(lines, exc)})"
    for kind, sym, fn in variant.attach:
        with capture_stderr() as lines:
            try:
                if kind == "kprobe":
                    bpf.attach_kprobe(event=sym.encode(), fn_name=fn.encode())
                else:
                    bpf.attach_kretprobe(event=sym.encode(), fn_name=fn.encode(), maxactive=64)
            except Exception as exc:
                return _attach_reason(kernel, kind, sym, lines, exc)
    return None


def trial_attach(bcc: Any, kernel: KernelInfo, variant: Variant, shared: Any = None) -> str | None:
    """Compile, load and attach ``variant`` alone; None on success, else why not.

    ``shared``: an already compiled program holding this kprobe variant's
    functions (kprobe programs load one by one, so one compile can serve
    every kprobe trial; tracepoint, raw-tp and fentry programs are loaded and
    attached all at once by BCC and need a compile each)."""
    pre = variant.precheck(kernel)
    if pre:
        return pre
    if shared is not None and variant.attach:
        return _try_kprobes(shared, bcc, kernel, variant)
    bpf, lines, err = _compile(bcc, kernel, [variant])
    if err is not None:
        return _load_reason(variant, lines, err)
    try:
        return _try_kprobes(bpf, bcc, kernel, variant) if variant.attach else None
    finally:
        with capture_stderr():
            bpf.cleanup()


def _batch_trial(bcc: Any, kernel: KernelInfo, candidates: list[Variant]) -> dict[int, str | None] | None:
    """Compile ``candidates`` (tracepoints included) as ONE program, load and attach them all.

    Returns variant pid -> None (works) or why its kprobe did not load/attach;
    None when the combined program does not compile or load. Under QEMU TCG one
    BCC compile against real headers takes minutes, so the number of compiles
    is what the trial costs (the lab measured > 10 min for per-variant trials).
    """
    if not candidates:
        return {}
    bpf, _lines, err = _compile(bcc, kernel, candidates)
    if err is not None:
        return None
    try:
        return {v.pid: (_try_kprobes(bpf, bcc, kernel, v) if v.attach else None) for v in candidates}
    finally:
        with capture_stderr():
            bpf.cleanup()


def _one_by_one(bcc: Any, kernel: KernelInfo, pending: list[tuple[LogicalEvent, Choice, int]],
                skip_how: frozenset[str]) -> None:
    # One compile for every remaining kprobe variant that passes its precheck
    # (one per C section); if that compile fails, each variant is tried alone.
    sections: dict[str, Variant] = {}
    for e, _choice, start in pending:
        for v in e.variants[start:]:
            if v.attach and v.define not in sections and v.precheck(kernel) is None:
                sections[v.define] = v
    shared = None
    if sections:
        shared, _lines, _err = _compile(bcc, kernel, list(sections.values()))
    try:
        for event, choice, start in pending:
            for variant in event.variants[start:]:
                if variant.how in skip_how:
                    choice.reasons.append(f"{variant.how}: skipped (--skip-how)")
                    continue
                reason = trial_attach(bcc, kernel, variant, shared)
                if reason is None:
                    choice.variant = variant
                    break
                choice.reasons.append(reason)
    finally:
        if shared is not None:
            with capture_stderr():
                shared.cleanup()


def choose_probes(
    bcc: Any, kernel: KernelInfo, only: set[str] | None = None, skip_how: frozenset[str] = frozenset()
) -> list[Choice]:
    """Trial-attach the catalogue in order; one :class:`Choice` per event.

    Fast path: each event's first variant that passes its precheck is tried in
    one combined program (:func:`_batch_trial`, one compile). Events whose
    candidate fails there, and every event when the combined program does not
    load, fall back to trying their (remaining) variants in catalogue order.

    ``skip_how``: attach kinds not to use (``tracepoint``, ...), to exercise
    the fallbacks on a kernel where the preferred probes work."""
    events = [e for e in CATALOGUE if only is None or e.name in only]
    first: dict[str, tuple[int, Variant]] = {}
    early: dict[str, list[str]] = {}
    for event in events:
        reasons: list[str] = []
        for i, variant in enumerate(event.variants):
            if variant.how in skip_how:
                reasons.append(f"{variant.how}: skipped (--skip-how)")
                continue
            pre = variant.precheck(kernel)
            if pre is None:
                first[event.name] = (i, variant)
                break
            reasons.append(pre)
        early[event.name] = reasons
    batch = _batch_trial(bcc, kernel, [v for _, v in first.values()])

    choices: list[Choice] = []
    pending: list[tuple[LogicalEvent, Choice, int]] = []
    for event in events:
        choice = Choice(event.name, event.kind, None)
        choices.append(choice)
        if batch is None:
            pending.append((event, choice, 0))
            continue
        choice.reasons.extend(early[event.name])
        if event.name not in first:
            continue
        i, cand = first[event.name]
        reason = batch[cand.pid]
        if reason is None:
            choice.variant = cand
        else:
            choice.reasons.append(reason)
            pending.append((event, choice, i + 1))
    if pending:
        _one_by_one(bcc, kernel, pending, skip_how)
    return choices


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
