"""The corpus's v2 half (tests/corpus/cases.py) in the lab guest: Debian's 6.1 under QEMU with
cgroup v2 (memory.current, memory.max, memory.reclaim), kprobes on the folio charge paths and a
swap device. One boot records every case that runs on v2 (tests/corpus/lab.py); each case is then
a test judged on the host by the harness against the same table as on the host's v1.

Slow (one boot, then a BCC compile and the workload per case under TCG: ~30-50 min on the
2-core host) and kept out of CI's lab command: run with ``pytest -m labcorpus tests/lab``
(root, Debian host, the 6.1 lab built or cached, gcc). A case known wrong on v2 carries a strict
xfail naming the cause (:data:`V2_XFAIL`). ``CHARGETRACE_LABCORPUS_RUN=DIR`` judges the traces
of a finished run (``python -m tests.corpus.lab --out DIR``: ``DIR/run``) instead of booting again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab_gate import require_lab

from corpus.cases import CASES, Case
from corpus.lab import GUEST_CASES, judge_run, run_in_lab

pytestmark = [pytest.mark.lab, pytest.mark.labcorpus]

#: case -> why its replay on the 6.1 guest is known wrong (strict xfail); the cause found in the events
V2_XFAIL: dict[str, str] = {}


@pytest.fixture(scope="module")
def lab_corpus(request, tmp_path_factory):
    require_lab(request, "labcorpus", "lab corpus test (root, QEMU, ~30-50 min)", gcc=True)
    done = os.environ.get("CHARGETRACE_LABCORPUS_RUN")
    if done:
        print(f"judging the finished lab run in {done} (CHARGETRACE_LABCORPUS_RUN), no boot")
        return judge_run(Path(done) / "run", GUEST_CASES)
    res = run_in_lab(GUEST_CASES, out_dir=tmp_path_factory.mktemp("labcorpus"))
    assert not res.lab_problems, res.lab_problems
    return res


def _param(c: Case):
    why = V2_XFAIL.get(c.name) or c.xfail
    return pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=why)] if why else [])


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.name in GUEST_CASES])
def test_corpus_case_on_v2(case: Case, lab_corpus) -> None:
    if case.name in lab_corpus.broken:
        pytest.fail(f"{case.name} was not recorded in the guest: {lab_corpus.broken[case.name]}", pytrace=False)
    if case.name in lab_corpus.not_run:
        # the guest provides every need (ext4, tmpfs, swap, an outside memcg): a skip here is a lab fault
        pytest.fail(f"{case.name} could not run in the guest: {lab_corpus.not_run[case.name]}", pytrace=False)
    o = lab_corpus.outcomes[case.name]
    assert o.version == 2, "the lab guest's memory controller must be on cgroup v2"
    if o.problems:
        pytest.fail("\n".join([f"{case.name} on v2 ({case.reason}):", *o.problems]), pytrace=False)
