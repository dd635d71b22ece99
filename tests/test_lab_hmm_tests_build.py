"""hmm-tests is compiled by trial (lab/kernel.py): the one-file recipe of 6.1/6.12 first, then the
7.x selftests layout (kselftest_harness.h one level up, vm_util.c and hugepage_settings.c linked).
Real gcc compiles of miniature selftest trees shaped like each layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chargetrace.lab.kernel import _build_hmm_tests, hmm_tests_dir
from chargetrace.traces.errors import ChargetraceError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

_MAIN = '#include <stdio.h>\n#include "kselftest_harness.h"\n{extra}int main(void) {{ return HARNESS_OK{call}; }}\n'


def _tree(root: Path, *, new_layout: bool) -> Path:
    mm = root / "tools" / "testing" / "selftests" / "mm"
    mm.mkdir(parents=True)
    harness_dir = mm.parent if new_layout else mm
    (harness_dir / "kselftest_harness.h").write_text("#define HARNESS_OK 0\n")
    if new_layout:
        (mm / "vm_util.h").write_text("int vm_util_answer(void);\n")
        (mm / "vm_util.c").write_text('#include "vm_util.h"\nint vm_util_answer(void) { return 0; }\n')
        (mm / "hugepage_settings.c").write_text("int hugepage_settings_unused;\n")
        (mm / "hmm-tests.c").write_text(_MAIN.format(extra='#include "vm_util.h"\n', call=" + vm_util_answer()"))
    else:
        (mm / "hmm-tests.c").write_text(_MAIN.format(extra="", call=""))
    return mm


@pytest.mark.parametrize("new_layout", [False, True], ids=["6.12-layout", "7.2-layout"])
def test_hmm_tests_compile_by_trial(tmp_path: Path, new_layout: bool) -> None:
    tdir = hmm_tests_dir(_tree(tmp_path / "src", new_layout=new_layout).parents[3])
    out = tmp_path / "hmm-tests"
    _build_hmm_tests(tdir, out, tmp_path / "build.log")
    assert subprocess.run([out]).returncode == 0
    log = (tmp_path / "build.log").read_text()
    assert ("vm_util.c" in log) == new_layout  # the second recipe ran only where the first failed


def test_hmm_tests_that_compile_with_no_recipe_fail_in_one_line(tmp_path: Path) -> None:
    mm = _tree(tmp_path / "src", new_layout=False)
    (mm / "hmm-tests.c").write_text("this is not C\n")
    with pytest.raises(ChargetraceError, match="hmm-tests did not compile with any recipe"):
        _build_hmm_tests(mm, tmp_path / "hmm-tests", tmp_path / "build.log")
