"""Honest verdicts: units, held charges, scope hierarchy, tasks left, coverage, unchecked."""

from __future__ import annotations

import inspect
import json

from conftest import MEMCG, PID, rows_of, rules_of
from test_rules import charge, device_free, stat, uncharge, window

from chargetrace.replay.automaton import Rule
from chargetrace.replay.report import JSON_VERSION
from chargetrace.replay.units import COUNTERS, EVENTS, PAGES, ROUNDED_PAGES
from chargetrace.traces import Era, Scope, TraceMeta

CHILD = MEMCG + 1
F, G = 0x1000, 0x2000
PAGE = 4096

COUNTER_PROBE = {"event": "memcg_events", "kind": "memcg_stat", "probe": "tp:memcg:count_memcg_events",
                 "how": "tracepoint"}
SPLIT_PROBE = {"event": "split", "kind": "split", "probe": "kprobe:split_page_memcg", "how": "kprobe"}
CHARGE_PROBES = [{"event": e, "kind": k, "probe": f"kprobe:{e}", "how": "kprobe"}
                 for e, k in (("charge", "charge"), ("uncharge", "uncharge"), ("uncharge_batch", "uncharge"),
                              ("transfer", "transfer"), ("device_free", "device_free"), ("split", "split"))]


def meta(*, fresh=True, exited=True, settled=True, probes=None, kind="command", **scope) -> TraceMeta:
    return TraceMeta(
        recorder="tests", synthetic=True, era=Era("transfer", 0, "tests"), ncpus=2, probes=probes or [],
        scope=Scope(kind=kind, memcg=MEMCG, fresh=fresh, exited=exited, settled="test" if settled else "",
                    **scope),
    )


def usage(pages, memcg=MEMCG, item="memory.current"):
    return ("usage", {"memcg": memcg, "item": item, "value": pages * PAGE, "pid": 0, "tid": 0})


def memstat(memcg=MEMCG, **keys):
    return [("memstat", {"memcg": memcg, "item": k.replace("__", "."), "value": v * PAGE, "pid": 0, "tid": 0})
            for k, v in keys.items()]


def exit_row():
    return ("exit", {"value": 1})


# -- the units table -------------------------------------------------------------------

def test_units_table_says_events_for_pgpg_and_pages_for_state():
    assert COUNTERS["PGPGIN"].unit == COUNTERS["PGPGOUT"].unit == EVENTS
    for item in ("NR_ANON_MAPPED", "NR_FILE_PAGES", "NR_SHMEM", "MEMCG_KMEM", "MEMCG_SOCK", "MEMCG_SWAP"):
        assert COUNTERS[item].unit == PAGES, item
    assert COUNTERS["NR_SLAB_UNRECLAIMABLE_B"].unit == ROUNDED_PAGES
    assert all(c.source and c.tracepoint.startswith("memcg:") for c in COUNTERS.values())


def test_thp_charge_is_one_pgpgin_event_and_its_split_no_false_alarm(replay_rows):
    head = 0x200000
    big = ("charge", {"folio": head, "memcg": MEMCG, "nr_pages": 512, "ret": 0})
    split = ("split", {"folio": head, "memcg": MEMCG, "nr_pages": 512, "value": 1})
    pieces = [uncharge(head + 64 * i) for i in range(512)]
    rows = rows_of(big, stat("PGPGIN", 1), stat("NR_ANON_MAPPED", 512), split, stat("NR_ANON_MAPPED", -512),
                   *pieces, stat("PGPGOUT", 512), exit_row())
    report = replay_rows(rows, meta(probes=CHARGE_PROBES + [COUNTER_PROBE]))
    assert report.verdict == "balanced", [f.message for f in report.violations]
    row = report.memcgs[0]
    assert (row.pgpgin, row.pgpgout, row.split_extra, row.live) == (1, 512, 511, 0)
    cov = report.coverage()["rules"]
    assert cov["R3.pgpg"]["substance"] == 2 and cov["R13.anon"]["pages"] == 1024


def test_pgpg_counts_folios_not_pages(replay_rows):
    # 2 THPs charged (2 events, 1024 pages) and uncharged whole: events balance, pages never enter
    rows = rows_of(stat("PGPGIN", 1), stat("PGPGIN", 1), stat("PGPGOUT", 2), exit_row())
    report = replay_rows(rows, meta(probes=[COUNTER_PROBE, SPLIT_PROBE]))
    assert report.verdict == "balanced"
    # a PGPGOUT surplus with a split probe attached and no split row is a finding
    rows = rows_of(stat("PGPGIN", 1), stat("PGPGOUT", 512), exit_row())
    assert rules_of(replay_rows(rows, meta(probes=[COUNTER_PROBE, SPLIT_PROBE]))) == ["R3.pgpg"]
    # without a split probe (memcg tracepoints only, as on 6.18 with lockdown) it is noted, not judged
    report = replay_rows(rows, meta(probes=[COUNTER_PROBE]))
    assert report.verdict == "balanced" and any("511 event(s)" in n for n in report.notes)
    # a PGPGIN surplus is folios never uncharged, split probe or not
    rows = rows_of(stat("PGPGIN", 3), stat("PGPGOUT", 2), exit_row())
    assert rules_of(replay_rows(rows, meta(probes=[COUNTER_PROBE]))) == ["R3.pgpg"]


