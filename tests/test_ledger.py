"""The in-kernel ledger: the replay's L1 rule and the recorder-side helpers (no BPF)."""

from __future__ import annotations

import pyarrow as pa
from conftest import MEMCG, meta_for, rows_of, rules_of

from chargetrace.tracer.decode import KIND_CODES
from chargetrace.tracer.ledger import CounterDeltas, read_ledger

COUNTER_PROBES = [{"event": "memcg_events", "kind": "memcg_stat", "probe": "tp:memcg:count_memcg_events",
                   "how": "tracepoint"},
                  {"event": "memcg_lruvec_state", "kind": "memcg_stat",
                   "probe": "tp:memcg:mod_memcg_lruvec_state", "how": "tracepoint"}]
STAT = next(c for c, n in KIND_CODES.items() if n == "memcg_stat")
FAULT = next(c for c, n in KIND_CODES.items() if n == "fault")


def stat(item, value, memcg=MEMCG, **kw):
    return ("memcg_stat", {"memcg": memcg, "item": item, "value": value, **kw})


def fault():
    return ("fault", {"addr": 0x1000, "value": 6})


def entry(kind, item, events, pages, memcg=MEMCG):
    return {"memcg": memcg, "kind": kind, "item": item, "events": events, "pages": pages}


def with_ledger(entries, *, drops=0, missed=None, closed=True):
    meta = meta_for(closed=closed, probes=COUNTER_PROBES)
    meta.ledger = entries
    meta.drops = {"total": drops, "per_cpu": {"0": drops} if drops else {}, "missed": missed or {}}
    return meta


def lost(count):
    return ("lost", {"cpu": 0, "value": count, "span_ns": 500, "probe": "recorder"})


BALANCED = [entry("fault", "", 1, 0, memcg=0), entry("memcg_stat", "PGPGIN", 2, 2),
            entry("memcg_stat", "PGPGOUT", 1, 2), entry("memcg_stat", "NR_ANON_MAPPED", 2, 0)]


def test_stream_equal_to_ledger_is_checked_and_clean(replay_rows):
    rows = rows_of(fault(), stat("PGPGIN", 1), stat("NR_ANON_MAPPED", 1), stat("PGPGIN", 1),
                   stat("PGPGOUT", 2), stat("NR_ANON_MAPPED", -1))
    report = replay_rows(rows, with_ledger(BALANCED))
    assert report.verdict == "balanced", [f.message for f in report.violations]
    assert {r.rule: r.checked for r in report.rules}["L1"] == 4


def test_a_row_missing_without_a_drop_is_a_violation(replay_rows):
    # the second PGPGIN row was removed after recording: the ledger still has it
    rows = rows_of(fault(), stat("PGPGIN", 1), stat("NR_ANON_MAPPED", 1), stat("PGPGOUT", 2),
                   stat("NR_ANON_MAPPED", -1))
    report = replay_rows(rows, with_ledger(BALANCED))
    assert "L1" in rules_of(report)
    (finding,) = [f for f in report.violations if f.rule == "L1"]
    assert "the stream has 1 events / 1 pages, the in-kernel ledger 2 / 2" in finding.message


def test_no_ledger_no_rule(replay_rows):
    report = replay_rows(rows_of(stat("PGPGIN", 1)), meta_for(closed=True, probes=COUNTER_PROBES))
    assert not {r.rule: r.applies for r in report.rules}["L1"]


def test_lost_events_but_ledger_balances_says_what_is_exact(replay_rows):
    # the stream lost the PGPGOUT row; the ledger has every one
    rows = rows_of(fault(), stat("PGPGIN", 1), stat("NR_ANON_MAPPED", 1), stat("PGPGIN", 1), lost(2),
                   stat("NR_ANON_MAPPED", -1))
    report = replay_rows(rows, with_ledger(BALANCED, drops=2, missed={"tp:memcg:mod_memcg_lruvec_state": 3}))
    assert report.verdict == "inconclusive" and not report.violations
    notes = " ".join(report.notes)
    assert f"R3.pgpg (memcg {MEMCG}) hold exactly" in notes
    assert f"R13.anon (memcg {MEMCG}; the kernel skipped 3 run(s) of its probe system-wide)" in notes
    assert "folio-level rules stay inconclusive" in notes


