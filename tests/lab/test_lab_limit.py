"""Real limit pressure in the lab: lab/workloads/limit_migrate.c under `chargetrace lab run --workload`,
and the kernel's own hmm-tests under `chargetrace lab run --memory-max`.

Device-private migration in a memcg whose memory.max is below the working set: a child's charges
fail and the memcg OOM killer kills it (R2 checks real failed charges), then every device page
migrates back to RAM over the limit (R8 checks it). hmm-tests in a memcg limited below its peak
(~6,700 pages in the clean 6.1 recording, ~2,100 for most of its tests): the memcg reclaims, its
largest tests are OOM-killed, the replay stays balanced and the trace says the limit and the
memcg's memory.events. Slow (two recorded lab runs): they run with the bug variants,
``pytest -m labbugs tests/lab``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab

pytestmark = [pytest.mark.lab, pytest.mark.labbugs]

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "workloads" / "limit_migrate.c"
#: memory.max for hmm-tests: 4,096 pages, above what most of its tests hold (~2,100-3,200 pages in
#: the clean 6.1 recording) and below its largest ones (up to 6,735 pages).
HMM_TESTS_MAX = 16 << 20


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


@pytest.fixture(scope="module")
def hmm_limit_run(request, tmp_path_factory):
    require_lab(request, "labbugs", "lab limit-pressure test (root, QEMU)")
    return run_lab(LabConfig(kernel="6.1", out_dir=tmp_path_factory.mktemp("hmmlimit"), memory_max=HMM_TESTS_MAX))


def test_hmm_tests_hit_the_limit_and_the_kernel_only_oom_killed(hmm_limit_run) -> None:
    r = hmm_limit_run
    # The limit was reached (memory.events "max") and the OOM killer acted; nothing else in dmesg.
    assert r.memory_events.get("max", 0) > 0 and r.memory_events.get("oom_kill", 0) >= 1, r.memory_events
    assert r.oom_reports >= 1 and r.dmesg == [], r.dmesg[:3]
    # Tests still ran on device-private memory; those that fail were killed by the limit.
    assert r.hmm.device_private["pass"] > 0, r.hmm.summary
    assert r.ok, r.problems


def test_hmm_tests_under_the_limit_replay_balanced_with_r2_and_r8_checked(hmm_limit_run) -> None:
    from chargetrace.traces import read_trace

    r = hmm_limit_run
    report = r.replay
    assert report is not None and r.summary is not None and r.summary.drops == 0, r.problems
    assert report["verdict"] == "balanced", report["violations"][:3]
    rows = {row["rule"]: row for row in report["rules"]}
    assert rows["R8"]["checked"] > 0 and rows["R8"]["violations"] == 0, rows["R8"]
    assert rows["R2"]["violations"] == 0, rows["R2"]
    prov = read_trace(r.trace).meta.provenance
    assert prov["memory_max"] == HMM_TESTS_MAX and prov["memory_events"] == r.memory_events
