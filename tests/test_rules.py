"""Every rule, firing and not firing, on hand-made event sequences."""

from __future__ import annotations

from conftest import MEMCG, meta_for, rows_of, rules_of

F, G, D = 0x1000, 0x2000, 0xD000  # RAM folios and a device-private folio
OTHER = 99


def charge(folio=F, memcg=MEMCG, ret=0, **kw):
    return ("charge", {"folio": folio, "memcg": memcg if ret == 0 else 0, "nr_pages": 1, "ret": ret, **kw})


def uncharge(folio=F, memcg=MEMCG, **kw):
    return ("uncharge", {"folio": folio, "memcg": memcg, "nr_pages": 1, **kw})


def transfer(old=F, new=G, memcg=MEMCG, memcg_new=None, **kw):
    return ("transfer", {"folio": old, "folio_new": new, "memcg": memcg,
                         "memcg_new": memcg if memcg_new is None else memcg_new, "nr_pages": 1, **kw})


def device_free(folio=D, memcg=MEMCG, refcount=0, **kw):
    return ("device_free", {"folio": folio, "memcg": memcg, "nr_pages": 1, "value": refcount, **kw})


def window(*inner, value=None, tid=None):
    """migrate_setup ... migrate_pages(value) ... migrate_finalize around inner events."""
    extra = {"tid": tid} if tid else {}
    moved = sum(1 for k, _ in inner if k == "transfer") if value is None else value
    return [("migrate_setup", {"item": "migrate_vma_setup", **extra}), *inner,
            ("migrate_pages", {"item": "migrate_vma_pages", "value": moved, **extra}),
            ("migrate_finalize", {"item": "migrate_vma_finalize", **extra})]


# -- R1 / R2 -------------------------------------------------------------------------

def test_r1_charge_uncharge_charge_is_fine(replay_rows):
    assert rules_of(replay_rows(rows_of(charge(), uncharge(), charge()))) == []


def test_r1_fires_on_second_charge(replay_rows):
    report = replay_rows(rows_of(charge(), charge()))
    assert rules_of(report) == ["R1"]
    assert report.violations[0].folio == F and report.violations[0].memcg == MEMCG


def test_r2_failed_charge_leaves_nothing(replay_rows):
    report = replay_rows(rows_of(charge(ret=-12), charge(), uncharge()))
    assert rules_of(report) == [] and report.memcgs[0].live == 0