def test_lost_events_and_ledger_imbalance_is_an_exact_violation(replay_rows):
    leaking = [entry("memcg_stat", "PGPGIN", 3, 3), entry("memcg_stat", "PGPGOUT", 1, 2)]
    rows = rows_of(stat("PGPGIN", 1), lost(5), stat("PGPGOUT", 2), lost(1))
    report = replay_rows(rows, with_ledger(leaking, drops=6))
    assert report.verdict == "violations" and report.exit_code == 1
    (finding,) = [f for f in report.violations if "ledger" in f.message]
    # R3.pgpg's own message, judged on the ledger's totals (3 in, 2 out)
    assert finding.rule == "R3.pgpg" and not finding.inconclusive
    assert finding.message.startswith("in-kernel ledger (exact although the stream lost events): ")
    assert f"memcg {MEMCG}" in finding.message


def test_lost_events_open_scope_makes_nothing_exact(replay_rows):
    rows = rows_of(stat("PGPGIN", 1), lost(1))
    report = replay_rows(rows, with_ledger([entry("memcg_stat", "PGPGIN", 2, 2)], drops=1, closed=False))
    assert report.verdict == "inconclusive"
    assert any("no memcg observed from its creation" in n for n in report.notes)


def test_aggregated_rows_count_their_hits(replay_rows):
    # one aggregated row stands for 2 PGPGIN hits (ret), summed over 1 us
    rows = rows_of(stat("PGPGOUT", 2, ret=1, span_ns=1000), stat("PGPGIN", 2, ret=2, span_ns=1000))
    ledger = [entry("memcg_stat", "PGPGIN", 2, 2), entry("memcg_stat", "PGPGOUT", 1, 2)]
    report = replay_rows(rows, with_ledger(ledger))
    # no underflow finding for the aggregated PGPGOUT first: only the end balance is judged
    assert report.verdict == "balanced", [f.message for f in report.violations]


# -- recorder side -------------------------------------------------------------------

TABLES = {5: {0: "PGPGIN", 1: "PGPGOUT"}, 6: {0: "NR_ANON_MAPPED"}}


def test_read_ledger_names_items_per_probe_and_merges():
    snap = [(MEMCG, STAT, 5, 0, 3, 3), (MEMCG, STAT, 6, 0, 2, 0), (0, FAULT, 0, 0, 4, 0),
            (MEMCG, STAT, 5, 1, 1, 3)]
    assert read_ledger(snap, TABLES) == [
        entry("fault", "", 4, 0, memcg=0),
        entry("memcg_stat", "NR_ANON_MAPPED", 2, 0),
        entry("memcg_stat", "PGPGIN", 3, 3),
        entry("memcg_stat", "PGPGOUT", 1, 3),
    ]


def test_counter_deltas_between_snapshots():
    deltas = CounterDeltas({5: "tp:memcg:count_memcg_events", 6: "tp:memcg:mod_memcg_lruvec_state"}, TABLES, 100)
    first = deltas.rows([(MEMCG, STAT, 5, 0, 3, 3), (MEMCG, STAT, 5, 1, 1, 3), (0, FAULT, 0, 0, 9, 0)], 200,
                        pid=1)
    table = pa.table({k: v for k, v in first.items()})
    assert table.column("item").cast(pa.string()).to_pylist() == ["PGPGIN", "PGPGOUT"]
    assert table.column("value").to_pylist() == [3, 3] and table.column("ret").to_pylist() == [3, 1]
    assert set(table.column("span_ns").to_pylist()) == {100}
    assert deltas.rows([(MEMCG, STAT, 5, 0, 3, 3), (MEMCG, STAT, 5, 1, 1, 3)], 300) is None
    again = deltas.rows([(MEMCG, STAT, 5, 0, 5, 5), (MEMCG, STAT, 6, 0, 2, -1)], 450, pid=1)
    assert again["value"] == [2, -1] and again["ret"] == [2, 2] and again["span_ns"] == [150, 150]  # nothing moved in (200, 300]