def test_usage_from_counters_counts_page_cache_and_kmem_in_pages(replay_rows):
    # counters only (no charge probe): kernel usage = anon + file + kmem (+ stock)
    rows = rows_of(usage(0), stat("PGPGIN", 1), stat("NR_FILE_PAGES", 512), stat("MEMCG_KMEM", 30),
                   stat("NR_SLAB_UNRECLAIMABLE_B", 1), exit_row(), usage(512 + 30 + 10))
    report = replay_rows(rows, meta(probes=[COUNTER_PROBE]))
    row = report.memcgs[0]
    assert (row.kernel_pages, row.model_pages, row.reconcile) == (552, 542, "ok"), report.notes
    assert report.held == []  # no charge rows: nothing outstanding to attribute
    rows = rows_of(usage(0), stat("NR_FILE_PAGES", 512), usage(5000))
    assert rules_of(replay_rows(rows, meta(probes=[COUNTER_PROBE]))) == ["R3.usage"]


# -- charges legitimately held ---------------------------------------------------------

def test_page_cache_kept_after_exit_is_held_not_a_leak(replay_rows):
    big = ("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 16, "ret": 0})
    rows = rows_of(big, exit_row(), usage(16 + 3), *memstat(anon=0, file=16, shmem=0, kernel=3, sock=0))
    report = replay_rows(rows, meta(probes=CHARGE_PROBES))
    assert report.verdict == "balanced", [f.message for f in report.violations]
    (held,) = report.held
    assert held.verdict == "held" and held.file == 16 and held.kmem == 3
    assert "still charged, held by 16 page(s) of page cache, 3 page(s) of kernel memory" in held.text
    assert report.memcgs[0].reconcile == "ok"
    # the same charge with the memcg saying it holds no page cache is a leak
    leak = rows_of(big, exit_row(), usage(16), *memstat(anon=16, file=0, shmem=0, kernel=0, sock=0))
    report = replay_rows(leak, meta(probes=CHARGE_PROBES))
    assert rules_of(report) == ["R10"] and report.held[0].verdict == "leak"


def test_shmem_and_v1_keys(replay_rows):
    rows = rows_of(charge(F), exit_row(), usage(40, item="memory.usage_in_bytes"),
                   *memstat(rss=0, cache=1, shmem=1, kmem__usage=30))
    report = replay_rows(rows, meta(probes=CHARGE_PROBES))
    assert report.verdict == "balanced"
    assert report.held[0].shmem == 1 and report.held[0].file == 0 and report.held[0].kmem == 30


# -- scope: hierarchy, tasks left, what the recording could not see ------------------------

def hierarchy(child_created=True):
    return [{"memcg": MEMCG, "parent": 1, "path": "/scope", "created_in_scope": False},
            {"memcg": CHILD, "parent": MEMCG, "path": "/scope/child", "created_in_scope": child_created}]


def test_child_memcg_rows_are_in_scope_and_usage_is_hierarchical(replay_rows):
    rows = rows_of(usage(0), charge(F, memcg=CHILD), charge(G), usage(2 + 20))
    report = replay_rows(rows, meta(probes=CHARGE_PROBES, exited=False, settled=False, memcgs=hierarchy()))
    by = {m.memcg: m for m in report.memcgs}
    assert by[MEMCG].model_pages == 2 and by[MEMCG].reconcile == "ok"
    assert report.scope["memcgs"] == [MEMCG, CHILD]
    # a leak in the child, which the recording saw created, is judged
    leak = rows_of(charge(F, memcg=CHILD), exit_row())
    report = replay_rows(leak, meta(probes=CHARGE_PROBES, memcgs=hierarchy()))
    assert rules_of(report) == ["R10"] and report.violations[0].memcg == CHILD
    # a child that existed before the trace is not: its charges may predate it
    report = replay_rows(leak, meta(probes=CHARGE_PROBES, memcgs=hierarchy(child_created=False)))
    assert rules_of(report) == []


def test_child_memcg_observed_from_creation_catches_missing_charge(replay_rows):
    rows = rows_of(uncharge(F, memcg=CHILD))
    report = replay_rows(rows, meta(probes=CHARGE_PROBES, exited=False, settled=False, memcgs=hierarchy()))
    assert rules_of(report) == ["R3"]


def test_task_left_running_means_no_leak_finding(replay_rows):
    rows = rows_of(charge(F), charge(G), uncharge(G))
    left = [{"pid": 4321, "comm": "prog"}]
    report = replay_rows(rows, meta(probes=CHARGE_PROBES, exited=True, tasks_left=left))
    assert rules_of(report) == [] and report.verdict == "balanced"
    assert any("4321 (prog)" in n and "leaks were not judged" in n for n in report.notes)
    assert rules_of(replay_rows(rows, meta(probes=CHARGE_PROBES, tasks_left=[]))) == ["R10"]


def test_tasks_moved_out_or_unseen_faults_make_it_inconclusive(replay_rows):
    rows = rows_of(charge(F), uncharge(F), exit_row())
    moved = replay_rows(rows, meta(probes=CHARGE_PROBES, moved_out=[{"pid": 9, "memcg": 5, "followed": False}]))
    assert moved.verdict == "inconclusive" and moved.exit_code == 3
    assert any("moved to memcgs outside the scope" in n for n in moved.notes)
    followed = replay_rows(rows, meta(probes=CHARGE_PROBES, moved_out=[{"pid": 9, "memcg": 5, "followed": True}]))
    assert followed.verdict == "balanced"
    share = replay_rows(rows, meta(probes=CHARGE_PROBES, unseen_fault_share=0.25))
    assert share.verdict == "inconclusive" and any("25.0%" in n for n in share.notes)


def test_unfinished_settle_does_not_judge_leaks(replay_rows):
    settle = {"method": "force_empty", "done": False, "unreclaimed_bytes": 8192, "why": "EBUSY"}
    report = replay_rows(rows_of(charge(F), exit_row()), meta(probes=CHARGE_PROBES, settle=settle))
    assert rules_of(report) == [] and any("draining after exit did not finish" in n for n in report.notes)


# -- coverage and unchecked --------------------------------------------------------------

def test_nothing_of_substance_is_unchecked_exit_4(replay_rows):
    rows = rows_of(("fault", {"addr": 0x1000}), ("fork", {"value": 9}), exit_row())
    report = replay_rows(rows, meta(probes=CHARGE_PROBES))
    assert report.verdict == "unchecked" and report.exit_code == 4 and not report.of_substance
    assert any(n.startswith("unchecked: no rule checked anything of substance") for n in report.notes)


def test_existing_cgroup_with_zero_counter_checks_is_unchecked_and_says_why(replay_rows):
    # --cgroup of an existing memcg: counters are changes, not totals; nothing judged
    rows = rows_of(usage(100), stat("PGPGIN", 1), stat("PGPGOUT", 1), stat("NR_ANON_MAPPED", 1), usage(100))
    report = replay_rows(rows, meta(fresh=False, exited=False, settled=False, kind="cgroup",
                                    probes=[COUNTER_PROBE]))
    cov = report.coverage()["rules"]
    assert cov["R3.pgpg"]["checked"] == 0 and cov["R13.anon"]["checked"] == 0
    assert any("charges made before the trace could not be judged" in n for n in report.notes)
    # usage changed by 0 while the counters say +1 page: within tolerance, and of substance
    assert report.verdict == "balanced" and cov["R3.usage"]["substance"] == 1
    empty = replay_rows(rows_of(stat("PGPGIN", 1)), meta(fresh=False, kind="cgroup", probes=[COUNTER_PROBE]))
    assert empty.verdict == "unchecked"


def test_json_carries_version_and_coverage(replay_rows):
    report = replay_rows(rows_of(charge(F), uncharge(F), exit_row()), meta(probes=CHARGE_PROBES))
    data = json.loads(json.dumps(report.to_json()))
    assert data["json_version"] == JSON_VERSION == 2 and data["verdict"] == "balanced"
    assert data["coverage"]["of_substance"] and data["coverage"]["rules"]["R1"]["substance"] == 1
    assert data["coverage"]["rules"]["R6"]["applies"] and "definition" in data["coverage"]


# -- one owner per piece of logic ----------------------------------------------------------

def test_device_free_then_split_without_uncharge_is_r6(replay_rows):
    D = 0xD000
    rows = rows_of(*window(charge(D)), device_free(D, tid=7),
                   ("split", {"folio": 0x9000, "memcg": MEMCG, "nr_pages": 4, "value": 1, "tid": 7}))
    report = replay_rows(rows, meta(probes=CHARGE_PROBES + [
        {"event": "migrate_pages", "kind": "migrate_pages", "probe": "kretprobe:migrate_vma_pages"}],
        exited=False, settled=False))
    assert rules_of(report) == ["R6"]
    assert "(split)" in report.violations[0].message


def test_rule_units_cannot_report_other_ids():
    assert "rule" not in inspect.signature(Rule.report).parameters


def test_supported_kinds_come_from_metadata_kinds_not_probe_names(replay_rows):
    rows = rows_of(charge(F), charge(F))
    # the uncharge kind is attached under another event name; charge's probe is missing
    probes = [{"event": "uncharge_batch", "kind": "uncharge", "probe": "kprobe:x", "how": "kprobe"},
              {"event": "charge", "kind": "charge", "probe": None, "how": None}]
    report = replay_rows(rows, meta(probes=probes, exited=False, settled=False))
    applies = {r.rule: r.applies for r in report.rules}
    assert applies["R3"] and not applies["R1"] and rules_of(report) == []
    # an entry whose event is named like a kind but whose kind differs does not count
    probes = [{"event": "charge", "kind": "other", "probe": "kprobe:y", "how": "kprobe"}]
    assert not {r.rule: r.applies for r in replay_rows(rows, meta(probes=probes)).rules}["R1"]


def test_pid_scope_note(replay_rows):
    report = replay_rows(rows_of(uncharge(F), charge(G), uncharge(G)), meta(fresh=False, kind="pid", exited=False,
                                                                         settled=False, probes=CHARGE_PROBES))
    assert report.verdict == "balanced"
    assert any("1 page(s) charged before the trace were uncharged" in n for n in report.notes)
    assert PID  # rows carry the scope's pid


def test_cli_unchecked_exits_4_and_prints_coverage(tmp_path):
    from click.testing import CliRunner
    from synthetic import write_rows

    from chargetrace.cli import main

    path = tmp_path / "quiet.parquet"
    write_rows(rows_of(("fault", {"addr": 0x1000}), exit_row()), path, meta(probes=CHARGE_PROBES))
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 4, result.output
    assert "verdict: unchecked" in result.output and "of substance" in result.output
    result = CliRunner().invoke(main, ["replay", "--json", str(path)])
    data = json.loads(result.output)
    assert result.exit_code == 4 and data["verdict"] == "unchecked" and not data["coverage"]["of_substance"]


def test_shmem_kept_after_exit_leaves_pgpgin_open_legitimately(replay_rows):
    # counters only (v1, 6.18): 2 shmem folios stay charged after the drain (no swap)
    kept = rows_of(stat("PGPGIN", 1), stat("PGPGIN", 1), stat("PGPGIN", 1), stat("NR_FILE_PAGES", 2),
                   stat("NR_SHMEM", 2), stat("PGPGOUT", 1), exit_row(), usage(2, item="memory.usage_in_bytes"))
    report = replay_rows(kept, meta(probes=[COUNTER_PROBE]))
    assert report.verdict == "balanced", [f.message for f in report.violations]
    assert any("still charged, held by 2 page(s) of shmem/tmpfs" in n for n in report.notes)
    assert report.memcgs[0].reconcile == "ok"
    # one folio charge more than the shmem it holds is a leak
    leak = rows_of(stat("PGPGIN", 3), stat("NR_SHMEM", 1), stat("NR_FILE_PAGES", 1), exit_row())
    assert rules_of(replay_rows(leak, meta(probes=[COUNTER_PROBE]))) == ["R3.pgpg"]


def test_usage_is_reconciled_at_the_last_phase(replay_rows):
    rows = rows_of(usage(0), *memstat(anon=0, file=0, kernel=0, sock=0), charge(F), exit_row(),
                   usage(30), *memstat(anon=4, file=0, kernel=25, sock=0),
                   usage(900), *memstat(anon=0, file=0, kernel=20, sock=0))
    phases = {"start": 0, "exit": 7, "settled": 12}
    report = replay_rows(rows, meta(probes=CHARGE_PROBES, exited=False, settled=False, phases=phases))
    (row,) = report.memcgs
    assert row.reconcile_phase == "settled" and row.reconcile == "mismatch"
    assert row.model_pages == 21 and row.kernel_pages == 900  # 1 charged page + 20 of kernel memory
    assert "(settled sample)" in report.violations[0].message


def test_malformed_scope_metadata_is_one_line_exit_2(tmp_path):
    from click.testing import CliRunner
    from synthetic import write_rows

    from chargetrace.cli import main

    path = tmp_path / "bad.parquet"
    write_rows(rows_of(charge(F)), path, meta(memcgs=[5, 6]))
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "malformed scope metadata" in result.stderr
