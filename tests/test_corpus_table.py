"""The corpus's case table is complete and its workloads exist (no root needed)."""

from __future__ import annotations

import re

from corpus.cases import CASES, FOLIO_RULES, RULE_NEEDS
from corpus.harness import EXIT_CODES, HOLDERS, WORKLOADS

#: issue 7, item 5: what the corpus must cover
TOPICS = (
    "anon order 0", "anon THP (madvise)", "page cache kept (disk)", "page cache deleted (disk)",
    "tmpfs/shmem kept", "tmpfs/shmem deleted", "memfd", "fork + COW",
    "child memcgs created and removed inside the scope",
    "a task that moves itself into a cgroup created outside the scope",
    "a task that outlives the main command", "swap out and in", "memory limit with reclaim",
    "memory limit with an OOM kill", "many files (kmem)", "multi-threaded allocation",
)


def test_at_least_twelve_cases_cover_every_topic() -> None:
    assert len(CASES) >= 12
    assert len({c.name for c in CASES}) == len(CASES)
    covered = {t for c in CASES for t in c.covers}
    assert set(TOPICS) <= covered, set(TOPICS) - covered


def test_every_case_is_complete() -> None:
    modes = set(re.findall(r'!strcmp\(m, "(\w+)"\)', (WORKLOADS / "mem.c").read_text()))
    for c in CASES:
        assert c.verdict in EXIT_CODES, c.name
        assert (c.rules or c.verdict == "unchecked") and c.reason and c.covers, c.name
        assert set(c.rules) <= set(RULE_NEEDS), c.name
        assert set(FOLIO_RULES) >= set(c.folio_rules)
        assert all(set(h.holder.split("+")) <= set(HOLDERS) and h.min_pages >= 0 and h.why for h in c.held), c.name
        assert set(c.needs) <= {"swap", "outside"}, c.name
        assert c.only and set(c.only) <= {1, 2}, c.name
        assert c.scope_memcgs_v2 is None or (2 in c.only and c.scope_memcgs_v2 >= c.scope_memcgs), c.name
        for arg in c.argv:
            if arg.startswith("{wl}/"):
                assert (WORKLOADS / arg[len("{wl}/"):]).is_file(), (c.name, arg)
        if c.argv[0] == "{mem}":
            assert c.argv[1] in modes, (c.name, c.argv[1])


def test_lab_pack_ships_the_guest_driver_and_every_shell_workload(tmp_path) -> None:
    import json
    import tarfile

    from corpus import lab

    with tarfile.open(lab._pack(tmp_path)) as t:
        members = {m.name: m for m in t.getmembers()}
    for name in ("corpus/__init__.py", "corpus/cases.py", "corpus/harness.py", "corpus/guest.py"):
        assert name in members, name
    for sh in WORKLOADS.glob("*.sh"):
        m = members[f"corpus/workloads/{sh.name}"]
        assert m.mode & 0o100, sh.name  # executable in the guest
    # every case the guest runs is a v2 case, and every v2 case is run
    assert set(lab.GUEST_CASES) == {c.name for c in CASES if 2 in c.only}
    # judging a run the guest cut short: what it never reached and what it could not run are named
    out = tmp_path / "run" / "out" / "corpus"
    out.mkdir(parents=True)
    (out / "swap-out-in.json").write_text(json.dumps({"case": "swap-out-in", "unavailable": "no swap"}))
    res = lab.judge_run(tmp_path / "run", ["swap-out-in", "anon-order0"])
    assert res.not_run == {"swap-out-in": "no swap"}
    assert res.broken == {"anon-order0": "the guest did not get to it"}
    assert res.outcomes == {}
