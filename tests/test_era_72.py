"""The device-private THP era on real events: traces/hmm-tests-7.2.parquet, hmm-tests recorded on
Linux 7.2 in the lab (traces/README.md; Debian's 7.2 stands in for 6.19, the first kernel with
large device-private folios). Under its own profile (transfer, free at refcount 0, found by trial)
it balances with R15 checking 512-page folios: device-private THPs charged, transferred, split and
freed whole. Under a force-charge profile every transfer leaves a double charge behind. Its device
events name test_hmm's pgmap ops (schema 3)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from chargetrace.replay import ReplayConfig, replay
from chargetrace.replay.engine import device_folios
from chargetrace.traces import read_trace

TRACE = Path(__file__).resolve().parent.parent / "traces" / "hmm-tests-7.2.parquet"


@pytest.fixture(scope="module")
def trace():
    return read_trace(TRACE)


@pytest.fixture(scope="module")
def own(trace):
    return replay(trace)


def _rows(trace, kind: str) -> list[dict]:
    table = trace.table
    kinds = table.column("kind").to_pylist()
    cols = {name: table.column(name).to_pylist() for name in ("folio", "nr_pages")}
    return [{"folio": cols["folio"][i], "nr_pages": cols["nr_pages"][i]} for i, k in enumerate(kinds) if k == kind]


def test_recorded_on_72_with_the_folio_era_probes(trace) -> None:
    meta = trace.meta
    assert meta.kernel_release.startswith("7.2.") and not meta.synthetic and meta.anonymized
    assert (meta.era.migrate, meta.era.device_free_refcount) == ("transfer", 0)
    probes = {p["event"]: p["probe"] for p in meta.probes}
    assert probes["device_free"] == "kprobe:free_zone_device_folio"
    assert probes["split"] == "kprobe:folio_split_memcg_refs"
    assert meta.provenance["kernel_source"].startswith("linux-source-7.2 ")
    assert meta.provenance["hmm_tests"]["device_private"]["fail"] == 0


def test_device_private_thps_are_in_it(trace) -> None:
    frees = Counter(r["nr_pages"] for r in _rows(trace, "device_free"))
    assert frees[512] > 0  # free_zone_device_folio() of whole 512-page device folios
    splits = _rows(trace, "split")
    devices = device_folios(trace.table)
    assert any(r["folio"] in devices and r["nr_pages"] == 512 for r in splits)  # device folio splits


def test_balanced_under_its_own_profile_with_r15_on_large_folios(own) -> None:
    assert own.era == "6.7+" and own.era_source.startswith("metadata")
    assert own.verdict == "balanced", [f.message for f in own.violations[:5]]
    rules = own.coverage()["rules"]
    assert rules["R15"]["substance"] > 0 and rules["R15"]["pages"] >= 512 * rules["R15"]["substance"]
    assert rules["R7"]["pages"] > rules["R7"]["substance"]  # some frees are of large folios


def test_device_memory_is_attributed_to_test_hmm(own) -> None:
    drivers = {d.driver: d for d in own.drivers}
    assert set(drivers) == {"test_hmm (dmirror)"}
    d = drivers["test_hmm (dmirror)"]
    assert d.symbol == "dmirror_devmem_ops" and d.module == "test_hmm"
    assert d.freed > 0 and d.migrated_to_device > 0 and d.migrated_from_device > 0 and d.charged_at_end == 0


def test_a_force_charge_profile_disagrees(trace) -> None:
    report = replay(trace, ReplayConfig(era="5.18-6.6"))
    rules = {f.rule for f in report.violations}
    assert report.verdict == "violations" and "R4" in rules
