from pathlib import Path

import pytest

from btf_blob import BlobBuilder
from chargetrace.traces import ChargetraceError
from chargetrace.tracer.btf import Btf, BtfError, VMLINUX_BTF


def _blob() -> bytes:
    b = BlobBuilder()
    ulong = b.int_("unsigned long", 8)
    uint = b.int_("unsigned int", 4)
    vptr = b.ptr(0)
    # struct folio { unsigned long flags; union { struct { void *lru_a; void *lru_b; }; unsigned int x; };
    #                unsigned long memcg_data; }   -- an anonymous union holding an anonymous struct
    inner = b.struct("", 16, [("lru_a", vptr, 0), ("lru_b", vptr, 64)])
    un = b.struct("", 16, [("", inner, 0), ("x", uint, 0)], union=True)
    b.struct("folio", 32, [("flags", ulong, 0), ("", un, 64), ("memcg_data", ulong, 192)])
    cg = b.struct("cgroup", 16, [("pad", ulong, 0), ("kn", vptr, 64)])
    b.struct("css", 8, [("cgroup", b.ptr(cg), 0)])
    b.struct("mem_cgroup", 8, [("css", b.struct("", 8, [("cgroup", vptr, 0)]), 0)])
    b.enum("migrate_reason", [("MR_COMPACTION", 0), ("MR_SYSCALL", 3), ("MR_TYPES", 4)])
    proto = b.func_proto(0, [("__data", vptr), ("a", ulong), ("b", ulong), ("c", uint)])
    b.typedef("btf_trace_mm_thing", b.ptr(proto))
    b.func("mem_cgroup_replace_folio", b.func_proto(0, [("old", vptr)]))
    b.typedef("folio_t", 0)  # a typedef to void, harmless
    return b.build()


def test_handmade_blob_offsets_enums_funcs() -> None:
    btf = Btf(_blob(), "blob")
    assert btf.offsetof("folio", "memcg_data") == 24
    assert btf.offsetof("folio", "lru_b") == 16  # through union and struct, both anonymous
    assert btf.offsetof("folio", "x") == 8
    assert btf.offsetof("cgroup", "kn") == 8
    assert btf.sizeof("folio") == 32
    assert btf.enum("migrate_reason") == {"MR_COMPACTION": 0, "MR_SYSCALL": 3, "MR_TYPES": 4}
    assert btf.has_func("mem_cgroup_replace_folio")
    assert not btf.has_func("mem_cgroup_migrate")
    assert btf.raw_tp_nargs("mm_thing") == 3
    assert btf.raw_tp_nargs("absent") is None
    assert not btf.has_member("folio", "nope")
    with pytest.raises(BtfError):
        btf.enum("nope")
    with pytest.raises(BtfError):
        btf.offsetof("folio", "flags.sub")


def test_bad_blobs_are_one_line_errors() -> None:
    with pytest.raises(ChargetraceError, match="magic"):
        Btf(b"\0" * 32)
    with pytest.raises(ChargetraceError, match="short"):
        Btf(b"\x9f\xeb")
    data = bytearray(_blob())
    with pytest.raises(ChargetraceError):
        Btf(bytes(data[:40]))  # sections run past the end


@pytest.mark.skipif(not VMLINUX_BTF.exists(), reason="kernel has no /sys/kernel/btf/vmlinux")
def test_running_kernel_btf() -> None:
    btf = Btf(Path(VMLINUX_BTF).read_bytes(), str(VMLINUX_BTF))
    reasons = btf.enum("migrate_reason")
    assert reasons["MR_COMPACTION"] == 0
    assert btf.enum("vm_event_item")["PGPGIN"] == 0
    assert 0 < btf.offsetof("folio", "memcg_data") < btf.sizeof("folio")
    assert btf.offsetof("folio", "lru") == btf.offsetof("page", "lru")
    assert btf.raw_tp_nargs("sched_process_fork") == 2
