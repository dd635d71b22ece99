"""Pure tests of the lab harness logic (no kernel build, no QEMU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.lab.cache import is_done, kernel_key, read_stamp, rootfs_key, write_stamp
from chargetrace.lab.config import LabConfig
from chargetrace.lab.hmmtests import parse_hmm_tests
from chargetrace.lab.kconfig import REQUIRED, check_config, fragment_bytes, parse_config
from chargetrace.lab.qemu import kvm_usable, pick_accel, qemu_argv
from chargetrace.lab.run import dmesg_problems
from chargetrace.traces.errors import ChargetraceError


# --- cache keys -------------------------------------------------------------

def test_kernel_key_depends_on_version_and_fragment() -> None:
    k = kernel_key("6.1.192-2", b"CONFIG_A=y\n")
    assert k == kernel_key("6.1.192-2", b"CONFIG_A=y\n")
    assert len(k) == 12 and int(k, 16) >= 0
    assert k != kernel_key("6.1.193-1", b"CONFIG_A=y\n")
    assert k != kernel_key("6.1.192-2", b"CONFIG_A=m\n")


def test_kernel_key_ignores_comments_but_not_unset_options() -> None:
    k = kernel_key("6.1.192-2", b"CONFIG_A=y\n")
    assert k == kernel_key("6.1.192-2", b"# why A: see docs\n\nCONFIG_A=y\n  \n")
    assert k != kernel_key("6.1.192-2", b"CONFIG_A=y\n# CONFIG_B is not set\n")


def test_rootfs_key_ignores_order_but_not_content() -> None:
    a = rootfs_key("bookworm", ["python3", "kmod"], ["click", "pandas"])
    assert a == rootfs_key("bookworm", ["kmod", "python3"], ["pandas", "click"])
    assert a != rootfs_key("trixie", ["python3", "kmod"], ["click", "pandas"])
    assert a != rootfs_key("bookworm", ["python3", "kmod"], ["click", "pandas", "numpy"])


def test_stamp_marks_done(tmp_path: Path) -> None:
    assert not is_done(tmp_path)
    assert read_stamp(tmp_path) == {}
    write_stamp(tmp_path, {"release": "6.1.192"})
    assert is_done(tmp_path)
    assert read_stamp(tmp_path) == {"release": "6.1.192"}


# --- config fragment ----------------------------------------------------------

def test_parse_config_values_unset_and_last_wins() -> None:
    text = "# comment\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_A=m\n"
    assert parse_config(text) == {"CONFIG_A": "m", "CONFIG_B": "n", "CONFIG_C": '"x y"'}


def test_parse_config_rejects_garbage() -> None:
    with pytest.raises(ChargetraceError, match="line 2"):
        parse_config("CONFIG_A=y\nDEVICE_PRIVATE=y\n")


def test_packaged_fragment_requests_every_required_option() -> None:
    frag = parse_config(fragment_bytes().decode())
    for sym, want in REQUIRED.items():
        assert frag.get(sym) == want, sym
    # the reason the lab exists, and the THP setting hmm-tests needs
    assert frag["CONFIG_DEVICE_PRIVATE"] == "y" and frag["CONFIG_TEST_HMM"] == "m"
    assert frag.get("CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS") != "y"


def test_check_config_reports_missing_and_wrong() -> None:
    final = "CONFIG_DEVICE_PRIVATE=y\nCONFIG_TEST_HMM=y\n"
    bad = check_config(final, {"CONFIG_DEVICE_PRIVATE": "y", "CONFIG_TEST_HMM": "m", "CONFIG_GUP_TEST": "y"})
    assert bad == ["CONFIG_TEST_HMM: wanted m, got y", "CONFIG_GUP_TEST: wanted y, got n"]
    assert check_config(final, {"CONFIG_DEVICE_PRIVATE": "y"}) == []


# --- qemu ---------------------------------------------------------------------

def test_qemu_argv_tcg() -> None:
    argv = qemu_argv(bzimage=Path("/k/bzImage"), rootfs=Path("/r"), share=Path("/s"), init="/lab-init",
                     accel="tcg", mem="2G", smp=3)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-m") + 1] == "2G" and argv[argv.index("-smp") + 1] == "3"
    assert "-no-reboot" in argv and "-enable-kvm" not in argv
    append = argv[argv.index("-append") + 1].split()
    for word in ("panic=-1", "oops=panic", "init=/lab-init", "hugepages=16", "root=root", "rootfstype=9p"):
        assert word in append
    virtfs = [argv[i + 1] for i, a in enumerate(argv) if a == "-virtfs"]
    assert any("path=/r,mount_tag=root" in v for v in virtfs)
    assert any("path=/s,mount_tag=lab" in v for v in virtfs)


def test_qemu_argv_kvm() -> None:
    argv = qemu_argv(bzimage=Path("b"), rootfs=Path("r"), share=Path("s"), init="/i", accel="kvm")
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"


def _fake_host(tmp_path: Path, *, flags: str, pvm: bool) -> tuple[Path, Path, Path]:
    dev = tmp_path / "kvm"
    dev.write_text("")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    mods = tmp_path / "module"
    mods.mkdir()
    if pvm:
        (mods / "kvm_pvm").mkdir()
    return dev, cpuinfo, mods


def test_kvm_usable_rejects_pvm_and_missing_virt(tmp_path: Path) -> None:
    assert kvm_usable(tmp_path / "nope")[0] is False
    dev, cpuinfo, mods = _fake_host(tmp_path, flags="fpu sse2 svm", pvm=True)
    ok, why = kvm_usable(dev, cpuinfo, mods)
    assert not ok and "pvm" in why.lower()
    (mods / "kvm_pvm").rmdir()
    assert kvm_usable(dev, cpuinfo, mods)[0] is True
    cpuinfo.write_text("flags\t\t: fpu sse2\n")
    assert kvm_usable(dev, cpuinfo, mods) == (False, "no vmx/svm in /proc/cpuinfo")


def test_pick_accel_honours_explicit_choice() -> None:
    assert pick_accel("tcg") == "tcg"
    assert pick_accel("kvm") == "kvm"
    assert pick_accel("auto") in ("tcg", "kvm")


# --- LabConfig ------------------------------------------------------------------

def test_labconfig_validates(tmp_path: Path) -> None:
    cfg = LabConfig(kernel="6.12", cache_dir=tmp_path)
    assert cfg.run_dir == tmp_path / "runs" / "6.12"
    assert cfg.trace_name == "hmm-tests-6.12.parquet"
    with pytest.raises(ChargetraceError, match="unknown kernel series"):
        LabConfig(kernel="5.4")
    with pytest.raises(ChargetraceError, match="accel"):
        LabConfig(accel="xen")


# --- hmm-tests output -------------------------------------------------------------

_OUT_61 = """\
TAP version 13
1..4
# Starting 4 tests from 4 test cases.
#  RUN           hmm.hmm_device_private.open_close ...
#            OK  hmm.hmm_device_private.open_close
ok 1 hmm.hmm_device_private.open_close
#  RUN           hmm.hmm_device_coherent.open_close ...
# SKIP      DEVICE_COHERENT not available
#            OK  hmm.hmm_device_coherent.open_close
ok 2 hmm.hmm_device_coherent.open_close
#  RUN           hmm.hmm_device_private.migrate ...
#            OK  hmm.hmm_device_private.migrate
ok 3 hmm.hmm_device_private.migrate
#  RUN           hmm2.hmm2_device_private.migrate_mixed ...
#            OK  hmm2.hmm2_device_private.migrate_mixed
ok 4 hmm2.hmm2_device_private.migrate_mixed
# PASSED: 4 / 4 tests passed.
# Totals: pass:4 fail:0 xfail:0 xpass:0 skip:0 error:0
"""

_OUT_612_FAIL = """\
TAP version 13
1..3
#  RUN           hmm.hmm_device_private.exclusive ...
# hmm-tests.c:1817:exclusive:Expected ret (-16) == 0 (0)
# exclusive: Test terminated by assertion
#          FAIL  hmm.hmm_device_private.exclusive
not ok 1 hmm.hmm_device_private.exclusive
#  RUN           hmm.hmm_device_coherent.exclusive ...
#      SKIP      DEVICE_COHERENT not available
#            OK  hmm.hmm_device_coherent.exclusive
ok 2 # SKIP DEVICE_COHERENT not available
#  RUN           hmm.hmm_device_private.open_close ...
#            OK  hmm.hmm_device_private.open_close
ok 3 hmm.hmm_device_private.open_close
# FAILED: 2 / 3 tests passed.
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
"""


def test_parse_hmm_tests_61_counts_device_private() -> None:
    res = parse_hmm_tests(_OUT_61)
    assert res.planned == 4 and res.summary == "PASSED" and res.ok
    assert res.totals["pass"] == 4
    assert res.device_private == {"pass": 3, "fail": 0, "skip": 0}
    assert res.tests["hmm.hmm_device_coherent.open_close"] == "pass"


def test_parse_hmm_tests_612_skip_and_fail() -> None:
    res = parse_hmm_tests(_OUT_612_FAIL)
    assert not res.ok and res.summary == "FAILED"
    assert res.tests == {
        "hmm.hmm_device_private.exclusive": "fail",
        "hmm.hmm_device_coherent.exclusive": "skip",
        "hmm.hmm_device_private.open_close": "pass",
    }
    assert res.device_private == {"pass": 1, "fail": 1, "skip": 0}


def test_parse_hmm_tests_truncated_run_is_not_ok() -> None:
    cut = _OUT_61.split("ok 3")[0]
    res = parse_hmm_tests(cut + "# PASSED: 2 / 4 tests passed.\n")
    assert res.planned == 4 and len(res.tests) == 2 and not res.ok


def test_dmesg_problems() -> None:
    log = ("[    1.0] test_hmm: loading out-of-tree module taints kernel.\n"
           "[    2.0] WARNING: CPU: 1 PID: 9 at mm/memcontrol.c:7120 mem_cgroup_migrate+0x1/0x2\n"
           "[    2.1] HMM test module loaded. This is only for testing HMM.\n"
           "[    3.0] BUG: Bad page state in process hmm-tests\n")
    assert [line.split("] ")[1][:8] for line in dmesg_problems(log)] == ["WARNING:", "BUG: Bad"]


def test_locked_excludes_a_second_builder(tmp_path: Path) -> None:
    from chargetrace.lab.cache import locked

    target = tmp_path / "kernel" / "6.1.192-2-abc"
    with locked(target):
        assert target.is_dir()
        with pytest.raises(ChargetraceError, match="being built by another process"):
            with locked(target, wait=False):
                pass
    with locked(target, wait=False):
        pass


# --- trace checks ---------------------------------------------------------------------

def _tiny_trace(path: Path, kinds: list[str], drops: int = 0) -> None:
    from chargetrace.traces import TraceMeta, write_table
    from chargetrace.traces.writer import columns_to_table

    n = len(kinds)
    table = columns_to_table({"ts_ns": list(range(1, n + 1)), "kind": kinds}, 0)
    meta = TraceMeta(recorder="test", kernel_release="6.1.192", provenance={"bcc": "0.26.0"},
                     drops={"total": drops, "per_cpu": {}})
    write_table(table, path, meta)


def test_summarize_counts_kinds_and_names_missing_ones(tmp_path: Path) -> None:
    from chargetrace.lab.trace import REQUIRED_KINDS, summarize

    p = tmp_path / "t.parquet"
    _tiny_trace(p, ["charge", "charge", "uncharge", "transfer"], drops=3)
    s = summarize(p)
    assert s.events == 4 and s.drops == 3 and s.kernel_release == "6.1.192"
    assert s.kinds == {"charge": 2, "transfer": 1, "uncharge": 1}
    assert s.missing_kinds == [k for k in REQUIRED_KINDS if k not in ("charge", "uncharge", "transfer")]
    _tiny_trace(p, list(REQUIRED_KINDS))
    assert summarize(p).missing_kinds == []


def test_add_provenance_merges_and_keeps_rows(tmp_path: Path) -> None:
    from chargetrace.lab.trace import add_provenance
    from chargetrace.traces import read_trace

    p = tmp_path / "t.parquet"
    _tiny_trace(p, ["charge", "uncharge"])
    add_provenance(p, {"lab": "qemu tcg", "config_sha256": "abc"})
    t = read_trace(p)
    assert t.num_events == 2
    assert t.meta.provenance == {"bcc": "0.26.0", "lab": "qemu tcg", "config_sha256": "abc"}


def test_qemu_argv_scratch_disks_in_order() -> None:
    argv = qemu_argv(bzimage=Path("b"), rootfs=Path("r"), share=Path("s"), init="/i", accel="tcg",
                     disks=(Path("/d/a.img"), Path("/d/b.img")))
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert [d.split(",")[0] for d in drives] == ["file=/d/a.img", "file=/d/b.img"]
    assert all("if=virtio" in d and "format=raw" in d for d in drives)
    assert "-drive" not in qemu_argv(bzimage=Path("b"), rootfs=Path("r"), share=Path("s"), init="/i", accel="tcg")


def test_labconfig_scratch_disks_validated(tmp_path: Path) -> None:
    assert LabConfig(cache_dir=tmp_path, scratch_disks_mb=[64, 32]).scratch_disks_mb == (64, 32)
    with pytest.raises(ChargetraceError, match="scratch disks"):
        LabConfig(cache_dir=tmp_path, scratch_disks_mb=(0,))
