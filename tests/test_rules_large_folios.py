"""R15 (large folios: pages from the order; a split keeps the charge in its memcg), firing and
not firing, on hand-made event sequences shaped like a device-private THP's life on 7.2:
a 512-page hole insertion, a transfer, a split into order-0 pieces, the pieces' frees."""

from __future__ import annotations

from conftest import MEMCG, meta_for, rows_of, rules_of

H, D = 0x200000, 0xD00000  # a RAM THP and a device-private THP
OTHER = 99


def charge(folio=D, nr=512, memcg=MEMCG):
    return ("charge", {"folio": folio, "memcg": memcg, "nr_pages": nr, "ret": 0})


def uncharge(folio=D, nr=512, memcg=MEMCG):
    return ("uncharge", {"folio": folio, "memcg": memcg, "nr_pages": nr})


def device_free(folio=D, nr=512, memcg=MEMCG):
    return ("device_free", {"folio": folio, "memcg": memcg, "nr_pages": nr, "value": 0})


def transfer(old=H, new=D, nr=512, memcg=MEMCG):
    return ("transfer", {"folio": old, "folio_new": new, "memcg": memcg, "memcg_new": memcg, "nr_pages": nr})


def split(folio=D, nr=512, piece=1, memcg=MEMCG):
    return ("split", {"folio": folio, "memcg": memcg, "nr_pages": nr, "value": piece})


def inserted(folio=D, nr=512):
    """A hole insertion: the only fresh charge of a device-private folio (R9), inside a migrate_vma window."""
    return [("migrate_setup", {"item": "migrate_vma_setup"}), charge(folio, nr),
            ("migrate_pages", {"item": "migrate_vma_pages", "value": 0}),
            ("migrate_finalize", {"item": "migrate_vma_finalize"})]


def freed_pieces(n, nr=1, start=D):
    out = []
    for i in range(n):
        f = start + i * 0x40 * nr
        out += [device_free(f, nr), uncharge(f, nr)]
    return out


def r15(report):
    return next(r for r in report.rules if r.rule == "R15")


def test_device_thp_charged_split_and_freed_piece_by_piece_is_balanced(replay_rows):
    rows = rows_of(*inserted(), split(), *freed_pieces(512))
    report = replay_rows(rows, meta_for(closed=True))
    assert rules_of(report) == [] and report.verdict == "balanced"
    assert r15(report).checked == 2 and r15(report).pages == 1024  # the charge and the split
    assert report.memcgs[0].live == 0


def test_device_thp_transferred_then_freed_whole(replay_rows):
    rows = rows_of(charge(H), transfer(), device_free(), uncharge())
    report = replay_rows(rows, meta_for(closed=True))
    assert rules_of(report) == [] and r15(report).checked == 4


def test_order_zero_traffic_is_not_counted(replay_rows):
    rows = rows_of(charge(nr=1), uncharge(nr=1))
    assert r15(replay_rows(rows)).checked == 0


def test_r15_fires_on_a_page_count_that_is_no_order(replay_rows):
    assert rules_of(replay_rows(rows_of(charge(nr=3), uncharge(nr=3)))) == ["R15", "R15"]


def test_r15_fires_when_the_free_reads_another_size_than_the_charge(replay_rows):
    # the free's nr must come from the same order as the charge's (folio_nr_pages())
    assert "R15" in rules_of(replay_rows(rows_of(charge(), device_free(nr=1), uncharge(nr=1))))


def test_r15_fires_when_a_split_hands_the_pieces_to_another_memcg(replay_rows):
    report = replay_rows(rows_of(charge(), split(memcg=OTHER)))
    assert rules_of(report) == ["R15"]
    assert "a split moves no charge" in report.violations[0].message


def test_r15_fires_on_a_split_whose_orders_do_not_fall(replay_rows):
    assert rules_of(replay_rows(rows_of(charge(), split(piece=512)))) == ["R15"]


def test_pieces_of_a_non_uniform_split_are_credited(replay_rows):
    # __split_unmapped_folio() non-uniform: 512 -> 256 + (256 -> 128 + 128); the second step names
    # the piece holding split_at, which the trace never saw charged.
    second = D + 256 * 0x40
    rows = rows_of(charge(), split(D, 512, 256), split(second, 256, 128),
                   uncharge(D, 256), uncharge(second, 128), uncharge(second + 128 * 0x40, 128))
    report = replay_rows(rows, meta_for(closed=True))
    assert rules_of(report) == [] and report.memcgs[0].live == 0
