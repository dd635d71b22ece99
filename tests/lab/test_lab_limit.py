"""Real limit pressure in the lab: lab/workloads/limit_migrate.c under `chargetrace lab run --workload`.

Device-private migration in a memcg whose memory.max is below the working set: a child's charges
fail and the memcg OOM killer kills it (R2 checks real failed charges), then every device page
migrates back to RAM over the limit (R8 checks it). Slow (a recorded lab run): it runs with the
bug variants, ``pytest -m labbugs tests/lab``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab

pytestmark = [pytest.mark.lab, pytest.mark.labbugs]

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "workloads" / "limit_migrate.c"


@pytest.fixture(scope="module")
def limit_run(request, tmp_path_factory):
    require_lab(request, "labbugs", "lab limit-pressure test (root, QEMU)", gcc=True)
    d = tmp_path_factory.mktemp("limit")
    exe = d / "limit_migrate"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(SOURCE)], check=True)
    cfg = LabConfig(kernel="6.1", out_dir=d / "run", workload=f"./limit_migrate 2048 32768 {64 << 20}",
                    workload_files=(exe,))
    return run_lab(cfg)


def test_every_device_page_came_back_over_the_limit(limit_run) -> None:
    assert limit_run.workload_rc == 0, limit_run.workload_output
    assert any("read back 2048 pages from device memory, 0 wrong" in line for line in limit_run.workload_output), \
        limit_run.workload_output
    # The memcg OOM killer ran (the hog child) and its reports are not counted as WARN/BUG.
    assert limit_run.oom_reports >= 1 and limit_run.dmesg == []


def test_r2_and_r8_checked_real_events_under_the_limit(limit_run) -> None:
    report = limit_run.replay
    assert report is not None, limit_run.problems
    rows = {r["rule"]: r for r in report["rules"]}
    assert rows["R2"]["checked"] > 0 and rows["R2"]["violations"] == 0, rows["R2"]
    assert rows["R8"]["checked"] > 0 and rows["R8"]["violations"] == 0, rows["R8"]
    assert limit_run.summary is not None and limit_run.summary.drops == 0
