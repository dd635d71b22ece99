"""R12 (no LRU for uncharged or device folios) and R14 (hierarchy), firing and not firing."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import MEMCG, meta_for, rows_of, rules_of
from chargetrace.traces import Scope

F, G, D = 0x1000, 0x2000, 0xD000
LRU = [{"event": "lru_insert", "kind": "lru_insert", "probe": "tp:pagemap:mm_lru_insertion", "how": "tracepoint"},
       {"event": "charge", "kind": "charge", "probe": "kprobe:__mem_cgroup_charge", "how": "kprobe"},
       {"event": "device_free", "kind": "device_free", "probe": "kprobe:free_zone_device_page", "how": "kprobe"}]


def lru(folio=F, memcg=MEMCG):
    return ("lru_insert", {"folio": folio, "memcg": memcg, "nr_pages": 1, "value": 2})


def test_r12_charged_folio_on_lru_is_fine(replay_rows):
    report = replay_rows(rows_of(("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1}), lru()),
                         meta_for(probes=LRU))
    assert rules_of(report) == []
    assert {r.rule: r.checked for r in report.rules}["R12"] == 1


def test_r12_fires_on_the_old_folio_of_a_transfer_put_back_on_the_lru(replay_rows):
    rows = rows_of(("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1}),
                   ("transfer", {"folio": F, "folio_new": G, "memcg": MEMCG, "memcg_new": MEMCG, "nr_pages": 1}),
                   lru(F, 0))
    report = replay_rows(rows, meta_for(probes=LRU))
    assert "R12" in rules_of(report)
    f = next(v for v in report.violations if v.rule == "R12")
    # Named: the memcg the transfer moved the charge away from (the insertion itself reads 0).
    assert f.folio == F and f.seq == 2 and f.memcg == MEMCG
    assert "transferred-away at seq 1 (memcg" in f.message


def test_r12_fires_on_a_device_folio_on_the_lru(replay_rows):
    rows = rows_of(lru(D, MEMCG), ("device_free", {"folio": D, "memcg": MEMCG, "nr_pages": 1}),
                   ("uncharge", {"folio": D, "memcg": MEMCG, "nr_pages": 1}))
    report = replay_rows(rows, meta_for(probes=LRU))
    assert rules_of(report) == ["R12"] and report.violations[0].folio == D


def test_r12_needs_the_probe(replay_rows):
    probes = [p for p in LRU if p["kind"] != "lru_insert"]
    report = replay_rows(rows_of(("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1})), meta_for(probes=probes))
    row = next(r for r in report.rules if r.rule == "R12")
    assert row.applies is False and row.checked == 0


_HAS_MEMCGS = "memcgs" in {f.name for f in dataclasses.fields(Scope)}
CHILD, CHILD2 = 78, 79


def _hier_meta():
    meta = meta_for(probes=LRU)
    meta.scope.memcgs = [{"memcg": MEMCG, "parent": 1, "path": "/s", "created_in_scope": True},
                         {"memcg": CHILD, "parent": MEMCG, "path": "/s/a", "created_in_scope": True},
                         {"memcg": CHILD2, "parent": MEMCG, "path": "/s/b", "created_in_scope": True}]
    return meta


def usage(memcg, nbytes):
    return ("usage", {"memcg": memcg, "item": "memory.current", "value": nbytes, "probe": "sample:memory.current"})


@pytest.mark.skipif(not _HAS_MEMCGS, reason="needs schema-2 scope.memcgs (recorder branch) in traces/metadata.py")
def test_r14_parent_covering_its_children_is_fine(replay_rows):
    mb = 1 << 20
    report = replay_rows(rows_of(usage(MEMCG, 3 * mb), usage(CHILD, mb), usage(CHILD2, 2 * mb)), _hier_meta())
    assert "R14" not in rules_of(report)
    assert {r.rule: r.checked for r in report.rules}["R14"] == 1


@pytest.mark.skipif(not _HAS_MEMCGS, reason="needs schema-2 scope.memcgs (recorder branch) in traces/metadata.py")
def test_r14_fires_when_children_exceed_their_parent(replay_rows):
    mb = 1 << 20
    rows = rows_of(usage(MEMCG, 3 * mb), usage(CHILD, mb), usage(CHILD2, 2 * mb),
                   ("fault", {"addr": 4096}),
                   usage(MEMCG, mb), usage(CHILD, 8 * mb), usage(CHILD2, 0))
    report = replay_rows(rows, _hier_meta())
    hits = [v for v in report.violations if v.rule == "R14"]
    assert len(hits) == 1 and hits[0].memcg == MEMCG and hits[0].seq == 4


# -- R9: an aborted hole insertion whose charge is never released (lab variant hole-charge-leak) ----

def _hole(memcg_at_free):
    return rows_of(("migrate_setup", {"item": "migrate_vma_setup"}),
                   ("charge", {"folio": D, "memcg": MEMCG, "nr_pages": 1}),
                   ("migrate_pages", {"item": "migrate_vma_pages", "value": 0}),
                   ("migrate_finalize", {"item": "migrate_vma_finalize"}),
                   ("device_free", {"folio": D, "memcg": memcg_at_free, "nr_pages": 1, "value": 0}),
                   *([("uncharge", {"folio": D, "memcg": MEMCG, "nr_pages": 1})] if memcg_at_free else []))


def test_r9_aborted_hole_insertion_released_by_its_free_is_fine(replay_rows):
    assert rules_of(replay_rows(_hole(MEMCG), meta_for("force"))) == []


def test_r9_fires_when_an_aborted_hole_insertion_keeps_its_charge(replay_rows):
    report = replay_rows(_hole(0), meta_for("force"))
    assert rules_of(report) == ["R9"]
    f = report.violations[0]
    assert f.folio == D and f.memcg == MEMCG and f.seq == 4 and f.related_seqs == [1]
