"""One bug variant in the default lab run: `device-free-no-uncharge` on 6.1 with a short workload.

CI cannot afford every variant (each is an incremental build of a few minutes plus a recorded
hmm-tests of ~9 min under TCG, on top of the cold 6.1 lab). This one is cheap: its edit touches
mm/memremap.c only (an overlay build of ~2-3 min over the cached clean 6.1 tree), and instead of
hmm-tests it records lab/workloads/device_free.c, which migrates 256 pages to device memory,
reads half back and unmaps the rest (two seconds of work; the recorder's BPF compile dominates).
The same workload on the clean kernel replays balanced; on the variant the device-page frees at
odd pfns keep their charge, and the replay names R6 with the folio, the memcg and the seq.

Runs with ``pytest -m lab tests/lab`` (root, Debian host, gcc); the full variant matrix is
``pytest -m labbugs tests/lab``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab
from chargetrace.lab.bugs import VARIANTS

pytestmark = pytest.mark.lab

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "workloads" / "device_free.c"
NPAGES = 256
VARIANT = "device-free-no-uncharge"


@pytest.fixture(scope="module")
def exe(request, tmp_path_factory) -> Path:
    require_lab(request, "lab", "lab test (root, QEMU, kernel build)", gcc=True)
    out = tmp_path_factory.mktemp("device_free") / "device_free"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(SOURCE)], check=True)
    return out


def _run(exe: Path, out_dir: Path, bug: str | None):
    return run_lab(LabConfig(kernel="6.1", bug=bug, out_dir=out_dir, workload=f"./device_free {NPAGES}",
                             workload_files=(exe,)))


@pytest.fixture(scope="module")
def clean(exe, tmp_path_factory):
    return _run(exe, tmp_path_factory.mktemp("quick-clean"), None)


@pytest.fixture(scope="module")
def buggy(exe, tmp_path_factory):
    return _run(exe, tmp_path_factory.mktemp("quick-bug"), VARIANT)


def _workload_did_its_steps(res) -> None:
    assert res.workload_rc == 0, res.workload_output
    assert any(f"migrated to device: {NPAGES} of {NPAGES} pages; read back {NPAGES // 2} (0 wrong)" in line
               for line in res.workload_output), res.workload_output
    assert res.summary is not None and res.summary.drops == 0, res.problems
    for kind in ("charge", "uncharge", "transfer", "device_free", "device_fault"):
        assert res.summary.kinds.get(kind, 0) > 0, (kind, res.summary.kinds)


def test_clean_kernel_runs_the_workload_balanced(clean) -> None:
    _workload_did_its_steps(clean)
    assert clean.dmesg == [] and clean.ok, clean.problems
    assert clean.replay is not None and clean.replay["verdict"] == "balanced", clean.replay["violations"][:3]
    rows = {r["rule"]: r for r in clean.replay["rules"]}
    assert rows["R6"]["checked"] > 0 and rows["R8"]["checked"] > 0, (rows["R6"], rows["R8"])


def test_variant_kernel_runs_the_workload_and_r6_names_folio_memcg_seq(buggy) -> None:
    from chargetrace.traces import read_trace

    _workload_did_its_steps(buggy)
    report = buggy.replay
    assert report is not None and report["verdict"] == "violations", buggy.problems
    hits = [f for f in report["violations"] if f["rule"] == VARIANTS[VARIANT].rule]
    assert hits, {f["rule"] for f in report["violations"]}
    trace = read_trace(buggy.trace)
    first = hits[0]
    assert first["seq"] > 0 and first["folio"] != 0 and first["memcg"] == trace.meta.scope.memcg, first
    # Odd pfns only: roughly half of the NPAGES device frees keep their charge, never all of them.
    assert 0 < len(hits) < NPAGES, len(hits)
    assert buggy.expected_rule_found is True and buggy.ok, buggy.problems
    assert trace.meta.provenance["bug_variant"]["name"] == VARIANT
