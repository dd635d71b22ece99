from pathlib import Path

import pytest

from btf_blob import BlobBuilder
from chargetrace.traces import ChargetraceError
from chargetrace.tracer.btf import Btf
from chargetrace.tracer.headers import resolve_headers


def _btf() -> Btf:
    b = BlobBuilder()
    b.enum("migrate_mode", [("MIGRATE_ASYNC", 0), ("MIGRATE_SYNC", 2)])
    b.enum("migrate_reason", [("MR_COMPACTION", 0)])
    b.enum("vm_event_item", [("PGPGIN", 0), ("PGPGOUT", 1)])
    return Btf(b.build(), "blob")


def _tree(root: Path) -> Path:
    (root / "include/linux").mkdir(parents=True)
    (root / "include/linux/kconfig.h").write_text("")
    return root


def test_resolution_order(tmp_path: Path) -> None:
    mods = tmp_path / "modules"
    kheaders = tmp_path / "kheaders.tar.xz"
    stub = tmp_path / "cache"
    user = _tree(tmp_path / "user")
    kw = dict(modules_root=mods, kheaders=kheaders, stub_root=stub)
    # 1. the user's BCC_KERNEL_SOURCE wins over everything
    _tree(mods / "6.1.0" / "build")
    kheaders.write_bytes(b"x")
    src = resolve_headers(_btf(), "6.1.0", environ={"BCC_KERNEL_SOURCE": str(user)}, **kw)
    assert (src.kind, src.path, src.real) == ("env", user, True)
    # 2. then /lib/modules/R/build
    src = resolve_headers(_btf(), "6.1.0", environ={}, **kw)
    assert src.kind == "build" and src.real
    # 3. then kheaders
    src = resolve_headers(_btf(), "6.2.0", environ={}, **kw)
    assert src.kind == "kheaders" and src.path is None
    # 4. then the BTF stub tree
    kheaders.unlink()
    src = resolve_headers(_btf(), "6.2.0", environ={}, **kw)
    assert src.kind == "btf-stub" and not src.real
    assert src.path is not None and src.path.parent == stub
    kconfig = (src.path / "include/linux/kconfig.h").read_text()
    assert "CONFIG_BPF_SYSCALL" in kconfig
    enums = (src.path / "include/linux/chargetrace_enums.h").read_text()
    assert "enum migrate_mode {" in enums and "MIGRATE_SYNC = 2," in enums
    assert "PGPGOUT = 1," in enums
    assert (src.path / "include/uapi/linux/bpf.h").read_text() == ""  # BCC brings its own
    assert "LINUX_VERSION_CODE 393728" in (src.path / "include/linux/version.h").read_text()
    # the cached tree is reused
    assert resolve_headers(_btf(), "6.2.0", environ={}, **kw).path == src.path


def test_nothing_available(tmp_path: Path) -> None:
    with pytest.raises(ChargetraceError, match="no kernel headers"):
        resolve_headers(None, "6.2.0", environ={}, modules_root=tmp_path, kheaders=tmp_path / "x")
    with pytest.raises(ChargetraceError, match="BCC_KERNEL_SOURCE"):
        resolve_headers(None, "6.2.0", environ={"BCC_KERNEL_SOURCE": str(tmp_path)})
