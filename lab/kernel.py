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
from .kconfig import (
    DEBUG_VM_FRAGMENT_NAME, DEBUG_VM_REQUIRED, FRAGMENT_NAME, check_config, fragment_bytes, required_options,
    series_fragment_bytes, series_fragment_name,
)
from .packages import KernelSource, ensure_host_packages
from .proc import run

__all__ = [
    "KernelBuild", "build_kernel", "hmm_tests_dir", "kernel_dir", "lab_fragments", "needs_libhugetlbfs", "series_kernel_key",
]

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
    def root_tag(self) -> str:
        """The 9p mount tag this kernel mounts as root from ``root=root rootfstype=9p``, found in its
        source: ``root`` where init/do_mounts.c has ``mount_nodev_root()`` (f9259be6a9e7 "init:
        allow mounting arbitrary non-blockdevice filesystems as root", 5.15); before it every root
        goes through ``mount_block_root("/dev/root", ...)``, so the tag must be ``/dev/root``."""
        do_mounts = self.directory / self.source.topdir / "init" / "do_mounts.c"
        try:
            return "root" if "mount_nodev_root" in do_mounts.read_text(errors="replace") else "/dev/root"
        except OSError:
            return "root"  # a bug variant's directory holds no tree: its clean series is >= 6.1

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


def _hugetlbfs_libs(tdir: Path, log: Path) -> list[str]:
    """Link flags for an hmm-tests that still uses libhugetlbfs (5.10 and older: the dependency went with
    30fb9454ab23 "selftests/vm: hmm-tests: remove the libhugetlbfs dependency", 5.11), found in the source.

    The archive is linked in (``-l:libhugetlbfs.a``), so the guest's root filesystem, and its cache key,
    need no libhugetlbfs; the host gets ``libhugetlbfs-dev`` only when a tree needs it.
    """
    if not needs_libhugetlbfs(tdir):
        return []
    ensure_host_packages(["libhugetlbfs-dev"], log=log)
    return ["-l:libhugetlbfs.a"]


def needs_libhugetlbfs(tdir: Path) -> bool:
    """Whether the hmm-tests.c in ``tdir`` includes ``<hugetlbfs.h>``."""
    return "<hugetlbfs.h>" in (tdir / "hmm-tests.c").read_text(errors="replace")


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
    """Compile hmm-tests with the first recipe whose files exist and that compiles (libhugetlbfs
    linked in where that tree's hmm-tests still uses it)."""
    libs = _hugetlbfs_libs(tdir, log)
    failures = []
    for recipe in _HMM_TESTS_RECIPES:
        if not all((tdir / a).is_file() for a in recipe if a.endswith(".c")):
            continue
        try:
            return run(["gcc", *recipe, *libs, "-o", out], log=log, cwd=tdir, what="hmm-tests build")
        except ChargetraceError as exc:
            failures.append(str(exc))
    raise ChargetraceError(f"lab: hmm-tests did not compile with any recipe ({'; '.join(failures)})")


def lab_fragments(series: str, *, debug_vm: bool = False) -> list[tuple[str, bytes]]:
    """The config fragments of ``series``' lab kernel, in merge order: the common one, the series' own
    where it has one, ``debug-vm.config`` for ``--debug-vm``."""
    fragments = [(FRAGMENT_NAME, fragment_bytes())]
    extra = series_fragment_bytes(series)
    if extra is not None:
        fragments.append((series_fragment_name(series), extra))
    if debug_vm:
        fragments.append((DEBUG_VM_FRAGMENT_NAME, fragment_bytes(DEBUG_VM_FRAGMENT_NAME)))
    return fragments


def series_kernel_key(source_version: str, series: str, *, debug_vm: bool = False) -> str:
    """The cache key of ``series``' lab kernel: a digest of its fragments. Only a series with a fragment
    of its own (or a ``--debug-vm`` build) has it in its key, so the keys (and cached builds) of the
    others stay what they were."""
    return kernel_key(source_version, b"\n".join(data for _, data in lab_fragments(series, debug_vm=debug_vm)))


def build_kernel(source: KernelSource, cache_dir: Path, *, jobs: int, log: Path,
                 debug_vm: bool = False) -> KernelBuild:
    """Build (or reuse) the lab kernel for ``source``; raises ChargetraceError on failure.

    ``debug_vm``: also merge ``debug-vm.config`` (CONFIG_DEBUG_VM). Its key hashes that fragment too
    and its directory is ``<version>-debugvm-<key>``, so the clean kernels keep their keys and cache
    entries.
    """
    fragments = lab_fragments(source.series, debug_vm=debug_vm)
    key = series_kernel_key(source.version, source.series, debug_vm=debug_vm)
    d = kernel_dir(cache_dir, source, key)
    if debug_vm:
        d = d.with_name(f"{source.version}-debugvm-{key}")
    with locked(d):
        if is_done(d):
            stamp = read_stamp(d)
            return KernelBuild(d, source, key, stamp["release"], cached=True)
        return _build(d, source, key, fragments, jobs=jobs, log=log)


def _build(d: Path, source: KernelSource, key: str, fragments: list[tuple[str, bytes]], *, jobs: int,
           log: Path) -> KernelBuild:
    timings: dict[str, float] = {}
    tree = d / source.topdir
    kbuild = d / "kbuild"
    if not (tree / "Makefile").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        timings["extract"] = run(["tar", "-xf", source.tarball, "-C", d], log=log, what="unpack kernel source")

    frags = [d / name for name, _ in fragments]
    configured = kbuild / ".lab-configured"
    if not configured.is_file() or configured.read_text().strip() != key:
        t0 = time.monotonic()
        for (_, data), path in zip(fragments, frags):
            path.write_bytes(data)
        make = ["make", "-C", tree, f"O={kbuild}"]
        run([*make, "x86_64_defconfig"], log=log, what="make x86_64_defconfig")
        run([tree / "scripts" / "kconfig" / "merge_config.sh", "-m", "-O", kbuild, kbuild / ".config",
             tree / "kernel" / "configs" / "kvm_guest.config", *frags], log=log, cwd=tree, what="merge_config.sh")
        run([*make, "olddefconfig"], log=log, what="make olddefconfig")
        configured.write_text(key + "\n")
        timings["configure"] = time.monotonic() - t0
    required = required_options(tree)
    if any(name == DEBUG_VM_FRAGMENT_NAME for name, _ in fragments):
        required.update(DEBUG_VM_REQUIRED)
    bad = check_config(kbuild / ".config", required)
    if bad:
        raise ChargetraceError(f"lab: kernel .config lacks lab options ({'; '.join(bad)}); "
                               f"see {', '.join(map(str, frags))}")

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
