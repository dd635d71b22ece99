"""Bug variants of the lab kernels (lab/bugs.py): the recorded hmm-tests of each replays to a violation
of the variant's rule, naming folio, memcg and seq.

Slow (an incremental kernel build of a few minutes plus a recorded lab run per variant) and kept out
of the default lab command: run with ``pytest -m labbugs tests/lab`` (root, Debian host, the clean
kernel of the variant's series built or cached). CI runs one variant (see .ci/run); the clean
kernel's own balance is asserted by tests/lab/test_lab_61.py and tests/test_shipped_traces.py.
"""

from __future__ import annotations


import pytest

from lab_gate import require_lab

from chargetrace.lab import LabConfig, run_lab
from chargetrace.lab.bugs import VARIANTS

pytestmark = [pytest.mark.lab, pytest.mark.labbugs]



@pytest.fixture(scope="module")
def runs(request):
    require_lab(request, "labbugs", "bug-variant lab test (root, QEMU, kernel builds)")
    return {}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_replays_to_its_rule(runs, name: str, tmp_path_factory) -> None:
    v = VARIANTS[name]
    res = run_lab(LabConfig(kernel=v.series, bug=name, out_dir=tmp_path_factory.mktemp(name), record=True))
    assert res.summary is not None and res.summary.drops == 0, res.problems
    report = res.replay
    assert report is not None
    assert report["verdict"] == "violations", report["verdict"]
    hits = [f for f in report["violations"] if f["rule"] == v.rule]
    assert hits, ({f["rule"] for f in report["violations"]}, res.problems)
    first = hits[0]
    # The finding names the moment, the folio and the memcg (the scope's memcg the recorder created).
    assert first["seq"] > 0 and first["folio"] != 0 and first["memcg"] != 0, first
    assert res.expected_rule_found is True and res.ok, res.problems
    # The provenance says which variant and what the kernel itself said.
    from chargetrace.traces import read_trace

    prov = read_trace(res.trace).meta.provenance
    assert prov["bug_variant"]["name"] == name and prov["bug_variant"]["expected_rule"] == v.rule
