"""Live recorder tests: real BPF on the running kernel, as root, serially.

They skip (with the reason printed by ``-ra``) only when the machine truly
cannot run them: not root, no BCC bindings, or no C compiler for the
workload. Everything else that fails is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from chargetrace.traces import ChargetraceError

HERE = Path(__file__).parent


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root (BPF, tracefs, memory cgroups)"
    try:
        from chargetrace.tracer.bccload import load_bcc

        load_bcc()
    except ChargetraceError as exc:
        return f"no usable BCC: {exc}"
    if not shutil.which("gcc"):
        return "no gcc to build tests/live/workload.c (apt-get install gcc libc6-dev)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "live" in item.keywords and reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/live/workload.c built statically (few, fixed startup charges)."""
    out = tmp_path_factory.mktemp("bin") / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(HERE / "workload.c")], check=True)
    return out


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    trace: Path

    @property
    def workload(self) -> dict[str, int]:
        """pid, memcg, start, end as reported by the workload."""
        m = dict(re.findall(r"(\w+)=(0x[0-9a-f]+|\d+)", self.stdout))
        return {k: int(v, 0) for k, v in m.items()}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "chargetrace.cli", *args]


def record(tmp: Path, *args: str, name: str = "t.parquet", timeout: float = 300) -> Run:
    trace = tmp / name
    proc = subprocess.run(cli("record", "--quiet", "-o", str(trace), *args), capture_output=True, text=True,
                          timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr, trace)
