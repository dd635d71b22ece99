"""Host packages and the Debian kernel source package.

Only Debian's archive is used: ``linux-source-<series>`` provides the kernel
tree as ``/usr/src/linux-source-<series>.tar.xz``; its package version is part
of the cache key, so a security update of the source rebuilds the kernel.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

from .proc import run

__all__ = ["HOST_PACKAGES", "KernelSource", "ensure_host_packages", "installed_version", "kernel_source"]

#: What the build and boot need on the host (build-essential for gcc/make).
HOST_PACKAGES = (
    "build-essential", "flex", "bison", "libelf-dev", "dwarves", "bc", "libssl-dev", "cpio",
    "kmod", "rsync", "xz-utils", "zstd", "qemu-system-x86", "debootstrap",
)


@dataclass(frozen=True)
class KernelSource:
    """An installed ``linux-source-<series>`` package."""

    series: str
    package: str
    version: str
    tarball: Path

    @property
    def topdir(self) -> str:
        """The directory the tarball unpacks to."""
        return f"linux-source-{self.series}"


def installed_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return None
    status, _, version = proc.stdout.partition("\t")
    return version if status.endswith(" installed") and version else None


def ensure_host_packages(packages: tuple[str, ...] | list[str], *, log: Path, install: bool = True) -> list[str]:
    """Install the missing ones of ``packages`` with apt-get; return what was installed."""
    if shutil.which("dpkg-query") is None:
        raise ChargetraceError("lab: needs a Debian host (dpkg-query not found)")
    missing = [p for p in packages if installed_version(p) is None]
    if not missing:
        return []
    if not install:
        raise ChargetraceError(f"lab: missing host packages: {' '.join(missing)}")
    # apt may be held by a concurrent install; wait for the lock instead of failing.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "-y", "--no-install-recommends"]
    try:
        run([*apt, "install", *missing], log=log, what="apt-get install")
    except ChargetraceError:
        run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "update"], log=log, what="apt-get update")
        run([*apt, "install", *missing], log=log, what="apt-get install")
    return missing


def kernel_source(series: str, *, log: Path, install: bool = True) -> KernelSource:
    """The ``linux-source-<series>`` package, installed if missing."""
    package = f"linux-source-{series}"
    ensure_host_packages([package], log=log, install=install)
    version = installed_version(package)
    tarball = Path(f"/usr/src/{package}.tar.xz")
    if version is None or not tarball.is_file():
        raise ChargetraceError(f"lab: {package} is installed but {tarball} is missing")
    return KernelSource(series=series, package=package, version=version, tarball=tarball)
