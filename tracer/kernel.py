"""Facts about the running kernel that decide how to probe it.

Everything here is feature-detected (BTF, /proc/kallsyms, tracefs files),
never derived from the version number, in the style of drgn's helpers: each
decision names the kernel commit that changed the behaviour.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from chargetrace.traces import Era

from .btf import Btf, BtfError
from .headers import TRACEFS, HeaderSource

__all__ = ["KernelInfo", "detect_era", "struct_offsets"]

#: (define, struct, member path) read by offset in tracer/bpf/*.
_OFFSETS: tuple[tuple[str, str, str], ...] = (
    ("OFF_FOLIO_MEMCG_DATA", "folio", "memcg_data"),
    ("OFF_FOLIO_LRU", "folio", "lru"),
    ("OFF_PAGE_REFCOUNT", "page", "_refcount"),
    ("OFF_PAGE_FLAGS", "page", "flags"),
    ("OFF_MEMCG_CSS", "mem_cgroup", "css"),
    ("OFF_CSS_CGROUP", "cgroup_subsys_state", "cgroup"),
    ("OFF_CGROUP_KN", "cgroup", "kn"),
    ("OFF_KN_ID", "kernfs_node", "id"),
    ("OFF_FBATCH_NR", "folio_batch", "nr"),
    ("OFF_FBATCH_FOLIOS", "folio_batch", "folios"),
    ("OFF_MVMA_SRC", "migrate_vma", "src"),
    ("OFF_MVMA_START", "migrate_vma", "start"),
    ("OFF_MVMA_NPAGES", "migrate_vma", "npages"),
    ("OFF_MVMA_CPAGES", "migrate_vma", "cpages"),
    ("OFF_VMF_ADDRESS", "vm_fault", "address"),
    ("OFF_VMF_PAGE", "vm_fault", "page"),
    ("OFF_PGMAP_OPS", "dev_pagemap", "ops"),
    ("OFF_TASK_PID", "task_struct", "pid"),
    ("OFF_OBJCG_MEMCG", "obj_cgroup", "memcg"),
)
#: Offsets without which no folio-level probe can work.
REQUIRED_FOLIO_OFFSETS = (
    "OFF_FOLIO_MEMCG_DATA",
    "OFF_MEMCG_CSS",
    "OFF_CSS_CGROUP",
    "OFF_CGROUP_KN",
    "OFF_KN_ID",
)


def struct_offsets(btf: Btf) -> dict[str, int]:
    """``OFF_*`` defines for the BPF code, from BTF; absent members are left
    out (the C sections that need them then compile to nothing)."""
    out: dict[str, int] = {}
    for define, struct_name, path in _OFFSETS:
        try:
            out[define] = btf.offsetof(struct_name, path)
        except BtfError:
            pass
    try:
        btf.struct_id("folio")
        page_era = False
    except BtfError:
        page_era = True
    if page_era:
        # No struct folio (before 7b230db3b8d3 "mm: Introduce struct folio", 5.16): the memcg API
        # takes the head struct page, whose word is page->memcg_data (87944e2992bd "mm: Introduce
        # page memcg flags", 5.11) or page->mem_cgroup before. The order is the first tail page's
        # compound_order, the byte struct folio's _folio_order overlays later.
        for member in ("memcg_data", "mem_cgroup"):
            if btf.has_member("page", member):
                out["OFF_FOLIO_MEMCG_DATA"] = btf.offsetof("page", member)
                break
        if btf.has_member("page", "lru"):
            out["OFF_FOLIO_LRU"] = btf.offsetof("page", "lru")
        if btf.has_member("page", "compound_order"):
            out["OFF_FOLIO_ORDER"] = btf.sizeof("page") + btf.offsetof("page", "compound_order")
    # Folio order byte: folio->_folio_order (<= 6.5) or the low byte of
    # folio->_flags_1 ("mm: reimplement folio_order() and folio_nr_pages()",
    # v6.6). Both sit in the second struct page of a large folio.
    for path in ("_folio_order", "_flags_1"):
        if "OFF_FOLIO_ORDER" not in out and btf.has_member("folio", path):
            out["OFF_FOLIO_ORDER"] = btf.offsetof("folio", path)
            break
    # A ZONE_DEVICE page's pgmap: folio->pgmap in 7.x, page->pgmap before
    # (include/linux/mm_types.h); the same word (after flags) either way.
    for struct_name in ("folio", "page"):
        if btf.has_member(struct_name, "pgmap"):
            out["OFF_PAGE_PGMAP"] = btf.offsetof(struct_name, "pgmap")
            break
    try:
        out["CT_PG_HEAD"] = btf.enum("pageflags")["PG_head"]
    except (BtfError, KeyError):
        out.pop("OFF_FOLIO_ORDER", None)
    return out


@dataclass
class KernelInfo:
    """The running kernel, as the catalogue needs it."""

    release: str
    btf: Btf | None
    headers: HeaderSource
    tracefs: Path = TRACEFS
    kallsyms_path: Path = Path("/proc/kallsyms")
    proc_config: Path = Path("/proc/config.gz")

    @cached_property
    def symbols(self) -> set[str]:
        """Text symbols in /proc/kallsyms (names only; module suffix dropped)."""
        names: set[str] = set()
        try:
            with open(self.kallsyms_path, "rb") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in (b"T", b"t", b"W", b"w"):
                        names.add(parts[2].decode("ascii", "replace"))
        except OSError:
            pass
        return names

    def has_symbol(self, name: str) -> bool:
        if self.btf is not None and self.btf.has_func(name):
            return True
        return name in self.symbols

    def symbol_source(self, name: str) -> str:
        if self.btf is not None and self.btf.has_func(name):
            return f"btf: {name}"
        return f"kallsyms: {name}"

    @cached_property
    def offsets(self) -> dict[str, int]:
        return struct_offsets(self.btf) if self.btf is not None else {}

    @property
    def can_read_folios(self) -> bool:
        """Folio-level probes can read memcg_data (BTF offsets or real headers)."""
        return self.headers.real or all(k in self.offsets for k in REQUIRED_FOLIO_OFFSETS)

    def base_cflags(self, folio_reads: bool = False) -> list[str]:
        """-D flags every compile gets. ``folio_reads``: the program reads
        kernel structs; without BTF offsets it then includes the real headers
        and uses offsetof (only then: a header that does not compile must not
        take the tracepoint variants down with it)."""
        flags = [f"-D{k}={v}" for k, v in self.offsets.items()]
        have_btf_offsets = all(k in self.offsets for k in REQUIRED_FOLIO_OFFSETS)
        if folio_reads and not have_btf_offsets and self.headers.real:
            flags.append("-DCT_REAL_HEADERS=1")
        if self.memcg_data_objcg and ("OFF_OBJCG_MEMCG" in self.offsets or not have_btf_offsets):
            flags.append("-DCT_MEMCG_DATA_OBJCG=1")
        if self.headers.real and self.ms_extensions:
            flags.append("-fms-extensions")
        return flags

    @cached_property
    def ms_extensions(self) -> bool:
        """The kernel is built as C with Microsoft's anonymous-struct extension, and its headers
        use it (anonymous tagged struct members, e.g. struct filename in linux/fs.h): clang must
        be told so, or the headers do not compile. Read from the kernel's own config,
        ``CONFIG_CC_MS_EXTENSIONS`` (init/Kconfig; "-fms-extensions" or, for a newer clang,
        "-fms-anonymous-structs"; set in Debian's 7.2): the header tree's autoconf.h, else
        /proc/config.gz (CONFIG_IKCONFIG_PROC). BCC's clang gets ``-fms-extensions`` either way."""
        if self.headers.path is not None:
            try:
                text = (self.headers.path / "include" / "generated" / "autoconf.h").read_text(errors="replace")
                return "#define CONFIG_CC_MS_EXTENSIONS " in text
            except OSError:
                pass
        try:
            with gzip.open(self.proc_config, "rt", errors="replace") as fh:
                return any(line.startswith("CONFIG_CC_MS_EXTENSIONS=") for line in fh)
        except OSError:
            return False

    @property
    def memcg_data_objcg(self) -> bool:
        """``folio->memcg_data`` of a charged folio points to an ``obj_cgroup`` (its ``->memcg`` is
        the memcg), not to the memcg itself: "mm: memcontrol: eliminate the problem of dying memory
        cgroup for LRU folios" (Muchun Song, Qi Zheng; in Debian's 7.2), whose series added
        ``lru_reparent_memcg()`` (mm/swap.c) to move LRU folios to the parent at memcg death. The
        layout of ``obj_cgroup`` is the same before and after, so the symbol decides."""
        return self.has_symbol("lru_reparent_memcg")

    @property
    def device_thp(self) -> bool:
        """Device-private folios can be PMD-sized THPs: d245f9b4ab80 "mm/zone_device: support large
        zone device private folios" (6.19) and its series, which added ``do_huge_pmd_device_private()``
        (mm/huge_memory.c) for a CPU fault on a device-private PMD."""
        return self.has_symbol("do_huge_pmd_device_private")

    def tracepoint_exists(self, category: str, event: str) -> bool:
        return (self.tracefs / "events" / category / event / "id").exists()

    def tracepoint_has_field(self, category: str, event: str, name: str) -> bool:
        try:
            text = (self.tracefs / "events" / category / event / "format").read_text()
        except OSError:
            return False
        return any(line.strip().startswith("field:") and f" {name};" in line for line in text.splitlines())

    def tracepoint_symbols(self, category: str, event: str, name: str) -> dict[int, str]:
        """value -> name from ``__print_symbolic(REC->name, {0, "x"}, ...)`` in
        the format file's print fmt (names without BTF, e.g. on a kernel
        built without CONFIG_DEBUG_INFO_BTF)."""
        try:
            text = (self.tracefs / "events" / category / event / "format").read_text()
        except OSError:
            return {}
        m = re.search(rf"__print_symbolic\(REC->{re.escape(name)},(.*?)\)(?:,|$)", text, re.S)
        if not m:
            return {}
        return {int(v, 0): n for v, n in re.findall(r'\{\s*(-?(?:0x)?[0-9a-fA-F]+)\s*,\s*"([^"]*)"\s*\}', m.group(1))}

    def raw_tp_nargs(self, name: str) -> int | None:
        return self.btf.raw_tp_nargs(name) if self.btf is not None else None

    @property
    def has_kprobe_events(self) -> bool:
        return (self.tracefs / "kprobe_events").exists()

    @property
    def ncpus(self) -> int:
        return os.cpu_count() or 1


def detect_era(kernel: KernelInfo) -> Era:
    """Accounting era by feature (the commits are cited below)."""
    era = Era()
    why = []
    # 85ce2c517ade "memcontrol: only transfer the memcg data for migration"
    # (v6.7) moved the old force-charge into the new mem_cgroup_replace_folio.
    if kernel.has_symbol("mem_cgroup_replace_folio"):
        era.migrate = "transfer"
        why.append(kernel.symbol_source("mem_cgroup_replace_folio"))
    elif kernel.has_symbol("mem_cgroup_migrate"):
        era.migrate = "force"
        why.append("no mem_cgroup_replace_folio, " + kernel.symbol_source("mem_cgroup_migrate"))
    # 27674ef6c73f "mm: remove the extra ZONE_DEVICE struct page refcount"
    # (v5.18) introduced free_zone_device_page (folio variant in v6.10).
    for name, refs in (
        ("free_zone_device_folio", 0),
        ("free_zone_device_page", 0),
        ("free_devmap_managed_page", 1),
        ("put_zone_device_private_or_public_page", 1),
        ("__put_devmap_managed_page", 1),
    ):
        if kernel.has_symbol(name):
            era.device_free_refcount = refs
            why.append(kernel.symbol_source(name))
            break
    era.detected_by = "; ".join(why)
    return era
