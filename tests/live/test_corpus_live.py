"""The real-workload corpus (tests/corpus/cases.py), recorded on the running
kernel with ``chargetrace record -- CMD`` and replayed with ``replay --json``:
each case's verdict, the rules that must have checked events, the charges
legitimately still held and the command's outcome, as the table says.

A case whose replay is known to be wrong carries ``xfail`` (strict) with the
branch that must fix it; a case whose need the machine cannot meet (a swap
device) skips with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus.cases import CASES, Case
from corpus.harness import Corpus, Unavailable

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"))


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corpus_case(case: Case, corpus: Corpus, tmp_path: Path) -> None:
    try:
        outcome = corpus.run(case, tmp_path / f"{case.name}.parquet")
    except Unavailable as exc:
        pytest.skip(f"{case.name}: {exc}")
    if outcome.problems:
        pytest.fail("\n".join([f"{case.name} ({case.reason}):", *outcome.problems]), pytrace=False)