def test_r2_fires_when_failed_charge_left_a_memcg(replay_rows):
    rows = rows_of(("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1, "ret": -12}))
    assert rules_of(replay_rows(rows)) == ["R2"]


# -- R3 ------------------------------------------------------------------------------

def test_r3_double_uncharge(replay_rows):
    report = replay_rows(rows_of(charge(), uncharge(), uncharge()))
    assert rules_of(report) == ["R3"]
    assert report.memcgs[0].live == -1  # never clamped


def test_r3_uncharge_of_unknown_folio_is_pre_trace_not_a_violation(replay_rows):
    report = replay_rows(rows_of(uncharge(), uncharge(G, memcg=0)))
    assert rules_of(report) == []
    assert report.memcgs[0].pre_trace_uncharged == 1


def test_r3_unknown_folio_in_memcg_observed_from_creation(replay_rows):
    assert rules_of(replay_rows(rows_of(uncharge()), meta_for(fresh=True))) == ["R3"]


def test_r3_attribution_mismatch(replay_rows):
    assert rules_of(replay_rows(rows_of(charge(), uncharge(memcg=OTHER)))) == ["R3"]


def test_r3_vanished_charge_force_era(replay_rows):
    assert rules_of(replay_rows(rows_of(charge(), uncharge(memcg=0)), meta_for("force"))) == ["R3"]


# -- R4 / R5 -------------------------------------------------------------------------

def test_r4_transfer_era_clean(replay_rows):
    rows = rows_of(charge(), *window(transfer()), uncharge(F, memcg=0), uncharge(G))
    report = replay_rows(rows)
    assert rules_of(report) == [] and report.memcgs[0].live == 0


def test_r4_force_era_clean(replay_rows):
    rows = rows_of(charge(), *window(transfer()), uncharge(F), uncharge(G))
    report = replay_rows(rows, meta_for("force"))
    assert rules_of(report) == [] and report.memcgs[0].force_charged == 1


def test_r4_force_trace_under_transfer_profile_disagrees(replay_rows):
    rows = rows_of(charge(), *window(transfer()), uncharge(F), uncharge(G))
    assert "R4" in rules_of(replay_rows(rows, meta_for("force"), era="6.7+"))


def test_r4_transfer_trace_under_force_profile_disagrees(replay_rows):
    rows = rows_of(charge(), *window(transfer()), uncharge(F, memcg=0), uncharge(G))
    assert "R4" in rules_of(replay_rows(rows, meta_for("transfer"), era="5.18-6.6"))


def test_r4_window_counts_transfers(replay_rows):
    rows = rows_of(charge(), *window(transfer(), value=2), uncharge(F, memcg=0), uncharge(G))
    assert rules_of(replay_rows(rows)) == ["R4"]


def test_r4_destination_already_charged(replay_rows):
    rows = rows_of(charge(), charge(G), transfer())
    assert "R4" in rules_of(replay_rows(rows))


def test_r4_missing_transfer_in_transfer_era(replay_rows):
    # the kernel cleared F's charge (a transfer happened) but the trace lacks it
    assert rules_of(replay_rows(rows_of(charge(), uncharge(F, memcg=0)))) == ["R4"]


def test_r4_force_era_old_never_uncharged_is_a_candidate_or_violation(replay_rows):
    rows = rows_of(charge(), transfer(), uncharge(G))
    open_report = replay_rows(rows, meta_for("force"))
    assert rules_of(open_report) == [] and [f.rule for f in open_report.candidates] == ["R4"]
    assert rules_of(replay_rows(rows, meta_for("force", closed=True))) == ["R4"]


def test_r5_memcg_changes_across_migration(replay_rows):
    rows = rows_of(charge(), transfer(memcg_new=OTHER), uncharge(F, memcg=0), uncharge(G, memcg=OTHER))
    assert rules_of(replay_rows(rows)) == ["R5"]


# -- R6 / R7 -------------------------------------------------------------------------

def dp_lifecycle():
    """RAM F -> device D (transfer), then CPU fault D -> RAM G, D freed uncharged (>= 6.7)."""
    return [charge(), *window(transfer(F, D)), uncharge(F, memcg=0),
            ("device_fault", {"folio": D}), *window(transfer(D, G)),
            device_free(D, memcg=0), uncharge(D, memcg=0), ("device_fault_done", {"ret": 0x400}),
            uncharge(G)]


def test_r6_device_lifecycle_balanced(replay_rows):
    report = replay_rows(rows_of(*dp_lifecycle()), meta_for(closed=True))
    assert report.verdict == "balanced"
    checked = {r.rule: r.checked for r in report.rules}
    assert checked["R6"] > 0 and checked["R4"] > 0 and checked["R8"] == 1


def test_r6_free_with_uncharge_ok_and_without_fires(replay_rows):
    ok = rows_of(*window(charge(D)), device_free(D, tid=7), uncharge(D, tid=7))
    assert rules_of(replay_rows(ok)) == []
    missing = rows_of(*window(charge(D)), device_free(D, tid=7), charge(F, tid=7))
    assert rules_of(replay_rows(missing)) == ["R6"]
    at_end = rows_of(*window(charge(D)), device_free(D))
    assert rules_of(replay_rows(at_end)) == ["R6"]


def test_r6_uncharge_of_transferred_device_folio_is_a_noop(replay_rows):
    rows = rows_of(charge(), transfer(F, D), uncharge(F, memcg=0), device_free(D, memcg=MEMCG), uncharge(D))
    assert rules_of(replay_rows(rows)) == []


def test_r6_double_uncharge_of_device_folio(replay_rows):
    rows = rows_of(*window(charge(D)), device_free(D), uncharge(D), uncharge(D))
    assert rules_of(replay_rows(rows)) == ["R6"]


def test_r7_refcount_per_era(replay_rows):
    rows = rows_of(*window(charge(D)), device_free(D, refcount=1), uncharge(D))
    assert rules_of(replay_rows(rows, meta_for(refcount=1), era=None)) == []
    assert rules_of(replay_rows(rows, meta_for(refcount=0))) == ["R7"]
    unread = rows_of(*window(charge(D)), device_free(D, refcount=-1), uncharge(D))
    assert rules_of(replay_rows(unread)) == []


# -- R8 ------------------------------------------------------------------------------

def test_r8_failed_charge_inside_device_fault(replay_rows):
    rows = rows_of(("device_fault", {}), charge(ret=-12), ("device_fault_done", {"ret": 0}))
    assert rules_of(replay_rows(rows)) == ["R8"]


def test_r8_oom_return(replay_rows):
    ok = rows_of(("device_fault", {}), ("device_fault_done", {"ret": 0x2}))  # SIGBUS: allowed
    assert rules_of(replay_rows(ok)) == []
    oom = rows_of(("device_fault", {}), ("device_fault_done", {"ret": 0x1}))
    assert rules_of(replay_rows(oom)) == ["R8"]


# -- R9 / R11 ------------------------------------------------------------------------

def test_r9_hole_insertion_inside_window_ok_outside_fires(replay_rows):
    inside = rows_of(*window(charge(D)), device_free(D), uncharge(D))
    assert rules_of(replay_rows(inside)) == []
    outside = rows_of(charge(D), device_free(D), uncharge(D))
    assert rules_of(replay_rows(outside)) == ["R9"]


def test_r11_fork_shares_device_pages(replay_rows):
    child = 501
    shared = rows_of(*window(charge(D)), ("fork", {"value": child}), device_free(D, pid=child, tid=child),
                     uncharge(D, pid=child, tid=child))
    assert rules_of(replay_rows(shared)) == []
    recharged = rows_of(*window(charge(D)), ("fork", {"value": child}), device_free(D), uncharge(D),
                        charge(D, pid=child, tid=child), device_free(D, pid=child, tid=child),
                        uncharge(D, pid=child, tid=child))
    assert rules_of(replay_rows(recharged)) == ["R11"]


# -- R10 -----------------------------------------------------------------------------

def test_r10_leak_in_a_closed_scope(replay_rows):
    rows = rows_of(charge(), charge(G), uncharge(G), ("exit", {"value": 1}))
    assert rules_of(replay_rows(rows, meta_for(closed=True))) == ["R10"]


def test_r10_open_scope_gives_a_candidate_only(replay_rows):
    report = replay_rows(rows_of(charge(), ("exit", {"value": 1})))
    assert report.verdict == "balanced" and [f.rule for f in report.candidates] == ["R10"]


# -- counters and reconciliation ------------------------------------------------------

def stat(item, value, memcg=MEMCG):
    return ("memcg_stat", {"memcg": memcg, "item": item, "value": value})


COUNTER_PROBES = [{"event": "memcg_events", "kind": "memcg_stat", "probe": "tp:memcg:count_memcg_events",
                   "how": "tracepoint"}]
SPLIT_PROBE = {"event": "split", "kind": "split", "probe": "kprobe:split_page_memcg", "how": "kprobe"}


def test_pgpg_balanced_and_leaking(replay_rows):
    meta = meta_for(closed=True, probes=COUNTER_PROBES)
    ok = rows_of(stat("PGPGIN", 3), stat("NR_ANON_MAPPED", 3), stat("PGPGOUT", 2), stat("PGPGOUT", 1),
                 stat("NR_ANON_MAPPED", -3))
    report = replay_rows(ok, meta)
    assert report.verdict == "balanced"
    assert {r.rule: r.checked for r in report.rules}["R3.pgpg"] == 3
    assert not {r.rule: r.applies for r in report.rules}["R1"]  # no charge probe in this trace
    leak = rows_of(stat("PGPGIN", 3), stat("PGPGOUT", 2))
    assert rules_of(replay_rows(leak, meta)) == ["R3.pgpg"]


def test_pgpg_underflow_and_anon(replay_rows):
    meta = meta_for(fresh=True, probes=COUNTER_PROBES + [SPLIT_PROBE])
    assert rules_of(replay_rows(rows_of(stat("PGPGOUT", 1)), meta)) == ["R3.pgpg"]
    # without a split probe a PGPGOUT surplus may be pieces of split folios: said, not judged
    no_split = replay_rows(rows_of(stat("PGPGOUT", 1)), meta_for(fresh=True, probes=COUNTER_PROBES))
    assert rules_of(no_split) == [] and any("no split probe" in n for n in no_split.notes)
    assert rules_of(replay_rows(rows_of(stat("NR_ANON_MAPPED", -1)), meta)) == ["R13.anon"]
    closed = meta_for(closed=True, probes=COUNTER_PROBES)
    assert rules_of(replay_rows(rows_of(stat("NR_ANON_MAPPED", 2), stat("NR_ANON_MAPPED", -1)), closed)) == [
        "R13.anon"]


def test_counters_of_a_memcg_not_observed_from_creation_are_not_judged(replay_rows):
    meta = meta_for(probes=COUNTER_PROBES)
    assert rules_of(replay_rows(rows_of(stat("PGPGOUT", 5)), meta)) == []


def usage(pages, memcg=MEMCG):
    return ("usage", {"memcg": memcg, "item": "memory.current", "value": pages * 4096})


def test_usage_reconciliation_absolute(replay_rows):
    meta = meta_for(fresh=True, ncpus=2)
    ok = replay_rows(rows_of(usage(0), charge(), usage(40)), meta)
    assert ok.verdict == "balanced"
    row = ok.memcgs[0]
    assert (row.kernel_pages, row.model_pages, row.difference, row.tolerance, row.reconcile) == (40, 1, 39, 128, "ok")
    too_much = replay_rows(rows_of(usage(0), charge(), usage(500)), meta)
    assert rules_of(too_much) == ["R3.usage"]
    too_little = replay_rows(rows_of(charge(), charge(G), usage(1)), meta)
    assert rules_of(too_little) == ["R3.usage"]


def test_usage_reconciliation_by_change_for_mid_flight_memcg(replay_rows):
    ok = replay_rows(rows_of(usage(1000), charge(), uncharge(G), usage(1000)))
    assert ok.verdict == "balanced" and ok.memcgs[0].reconcile == "ok"
    bad = replay_rows(rows_of(usage(1000), charge(), usage(2000)))
    assert rules_of(bad) == ["R3.usage"]


# -- lost events ---------------------------------------------------------------------

def test_lost_window_makes_dependent_findings_inconclusive(replay_rows):
    rows = rows_of(charge(), ("lost", {"value": 3, "span_ns": 500}), charge())
    report = replay_rows(rows)
    assert report.violations == [] and [f.rule for f in report.inconclusive] == ["R1"]
    assert report.verdict == "inconclusive" and report.exit_code == 3 and report.lost_events == 3


def test_lost_window_elsewhere_leaves_violation_standing(replay_rows):
    rows = rows_of(("lost", {"value": 1, "span_ns": 10}), uncharge(G), charge(), charge())
    report = replay_rows(rows)
    assert rules_of(report) == ["R1"] and report.inconclusive == []


def test_trace_starting_mid_flight_has_no_false_alarms(replay_rows):
    # folios charged before the recording, a migration already under way, a fault in progress
    rows = rows_of(uncharge(F), transfer(G, D), ("migrate_pages", {"value": 5}), ("migrate_finalize", {}),
                   ("device_fault_done", {"ret": 0}), device_free(D), uncharge(D), uncharge(G, memcg=0))
    report = replay_rows(rows)
    assert report.verdict == "balanced" and report.violations == []


def test_lost_events_without_findings_still_make_the_verdict_inconclusive(replay_rows):
    report = replay_rows(rows_of(charge(), ("lost", {"value": 2, "span_ns": 100}), uncharge()))
    assert report.violations == [] and report.inconclusive == []
    assert report.verdict == "inconclusive" and any("balance cannot be proven" in n for n in report.notes)


def test_split_large_folio_parts_are_known_charges(replay_rows):
    head, tail = 0x100000, 0x100040
    big = ("charge", {"folio": head, "memcg": MEMCG, "nr_pages": 4, "ret": 0})
    split = ("split", {"folio": head, "memcg": MEMCG, "nr_pages": 4, "value": 1})
    rows = rows_of(big, split, uncharge(head), uncharge(tail), uncharge(tail + 64), uncharge(tail + 128))
    report = replay_rows(rows, meta_for(closed=True))
    assert report.verdict == "balanced" and report.memcgs[0].live == 0
    leaked = rows_of(big, split, uncharge(head), uncharge(tail))
    assert rules_of(replay_rows(leaked, meta_for(closed=True))) == ["R10"]
    # without the split event the parts look like charges the trace never made
    assert "R3" in rules_of(replay_rows(rows_of(big, uncharge(tail)), meta_for(fresh=True)))
