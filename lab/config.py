"""The lab's configuration: one dataclass, validated at construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

__all__ = ["DEFAULT_CACHE_DIR", "HMM_TESTS_LEFT_OUT", "KERNEL_SERIES", "LabConfig"]

#: Where kernels, modules, tests and rootfs are cached (outside the repository).
DEFAULT_CACHE_DIR = Path(os.environ.get("CHARGETRACE_LAB_CACHE", "/var/cache/chargetrace-lab"))

#: Kernel series the lab knows: Debian ``linux-source-<series>`` packages in bookworm(-security),
#: and those of other suites in ``lab/packages.py`` (``SOURCE_SUITES``).
KERNEL_SERIES = ("5.10", "6.1", "6.12", "7.2")

#: hmm-tests a series' lab run leaves out (kselftest harness ``-T``), and why. 7.2's
#: benchmark_thp_migration is a timing benchmark, not a check: 5 round trips of buffers up to
#: 128 THPs (256 MiB) each way, THP and order 0, about 1.3 M page migrations that would dominate
#: the recording (and its 120 s harness timeout is meant for real hardware, not TCG).
HMM_TESTS_LEFT_OUT: dict[str, tuple[str, ...]] = {
    "7.2": ("benchmark_thp_migration",),
}

_ACCELS = ("auto", "tcg", "kvm")


@dataclass(frozen=True)
class LabConfig:
    """Everything one lab run needs.

    :param kernel: kernel series, the ``X.Y`` of Debian's ``linux-source-X.Y``.
    :param cache_dir: cache root for kernel builds and rootfs.
    :param out_dir: where the run's share (guest scripts, logs, trace) is written;
        default ``<cache_dir>/runs/<kernel>``.
    :param accel: ``tcg``, ``kvm`` or ``auto`` (KVM only if it looks usable).
    :param record: run hmm-tests under ``chargetrace record`` (else untraced).
    :param ringbuf_mb: the recorder's ring buffer size.
    :param jobs: parallel make jobs for the kernel build.
    :param timeout_s: hard limit on the QEMU run (boot to power-off).
    :param mem: guest memory (QEMU ``-m``).
    :param smp: guest vCPUs.
    :param suite: Debian suite of the rootfs.
    :param mirror: Debian mirror for debootstrap.
    :param install_missing: apt-get install missing host packages.
    :param bug: a bug variant of the kernel (``lab/bugs.py``), built incrementally on the clean one.
    :param workload: a shell command run (recorded) in the guest instead of hmm-tests, in ``/lab/work``
        where ``workload_files`` are copied; test_hmm is loaded first.
    :param memory_max: bytes written to the recorded memcg's ``memory.max`` before the command starts.
    :param scratch_disks_mb: sizes of blank virtio disks given to the guest (``/dev/vda``, ``/dev/vdb``,
        ... in this order), e.g. for a swap device or a block file system: the guest's root and share
        are 9p, which can hold neither a swap file nor a page cache. Sparse files, removed after the run.
    :param debug_vm: build (or reuse) the kernel with ``lab/debug-vm.config`` (CONFIG_DEBUG_VM) merged
        after ``hmm-lab.config``: a full build with a cache key of its own; bug variants build on it.
    """

    kernel: str = "6.1"
    cache_dir: Path = DEFAULT_CACHE_DIR
    out_dir: Path | None = None
    accel: str = "auto"
    record: bool = True
    ringbuf_mb: int = 64
    jobs: int = field(default_factory=lambda: (os.cpu_count() or 1) + 1)
    timeout_s: int = 1200
    mem: str = "4G"
    smp: int = 2
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    install_missing: bool = True
    bug: str | None = None
    workload: str | None = None
    workload_files: tuple[Path, ...] = ()
    memory_max: int | None = None
    scratch_disks_mb: tuple[int, ...] = ()
    debug_vm: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in KERNEL_SERIES:
            raise ChargetraceError(
                f"lab: unknown kernel series {self.kernel!r} (known: {', '.join(KERNEL_SERIES)})"
            )
        if self.accel not in _ACCELS:
            raise ChargetraceError(f"lab: --accel must be one of {', '.join(_ACCELS)}, not {self.accel!r}")
        if self.ringbuf_mb < 1 or self.jobs < 1 or self.timeout_s < 10 or self.smp < 1:
            raise ChargetraceError("lab: ringbuf_mb, jobs, smp must be >= 1 and timeout_s >= 10")
        if self.bug is not None:
            from .bugs import variant

            variant(self.bug, self.kernel)  # unknown name or wrong series: fail before any build
        if self.memory_max is not None and self.memory_max < 4096:
            raise ChargetraceError("lab: --memory-max must be at least one page (bytes)")
        if self.memory_max is not None and not self.record:
            raise ChargetraceError("lab: --memory-max limits the recorded memcg; it needs --record")
        if any(mb < 1 for mb in self.scratch_disks_mb) or len(self.scratch_disks_mb) > 8:
            raise ChargetraceError("lab: scratch disks are 1 MiB or more, at most 8")
        object.__setattr__(self, "scratch_disks_mb", tuple(int(mb) for mb in self.scratch_disks_mb))
        if self.workload_files and not self.workload:
            raise ChargetraceError("lab: --workload-file needs --workload")
        for f in self.workload_files:
            if not Path(f).is_file():
                raise ChargetraceError(f"lab: workload file {f} does not exist")
        object.__setattr__(self, "workload_files", tuple(Path(f) for f in self.workload_files))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def run_dir(self) -> Path:
        """The host directory shared with the guest as ``/lab``."""
        if self.out_dir is not None:
            return self.out_dir
        return self.cache_dir / "runs" / (self.kernel + ("-debugvm" if self.debug_vm else "")
                                          + (f"-{self.bug}" if self.bug else "")
                                          + ("-workload" if self.workload else ""))

    @property
    def command_name(self) -> str:
        """Base name of the guest command's result files (``<name>.log``, ``<name>.rc``)."""
        return "workload" if self.workload else "hmm-tests"

    @property
    def trace_name(self) -> str:
        """File name of the guest's trace, e.g. ``hmm-tests-6.1.parquet``."""
        return f"{'workload' if self.workload else 'hmm-tests'}-{self.kernel}{'-' + self.bug if self.bug else ''}.parquet"
