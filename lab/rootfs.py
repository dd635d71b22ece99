"""The guest's root filesystem: a debootstrap'ed Debian with BCC and chargetrace.

The base (debootstrap + a venv at ``/opt/chargetrace`` with chargetrace's PyPI
dependencies) is cached, keyed by suite and package lists. Each run refreshes
the cheap parts: the chargetrace wheel built from this checkout, the kernel's
modules and the guest init. The venv uses ``--system-site-packages`` so that
Debian's ``python3-bpfcc`` (``import bcc``) is visible to the recorder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata, resources
from pathlib import Path

from chargetrace.traces.errors import ChargetraceError

from .cache import is_done, locked, rootfs_key, write_stamp
from .proc import run

__all__ = ["GUEST_DEBS", "GUEST_INIT", "VENV", "guest_pip_requirements", "prepare_rootfs", "refresh_rootfs",
           "source_root"]

#: Debian packages in the guest. xz-utils: BCC unpacks /sys/kernel/kheaders.tar.xz;
#: python3-venv: ensurepip for the venv holding chargetrace's PyPI dependencies.
GUEST_DEBS = ("python3", "python3-venv", "python3-bpfcc", "bpfcc-tools", "kmod", "xz-utils", "procps",
              "iproute2")

#: The guest's Python (bookworm's python3) and the wheel platforms its glibc 2.36 accepts.
_GUEST_PY = "3.11"
_GUEST_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")

#: The venv chargetrace is installed in, inside the guest.
VENV = "/opt/chargetrace"

#: The guest's PID 1 (``init=``).
GUEST_INIT = "/lab-init"


def guest_pip_requirements() -> list[str]:
    """chargetrace's runtime requirements, from its installed metadata (sorted, deduplicated)."""
    try:
        reqs = metadata.requires("chargetrace") or []
    except metadata.PackageNotFoundError as exc:
        raise ChargetraceError("lab: chargetrace is not installed (pip install -e .) so its dependencies are unknown") from exc
    base = [r.split(";")[0].strip() for r in reqs if "extra ==" not in r]
    return sorted(set(base))


def source_root() -> Path:
    """The chargetrace checkout to install in the guest: $CHARGETRACE_SOURCE,
    else the one chargetrace runs from (editable install), else the current
    directory (a regular install run from its checkout, as CI does)."""
    import os

    import chargetrace.cli

    candidates = [Path(os.environ["CHARGETRACE_SOURCE"])] if os.environ.get("CHARGETRACE_SOURCE") else []
    candidates += [Path(chargetrace.cli.__file__).resolve().parent, Path.cwd()]
    for root in candidates:
        try:
            text = (root / "pyproject.toml").read_text()
        except OSError:
            continue
        if 'name = "chargetrace"' in text:
            return root.resolve()
    raise ChargetraceError(
        "lab: needs a chargetrace source checkout to install in the guest: run from one, "
        "or set CHARGETRACE_SOURCE"
    )


def _chroot(rootfs: Path, *argv: str, log: Path, what: str) -> float:
    return run(["chroot", rootfs, *argv], log=log, what=what,
               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"})


def prepare_rootfs(cache_dir: Path, *, suite: str, mirror: str, log: Path) -> tuple[Path, bool, float]:
    """The cached rootfs for ``suite`` (built if missing): (path, cached, seconds)."""
    pip = guest_pip_requirements()
    d = cache_dir / "rootfs" / f"{suite}-{rootfs_key(suite, GUEST_DEBS, pip)}"
    with locked(d):
        if is_done(d):
            return d / "root", True, 0.0
        return _debootstrap(d, suite=suite, mirror=mirror, pip=pip, log=log)


def _debootstrap(d: Path, *, suite: str, mirror: str, pip: list[str], log: Path) -> tuple[Path, bool, float]:
    rootfs = d / "root"
    t0 = time.monotonic()
    # A half-made debootstrap cannot be resumed reliably: start over.
    shutil.rmtree(rootfs, ignore_errors=True)
    for stale in d.glob("*"):
        if stale.is_file():
            stale.unlink()
    run(["debootstrap", "--variant=minbase", f"--include={','.join(GUEST_DEBS)}", suite, rootfs, mirror],
        log=log, what="debootstrap")
    _chroot(rootfs, "python3", "-m", "venv", "--system-site-packages", VENV, log=log, what="guest venv")
    # Wheels are fetched by the host's pip (its index/proxy/CA configuration
    # applies), for the guest's interpreter (bookworm: CPython 3.11, glibc 2.36),
    # then installed offline in the chroot.
    house = rootfs / "tmp" / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--only-binary=:all:",
         "--implementation", "cp", "--python-version", _GUEST_PY, "--abi", f"cp{_GUEST_PY.replace('.', '')}",
         *[a for p in _GUEST_PLATFORMS for a in ("--platform", p)], "-d", house, *pip],
        log=log, what="pip download for the guest")
    _chroot(rootfs, f"{VENV}/bin/pip", "install", "--no-index", "--find-links", "/tmp/wheelhouse",
            "--disable-pip-version-check", "-q", *pip, log=log, what="pip install into the guest venv")
    shutil.rmtree(house, ignore_errors=True)
    _chroot(rootfs, f"{VENV}/bin/python", "-c", "import bcc, pyarrow, pandas, click, rich",
            log=log, what="guest import check")
    # Reduce noise/latency in the guest: no apt caches in a 9p root.
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    secs = time.monotonic() - t0
    write_stamp(d, {"suite": suite, "debs": list(GUEST_DEBS), "pip": pip, "seconds": round(secs, 1)})
    return rootfs, False, secs


def _build_wheel(work: Path, log: Path) -> Path:
    # Build from a clean copy: setuptools reuses an in-tree build/ and would ship
    # modules deleted since; the copy also keeps uncommitted edits (dev workflow).
    src = work / "src"
    shutil.copytree(source_root(), src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "*.parquet",
        "*.partial", "lab-work", ".venv", "venv"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
         "-w", work, src], log=log, what="build chargetrace wheel")
    wheels = sorted(work.glob("chargetrace-*.whl"))
    if not wheels:
        raise ChargetraceError(f"lab: pip wheel produced no chargetrace wheel; see {log}")
    return wheels[-1]


def refresh_rootfs(rootfs: Path, modroot: Path, release: str, *, log: Path) -> float:
    """Install this checkout's chargetrace, the kernel modules and the guest init; return seconds."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=rootfs / "tmp") as tmp:
        wheel = _build_wheel(Path(tmp), log)
        inside = "/" + str(wheel.relative_to(rootfs))
        _chroot(rootfs, f"{VENV}/bin/pip", "install", "--no-deps", "--force-reinstall", "--no-index",
                "--disable-pip-version-check", "-q", inside, log=log, what="install chargetrace in the guest")
    mods = rootfs / "lib" / "modules" / release
    shutil.rmtree(mods, ignore_errors=True)
    shutil.copytree(modroot / "lib" / "modules" / release, mods, symlinks=True)
    init = rootfs / GUEST_INIT.lstrip("/")
    init.write_bytes(resources.files("chargetrace.lab").joinpath("guest/lab-init").read_bytes())
    init.chmod(0o755)
    # The recorder is run as "chargetrace" from the guest's PATH.
    link = rootfs / "usr" / "local" / "bin" / "chargetrace"
    link.unlink(missing_ok=True)
    link.symlink_to(f"{VENV}/bin/chargetrace")
    subprocess.run(["sync"], check=False)
    return time.monotonic() - t0
