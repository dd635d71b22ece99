"""Pure tests of the lab's per-series build logic (no kernel build, no QEMU): cache keys of the
series already cached, config options a tree needs, and what an older hmm-tests needs to link."""

from __future__ import annotations

from pathlib import Path

from chargetrace.lab.cache import kernel_key
from chargetrace.lab.config import KERNEL_SERIES
from chargetrace.lab.kconfig import REQUIRED, fragment_bytes, required_options, series_fragment_bytes
from chargetrace.lab.kernel import needs_libhugetlbfs, series_kernel_key


def test_keys_of_the_cached_61_and_612_builds_stay() -> None:
    # The directories /var/cache/chargetrace-lab/kernel/<version>-<key> the lab and CI reuse: a change
    # here means a cold rebuild of those kernels (lab/hmm-lab.config's bytes are part of the key).
    assert series_kernel_key("6.1.192-3", "6.1") == "d6b503eeaeae"
    assert series_kernel_key("6.12.117-1~deb12u1", "6.12") == "1e4a45341ea0"
    assert series_fragment_bytes("6.1") is None and series_fragment_bytes("6.12") is None


def test_a_series_without_its_own_fragment_keys_on_the_common_one() -> None:
    for series in KERNEL_SERIES:
        extra = series_fragment_bytes(series)
        common = kernel_key("1.2.3-4", fragment_bytes())
        if extra is None:
            assert series_kernel_key("1.2.3-4", series) == common, series
        else:
            assert series_kernel_key("1.2.3-4", series) == kernel_key("1.2.3-4", fragment_bytes() + b"\n" + extra)


def _tree(tmp_path: Path, hmm_tests: str, sub: str = "vm") -> Path:
    d = tmp_path / "tools" / "testing" / "selftests" / sub
    d.mkdir(parents=True)
    (d / "hmm-tests.c").write_text(hmm_tests)
    return tmp_path


def test_gup_test_is_required_only_where_hmm_tests_uses_it(tmp_path: Path) -> None:
    old = _tree(tmp_path / "5.10", '#include <hugetlbfs.h>\nTEST_F(hmm, migrate) {}\n')
    new = _tree(tmp_path / "6.1", '#include "../../../../mm/gup_test.h"\nTEST_F(hmm, hmm_gup_test) {}\n')
    assert "CONFIG_GUP_TEST" not in required_options(old)
    assert required_options(new) == REQUIRED
    assert {k: v for k, v in REQUIRED.items() if k != "CONFIG_GUP_TEST"} == required_options(old)


def test_libhugetlbfs_only_for_an_hmm_tests_that_includes_it(tmp_path: Path) -> None:
    old = _tree(tmp_path / "5.10", '#include <pthread.h>\n#include <hugetlbfs.h>\n')
    new = _tree(tmp_path / "6.1", '#include <pthread.h>\n/* hugetlbfs.h was dropped */\n', sub="mm")
    assert needs_libhugetlbfs(old / "tools/testing/selftests/vm")
    assert not needs_libhugetlbfs(new / "tools/testing/selftests/mm")


# 5.10's hmm-tests as its harness prints it (run on a host without test_hmm: every test fails at
# open; first two tests and the summary kept): names have no fixture variant.
_OUT_510_NO_DRIVER = """\
TAP version 13
1..22
# Starting 22 tests from 3 test cases.
#  RUN           hmm.open_close ...
could not open hmm dmirror driver (/dev/hmm_dmirror0)
# hmm-tests.c:86:open_close:Expected self->fd (-1) >= 0 (0)
# open_close: Test terminated by assertion
#          FAIL  hmm.open_close
not ok 1 hmm.open_close
#  RUN           hmm2.double_map ...
could not open hmm dmirror driver (/dev/hmm_dmirror0)
# hmm-tests.c:95:double_map:Expected self->fd0 (-1) >= 0 (0)
# double_map: Test terminated by assertion
#          FAIL  hmm2.double_map
not ok 22 hmm2.double_map
# FAILED: 0 / 22 tests passed.
# Totals: pass:0 fail:22 xfail:0 xpass:0 skip:0 error:0
"""


def test_510_hmm_tests_without_variants_are_all_device_private() -> None:
    from chargetrace.lab.hmmtests import parse_hmm_tests

    res = parse_hmm_tests(_OUT_510_NO_DRIVER)
    assert not res.variants and res.planned == 22 and res.summary == "FAILED"
    assert res.device_private == {"pass": 0, "fail": 2, "skip": 0}
    assert not res.ok
    passing = _OUT_510_NO_DRIVER.replace("not ok", "ok").replace("FAIL  hmm", "OK  hmm")
    assert parse_hmm_tests(passing).device_private == {"pass": 2, "fail": 0, "skip": 0}
    # a 6.x name with a variant still counts only its device_private variant
    six = parse_hmm_tests("1..2\nok 1 hmm.hmm_device_private.migrate\nok 2 hmm.hmm_device_coherent.migrate\n")
    assert six.variants and six.device_private == {"pass": 1, "fail": 0, "skip": 0}


def test_root_tag_follows_the_kernels_root_mounting(tmp_path: Path) -> None:
    from chargetrace.lab.kernel import KernelBuild
    from chargetrace.lab.packages import KernelSource
    from chargetrace.lab.qemu import qemu_argv

    def build(series: str, do_mounts: str | None) -> KernelBuild:
        d = tmp_path / series
        if do_mounts is not None:
            (d / f"linux-source-{series}" / "init").mkdir(parents=True)
            (d / f"linux-source-{series}" / "init" / "do_mounts.c").write_text(do_mounts)
        return KernelBuild(d, KernelSource(series, f"linux-source-{series}", "1", Path("x")), "k", "r", True)

    old = build("5.10", 'void __init mount_root(void)\n{ mount_block_root("/dev/root", root_mountflags); }\n')
    new = build("6.1", "static int __init mount_nodev_root(void)\n{ return 0; }\n")
    assert old.root_tag == "/dev/root" and new.root_tag == "root"
    assert build("6.12", None).root_tag == "root"  # a bug variant's directory has no tree
    argv = qemu_argv(bzimage=Path("b"), rootfs=Path("/r"), share=Path("/s"), init="/i", accel="tcg",
                     root_tag=old.root_tag)
    assert "local,path=/r,mount_tag=/dev/root,security_model=none,id=root" in argv
