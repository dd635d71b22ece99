"""The device-private THP era on a real kernel: the lab on Debian's linux-source-7.2.

7.2 stands in for 6.19 (which has left Debian's archive): it has large device-private folios
(d245f9b4ab80 "mm/zone_device: support large zone device private folios", 6.19) and hmm-tests'
THP tests. Run with ``pytest -m labera tests/lab`` as root on a Debian host (marked ``lab`` and
``labera``; ``-m lab`` skips it). Cold: a kernel build (tens of minutes on a loaded 2-core host);
warm: one boot and a recorded hmm-tests run under TCG. What it asserts is measured in
docs/lab.md#the-device-private-thp-era-72.
"""

from __future__ import annotations

import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab

pytestmark = [pytest.mark.lab, pytest.mark.labera]

#: hmm-tests of the device-private THP era (all 6.19+) that must pass on the device_private fixture.
THP_TESTS = ("migrate_anon_huge_empty", "migrate_anon_huge_zero", "migrate_anon_huge_free",
             "migrate_anon_huge_fault", "migrate_partial_unmap_fault", "migrate_remap_fault",
             "migrate_anon_huge_err", "migrate_anon_huge_zero_err")


@pytest.fixture(scope="module")
def lab72(request, tmp_path_factory):
    require_lab(request, "labera", "lab era test (root, QEMU, 7.2 kernel build)")
    return run_lab(LabConfig(kernel="7.2", out_dir=tmp_path_factory.mktemp("lab72"), timeout_s=3000))


def test_thp_era_hmm_tests_pass(lab72) -> None:
    assert lab72.insmod_rc == 0 and lab72.release.startswith("7.2.")
    assert lab72.hmm.device_private["fail"] == 0, lab72.problems
    for name in THP_TESTS:
        assert lab72.hmm.tests.get(f"hmm.hmm_device_private.{name}") == "pass", name
    assert lab72.dmesg == []


def test_thp_era_trace_replays_balanced_with_r15_on_device_thp(lab72) -> None:
    from chargetrace.replay import ReplayConfig, replay
    from chargetrace.traces import read_trace

    assert lab72.ok, lab72.problems
    trace = read_trace(lab72.trace)
    assert trace.meta.era.migrate == "transfer" and trace.meta.era.device_free_refcount == 0
    table = trace.table.to_pydict()
    # 512-page device-private folios: freed whole (nr from the order) and split
    big_frees = [n for k, n in zip(table["kind"], table["nr_pages"]) if k == "device_free" and n == 512]
    assert big_frees
    assert "split" in table["kind"]
    report = replay(trace)
    assert report.verdict == "balanced", [f.message for f in report.violations[:5]]
    r15 = next(r for r in report.rules if r.rule == "R15")
    assert r15.substance > 0
    # the ≤ 6.6 profile (force-charge) must disagree with a transfer-era kernel
    wrong = replay(trace, ReplayConfig(era="5.18-6.6"))
    assert "R4" in {f.rule for f in wrong.violations}
