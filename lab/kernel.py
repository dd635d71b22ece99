"""Building the lab kernel, test_hmm.ko (out of tree) and hmm-tests, with a cache.

Steps (``docs/lab.md#config-fragment``, ``#test_hmm-out-of-tree``): unpack ``linux-source-<series>``;
``x86_64_defconfig`` + ``kernel/configs/kvm_guest.config`` + ``hmm-lab.config``
via ``merge_config.sh``; ``olddefconfig``; ``make bzImage modules``;
``modules_install`` into a staging root; build ``test_hmm.ko`` out of tree;
build ``hmm-tests`` from the same source.

Why test_hmm out of tree: ``lib/Makefile`` strips the ftrace flags
(``ccflags-remove-$(CONFIG_FUNCTION_TRACER) += $(CC_FLAGS_FTRACE)``), so the
in-tree module has no fentry and kprobes on ``dmirror_*`` are refused as
notrace. An external module build keeps the flags.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

from .cache import is_done, kernel_key, locked, read_stamp, write_stamp
from .kconfig import FRAGMENT_NAME, check_config, fragment_bytes
from .packages import KernelSource
from .proc import run

__all__ = ["KernelBuild", "build_kernel", "hmm_tests_dir", "kernel_dir"]

_OOT_MAKEFILE = "obj-m += test_hmm.o\n"


@dataclass(frozen=True)
class KernelBuild:
    """A built (cached) lab kernel and its test pieces."""

    directory: Path
    source: KernelSource
    key: str
    release: str
    cached: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bzimage(self) -> Path:
        return self.directory / "kbuild" / "arch" / "x86" / "boot" / "bzImage"

    @property
    def test_hmm_ko(self) -> Path:
        return self.directory / "test_hmm_oot" / "test_hmm.ko"

    @property
    def hmm_tests(self) -> Path:
        return self.directory / "hmm-tests"

    @property
    def modroot(self) -> Path:
        """``INSTALL_MOD_PATH`` staging root: holds ``lib/modules/<release>``."""
        return self.directory / "modroot"


def kernel_dir(cache_dir: Path, source: KernelSource, key: str) -> Path:
    """The cache directory of one kernel build."""
    return cache_dir / "kernel" / f"{source.version}-{key}"


def hmm_tests_dir(tree: Path) -> Path:
    """Where hmm-tests.c lives: ``selftests/mm`` (≥ 6.3) or ``selftests/vm`` (older)."""
    for sub in ("mm", "vm"):
        d = tree / "tools" / "testing" / "selftests" / sub
        if (d / "hmm-tests.c").is_file():
            return d
    raise ChargetraceError(f"lab: no hmm-tests.c under {tree}/tools/testing/selftests/{{mm,vm}}")


#: How hmm-tests.c is compiled, tried in order (by trial: the first that compiles wins). Paths are
#: relative to its directory. -I <tree root>: it includes <lib/test_hmm_uapi.h> and <mm/gup_test.h>.
#: The second recipe is the selftests layout of 6.19/7.x: "kselftest_harness.h" one level up,
#: <mm/vm_util.h> and "hugepage_settings.h" with their .c files linked in (selftests/mm/Makefile
#: links vm_util.c and hugepage_settings.c into every test), tools' uapi copies for new flags.
_HMM_TESTS_RECIPES: tuple[tuple[str, ...], ...] = (
    ("-Wall", "-I", "../../../..", "hmm-tests.c", "-lrt", "-lpthread"),
    ("-Wall", "-O2", "-I", "../../../..", "-I", "..", "-isystem", "../../../../tools/include/uapi",
     "hmm-tests.c", "vm_util.c", "hugepage_settings.c", "-lrt", "-lpthread", "-lm"),
)


def _build_hmm_tests(tdir: Path, out: Path, log: Path) -> float:
    """Compile hmm-tests with the first recipe whose files exist and that compiles."""
    failures = []
    for recipe in _HMM_TESTS_RECIPES:
        if not all((tdir / a).is_file() for a in recipe if a.endswith(".c")):
            continue
        try:
            return run(["gcc", *recipe, "-o", out], log=log, cwd=tdir, what="hmm-tests build")
        except ChargetraceError as exc:
            failures.append(str(exc))
    raise ChargetraceError(f"lab: hmm-tests did not compile with any recipe ({'; '.join(failures)})")


def build_kernel(source: KernelSource, cache_dir: Path, *, jobs: int, log: Path) -> KernelBuild:
    """Build (or reuse) the lab kernel for ``source``; raises ChargetraceError on failure."""
    fragment = fragment_bytes()
    key = kernel_key(source.version, fragment)
    d = kernel_dir(cache_dir, source, key)
    with locked(d):
        if is_done(d):
            stamp = read_stamp(d)
            return KernelBuild(d, source, key, stamp["release"], cached=True)
        return _build(d, source, key, fragment, jobs=jobs, log=log)


def _build(d: Path, source: KernelSource, key: str, fragment: bytes, *, jobs: int, log: Path) -> KernelBuild:
    timings: dict[str, float] = {}
    tree = d / source.topdir
    kbuild = d / "kbuild"
    if not (tree / "Makefile").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        timings["extract"] = run(["tar", "-xf", source.tarball, "-C", d], log=log, what="unpack kernel source")

    frag = d / FRAGMENT_NAME
    configured = kbuild / ".lab-configured"
    if not configured.is_file() or configured.read_text().strip() != key:
        t0 = time.monotonic()
        frag.write_bytes(fragment)
        make = ["make", "-C", tree, f"O={kbuild}"]
        run([*make, "x86_64_defconfig"], log=log, what="make x86_64_defconfig")
        run([tree / "scripts" / "kconfig" / "merge_config.sh", "-m", "-O", kbuild, kbuild / ".config",
             tree / "kernel" / "configs" / "kvm_guest.config", frag], log=log, cwd=tree, what="merge_config.sh")
        run([*make, "olddefconfig"], log=log, what="make olddefconfig")
        configured.write_text(key + "\n")
        timings["configure"] = time.monotonic() - t0
    bad = check_config(kbuild / ".config")
    if bad:
        raise ChargetraceError(f"lab: kernel .config lacks lab options ({'; '.join(bad)}); see {frag}")

    # make is incremental: an interrupted build resumes here.
    timings["build"] = run(["make", "-C", tree, f"O={kbuild}", f"-j{jobs}", "bzImage", "modules"],
                           log=log, what="kernel build")
    release = (kbuild / "include" / "config" / "kernel.release").read_text().strip()

    shutil.rmtree(d / "modroot", ignore_errors=True)
    run(["make", "-C", tree, f"O={kbuild}", f"INSTALL_MOD_PATH={d / 'modroot'}", "modules_install"],
        log=log, what="modules_install")
    # BCC would follow these (dangling in the guest) instead of using /sys/kernel/kheaders.tar.xz.
    for link in ("build", "source"):
        (d / "modroot" / "lib" / "modules" / release / link).unlink(missing_ok=True)

    oot = d / "test_hmm_oot"
    oot.mkdir(exist_ok=True)
    for name in ("test_hmm.c", "test_hmm_uapi.h"):
        shutil.copy2(tree / "lib" / name, oot / name)
    (oot / "Makefile").write_text(_OOT_MAKEFILE)
    timings["test_hmm"] = run(["make", "-C", kbuild, f"M={oot}", "modules"], log=log, what="test_hmm.ko build")

    timings["hmm_tests"] = _build_hmm_tests(hmm_tests_dir(tree), d / "hmm-tests", log)

    for artifact in (d / "kbuild" / "arch" / "x86" / "boot" / "bzImage", oot / "test_hmm.ko", d / "hmm-tests"):
        if not artifact.is_file():
            raise ChargetraceError(f"lab: kernel build finished but {artifact} is missing; see {log}")
    write_stamp(d, {"release": release, "source_version": source.version, "key": key,
                    "timings": {k: round(v, 1) for k, v in timings.items()}})
    return KernelBuild(d, source, key, release, cached=False, timings=timings)
