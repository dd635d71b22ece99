"""When a lab test may run: the one place that decides it for tests/lab/.

A plain `pytest` must never start a kernel build or a QEMU guest as a side
effect, so each lab test runs only when the marker expression names its marker
(`pytest -m lab`, `-m labbugs`, `-m labcorpus`), and only where the lab can
work: root on a Debian host (apt/dpkg, debootstrap, chroot), with gcc where the
test compiles a workload. Each skip says why, in one line.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require_lab"]


def require_lab(request: pytest.FixtureRequest, marker: str, command_note: str, *, gcc: bool = False) -> None:
    """Skip the calling fixture unless ``-m`` asks for ``marker`` and the host can run the lab."""
    expr = request.config.getoption("markexpr") or ""
    if marker not in expr or f"not {marker}" in expr:
        pytest.skip(f"{command_note}: run with 'pytest -m {marker} tests/lab'")
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot, unshare, mount)")
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs a Debian host (apt/dpkg)")
    if gcc and shutil.which("gcc") is None:
        pytest.skip("needs gcc (the test builds its workload)")
