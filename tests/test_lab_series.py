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
