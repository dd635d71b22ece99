"""The <= 5.17 era profile on real events: traces/hmm-tests-5.10.parquet, hmm-tests recorded on Linux
5.10 in the lab (traces/README.md). Under its own profile (detected by the recorder: force-charging
migration, device pages freed at refcount 1) it balances with R7 checking every device-private
free; under a 5.18+ profile every free is at the wrong refcount, and under 6.7+ every migration is
a wrong transfer."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetrace.replay import ReplayConfig, replay
from chargetrace.traces import read_trace

TRACE = Path(__file__).resolve().parent.parent / "traces" / "hmm-tests-5.10.parquet"


@pytest.fixture(scope="module")
def trace():
    return read_trace(TRACE)


def _frees(trace) -> list[int]:
    kinds = trace.table.column("kind").to_pylist()
    values = trace.table.column("value").to_pylist()
    return [v for k, v in zip(kinds, values) if k == "device_free"]


def test_recorded_on_510_with_the_page_era_probes(trace) -> None:
    meta = trace.meta
    assert meta.kernel_release.startswith("5.10.") and not meta.synthetic and meta.anonymized
    assert (meta.era.migrate, meta.era.device_free_refcount) == ("force", 1)
    probes = {p["event"]: p["probe"] for p in meta.probes}
    assert probes["charge"] == "kretprobe:mem_cgroup_charge"
    assert probes["uncharge_batch"] == "kprobe:mem_cgroup_uncharge_list"
    assert probes["device_free"] == "kprobe:free_devmap_managed_page"
    assert meta.provenance["kernel_source"].startswith("linux-source-5.10 ")


def test_balanced_under_its_own_profile_with_r7_on_every_free(trace) -> None:
    report = replay(trace)
    assert report.era == "4.14-5.17" and report.era_source.startswith("metadata")
    assert report.verdict == "balanced", [f.message for f in report.violations[:5]]
    frees = _frees(trace)
    assert frees and set(frees) == {1}  # the refcount read at free_devmap_managed_page()'s entry
    r7 = report.coverage()["rules"]["R7"]
    assert r7["substance"] > 0 and r7["pages"] == len(frees)  # order-0 device pages


def test_a_518_profile_disagrees_at_every_free(trace) -> None:
    report = replay(trace, ReplayConfig(era="5.18-6.6"))
    assert report.verdict == "violations"
    r7 = [f for f in report.violations if f.rule == "R7"]
    assert len(r7) == len(_frees(trace))
    assert "freed at refcount 1; the 5.18-6.6 era frees at 0" in r7[0].message
    assert {f.rule for f in report.violations} == {"R7"}  # the migration semantics are the same


def test_a_67_profile_disagrees_at_the_migrations(trace) -> None:
    report = replay(trace, ReplayConfig(era="6.7+"))
    rules = {f.rule for f in report.violations}
    assert report.verdict == "violations" and {"R4", "R7"} <= rules
