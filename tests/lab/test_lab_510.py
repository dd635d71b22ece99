"""The <= 5.17 accounting era on a real kernel: Debian's linux-source-5.10 in the lab (slow: kernel
build or cache, QEMU boot, a recorded hmm-tests).

Run with ``pytest -m labera tests/lab`` as root on a Debian host (not part of ``-m lab``: a cold 5.10
build takes 40-70 min on the loaded 2-core host, a warm recorded run 10-20 min). What it asserts,
and why, is in docs/lab.md#linux-510 and docs/probes.md#the-page-era-510: 5.10's page-based memcg API
and the device-page free at refcount 1 are found by trial, and the replay's 4.14-5.17 profile (R7)
checks real frees.
"""

from __future__ import annotations

import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab
from chargetrace.lab.trace import REQUIRED_KINDS

pytestmark = [pytest.mark.lab, pytest.mark.labera]

#: The probe each page-era event must get on 5.10 (tracer/catalogue.py, found by trial).
PAGE_ERA_PROBES = {
    "charge": "kretprobe:mem_cgroup_charge",
    "uncharge": "kprobe:mem_cgroup_uncharge",
    "uncharge_batch": "kprobe:mem_cgroup_uncharge_list",
    "transfer": "kretprobe:mem_cgroup_migrate",
    "device_free": "kprobe:free_devmap_managed_page",
    "migrate_setup": "kretprobe:migrate_vma_setup",
    "migrate_pages": "kretprobe:migrate_vma_pages",
    "migrate_finalize": "kprobe:migrate_vma_finalize",
    "device_fault": "kretprobe:dmirror_devmem_fault",
}


@pytest.fixture(scope="module")
def lab510(request, tmp_path_factory):
    require_lab(request, "labera", "5.10 era lab test (root, QEMU, a 5.10 kernel build)")
    cfg = LabConfig(kernel="5.10", out_dir=tmp_path_factory.mktemp("lab510"), record=True, timeout_s=3000)
    return run_lab(cfg)


def test_hmm_tests_pass_on_510(lab510) -> None:
    assert lab510.release.startswith("5.10.")
    assert lab510.insmod_rc == 0
    assert lab510.hmm_rc == 0 and lab510.hmm.summary == "PASSED", lab510.problems
    # 5.10's harness has no fixture variants: every test runs on device-private memory.
    assert not lab510.hmm.variants and lab510.hmm.planned == len(lab510.hmm.tests)
    dp = lab510.hmm.device_private
    assert dp["fail"] == 0 and dp["pass"] >= 20, dp
    assert lab510.dmesg == []


def test_page_era_probes_found_by_trial(lab510) -> None:
    from chargetrace.traces import read_trace

    meta = read_trace(lab510.trace).meta
    chosen = {p["event"]: p["probe"] for p in meta.probes}
    for event, probe in PAGE_ERA_PROBES.items():
        assert chosen.get(event) == probe, (event, chosen.get(event))
    # Feature-detected, not read from the version: force-charging migration, frees at refcount 1.
    assert (meta.era.migrate, meta.era.device_free_refcount) == ("force", 1)
    assert "free_devmap_managed_page" in meta.era.detected_by
    # `chargetrace probes` in the guest says why each page-era probe was chosen.
    text = (lab510.run_dir / "out" / "probes.txt").read_text()
    assert "kretprobe:mem_cgroup_charge" in text and "no symbol __mem_cgroup_charge" in text
    assert "refcount 1" in text


def test_trace_has_every_device_private_kind_and_no_drops(lab510) -> None:
    s = lab510.summary
    assert s is not None, lab510.problems
    assert s.drops == 0
    for kind in REQUIRED_KINDS:
        assert s.kinds.get(kind, 0) > 0, kind
    assert lab510.ok, lab510.problems


def test_replay_is_balanced_and_r7_checks_real_frees(lab510) -> None:
    from chargetrace.replay import ReplayConfig, replay
    from chargetrace.traces import read_trace

    trace = read_trace(lab510.trace)
    assert trace.meta.scope.fresh and trace.meta.scope.exited
    assert trace.meta.scope.settle and trace.meta.scope.settle["done"], trace.meta.scope.settle
    report = replay(trace)
    assert report.era == "4.14-5.17"
    assert report.verdict == "balanced", [f.message for f in report.violations[:5]]
    checked = {r.rule: r.checked for r in report.rules}
    for rule in ("R1", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10"):
        assert checked[rule] > 0, (rule, checked)
    # Every device-private free with a memcg read its refcount: 1, as the era says.
    frees = [v for k, v in zip(trace.table.column("kind").to_pylist(), trace.table.column("value").to_pylist())
             if k == "device_free"]
    assert frees and set(frees) == {1}
    # The 5.18+ profile (free at refcount 0) disagrees with every one of them.
    wrong = replay(trace, ReplayConfig(era="5.18-6.6"))
    assert sum(1 for f in wrong.violations if f.rule == "R7") == len(frees)
