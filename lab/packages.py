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

__all__ = [
    "HOST_PACKAGES", "SOURCE_SUITES", "KernelSource", "ensure_host_packages", "installed_version", "kernel_source",
]

#: What the build and boot need on the host (build-essential for gcc/make).
HOST_PACKAGES = (
    "build-essential", "flex", "bison", "libelf-dev", "dwarves", "bc", "libssl-dev", "cpio",
    "kmod", "rsync", "xz-utils", "zstd", "qemu-system-x86", "debootstrap",
)


#: Kernel series whose ``linux-source`` package is not in the host's own suites (Debian 12), with the
#: Debian suites that carry it. Their source lists are added with a pin priority below 100, so apt
#: installs from them only what is asked for by name and never upgrades the host's own packages.
SOURCE_SUITES: dict[str, tuple[tuple[str, str], ...]] = {
    # bullseye (Debian 11): the last 5.10 sources, security updates in bullseye-security.
    "5.10": (("http://deb.debian.org/debian", "bullseye"),
             ("http://deb.debian.org/debian-security", "bullseye-security")),
    # trixie-backports (Debian 13): the newest stable kernels; 6.19 has left the archive since.
    "7.2": (("http://deb.debian.org/debian", "trixie-backports"),),
}

#: apt priority of the added suites: < 100 means "only when nothing else provides it".
_PIN_PRIORITY = 50


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


def _add_source_suites(series: str, *, log: Path) -> None:
    """Make the suites of ``SOURCE_SUITES[series]`` known to apt (pinned low) and refresh the lists."""
    changed = False
    for mirror, suite in SOURCE_SUITES.get(series, ()):
        name = f"chargetrace-lab-{suite}"
        lists = Path("/etc/apt/sources.list.d") / f"{name}.list"
        prefs = Path("/etc/apt/preferences.d") / name
        want_list = f"deb {mirror} {suite} main\n"
        want_prefs = f"Package: *\nPin: release n={suite}\nPin-Priority: {_PIN_PRIORITY}\n"
        for path, text in ((lists, want_list), (prefs, want_prefs)):
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                changed = True
    if changed:
        run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "update"], log=log, what="apt-get update")


def kernel_source(series: str, *, log: Path, install: bool = True) -> KernelSource:
    """The ``linux-source-<series>`` package, installed if missing."""
    package = f"linux-source-{series}"
    if install and installed_version(package) is None:
        _add_source_suites(series, log=log)
    ensure_host_packages([package], log=log, install=install)
    version = installed_version(package)
    tarball = Path(f"/usr/src/{package}.tar.xz")
    if version is None or not tarball.is_file():
        raise ChargetraceError(f"lab: {package} is installed but {tarball} is missing")
    return KernelSource(series=series, package=package, version=version, tarball=tarball)
