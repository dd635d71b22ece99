"""Booting the lab kernel under QEMU with a 9p root and a 9p share.

TCG is the default here: this machine's /dev/kvm is ``kvm_pvm`` (a nested
paravirtual hypervisor) that hangs ordinary guest kernels right after the BIOS
(docs/lab.md#why-tcg), so ``auto`` only picks KVM when the host CPU advertises
vmx/svm and the PVM module is absent. The guest gets ``panic=-1 oops=panic``
and QEMU ``-no-reboot``, so a crash ends the run at once; a hard timeout
covers hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

__all__ = ["BootResult", "boot", "kvm_usable", "pick_accel", "qemu_argv"]

#: The kernel command line; ``hugepages=16`` lets hmm-tests' anon_write_hugetlbfs run.
_APPEND = ("console=ttyS0 root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 rw "
           "init={init} panic=-1 oops=panic hugepages=16 no_timer_check")


@dataclass(frozen=True)
class BootResult:
    """How a QEMU run ended."""

    accel: str
    returncode: int
    timed_out: bool
    seconds: float
    console: Path


def kvm_usable(dev: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo"),
               sysmodule: Path = Path("/sys/module")) -> tuple[bool, str]:
    """Whether KVM can run an ordinary kernel here, and why (not)."""
    if not dev.exists():
        return False, f"{dev} missing"
    if not os.access(dev, os.R_OK | os.W_OK):
        return False, f"{dev} not accessible"
    if (sysmodule / "kvm_pvm").exists():
        return False, "kvm_pvm (nested PVM) only runs PVM-patched guest kernels"
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    if not ({"vmx", "svm"} & set(flags.split())):
        return False, "no vmx/svm in /proc/cpuinfo"
    return True, "vmx/svm present"


def pick_accel(requested: str) -> str:
    """``tcg``/``kvm`` as requested; ``auto`` → kvm only if :func:`kvm_usable`."""
    if requested != "auto":
        return requested
    return "kvm" if kvm_usable()[0] else "tcg"


def qemu_argv(*, bzimage: Path, rootfs: Path, share: Path, init: str, accel: str, mem: str = "4G",
              smp: int = 2, extra_append: str = "", disks: tuple[Path, ...] = (),
              root_tag: str = "root") -> list[str]:
    """The QEMU command line for one lab boot; ``disks`` are raw images the guest sees as
    ``/dev/vda``, ``/dev/vdb``, ... (virtio-blk, in this order); ``root_tag``: the rootfs share's
    9p tag, the one the kernel mounts as root (``KernelBuild.root_tag``)."""
    if accel == "kvm":
        accel_args = ["-accel", "kvm", "-cpu", "host"]
    else:
        accel_args = ["-accel", "tcg,thread=multi", "-cpu", "max"]
    append = _APPEND.format(init=init) + (f" {extra_append}" if extra_append else "")
    return [
        "qemu-system-x86_64", *accel_args, "-m", mem, "-smp", str(smp),
        "-nographic", "-no-reboot", "-kernel", str(bzimage), "-append", append,
        "-virtfs", f"local,path={rootfs},mount_tag={root_tag},security_model=none,id=root",
        "-virtfs", f"local,path={share},mount_tag=lab,security_model=none,id=lab",
        "-nic", "none",
        # cache=unsafe: a scratch disk's contents do not outlive the run, so no host fsync is worth waiting for
        *[a for d in disks for a in ("-drive", f"file={d},format=raw,if=virtio,cache=unsafe")],
    ]


def boot(argv: list[str], *, console: Path, timeout_s: int, accel: str) -> BootResult:
    """Run QEMU until the guest powers off or ``timeout_s`` passes; console to ``console``."""
    t0 = time.monotonic()
    with console.open("wb") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise ChargetraceError(f"lab: cannot start {argv[0]}: {exc}") from exc
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    return BootResult(accel=accel, returncode=rc, timed_out=timed_out, seconds=time.monotonic() - t0,
                      console=console)
