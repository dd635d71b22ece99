"""R15: large folios — a folio's pages come from its order, and a split keeps the
charge in the same memcg, piece by piece.

Scope: every event that names a folio of more than one page (anon and file THP,
mTHP, and device-private THP from 6.19: d245f9b4ab80 "mm/zone_device: support
large zone device private folios") and every ``split`` row. The rule reads the
model's folio state (its memcg and size, after the splits the model applied);
it never re-derives the charge itself.

Limits: a folio first seen at its uncharge (charged before the trace, or a piece
of a split the model only knows as a per-memcg credit) has no recorded size to
compare with, so only its own order is checked. A non-uniform split
(``__split_unmapped_folio()`` stepping down one order at a time, mm/huge_memory.c)
names a piece the trace never saw charged; the model credits it from the first
step, and R15 checks each step's orders.
"""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event

__all__ = ["LargeFolios"]


def _order_ok(nr: int) -> bool:
    """A folio holds 1 << order pages: a power of two."""
    return nr > 0 and nr & (nr - 1) == 0


class LargeFolios(Rule):
    id = "R15"
    title = "large folios: pages from the order; a split keeps the charge in its memcg"
    # folio_nr_pages() is 1 << folio_order() (include/linux/mm.h); a split copies
    # memcg_data to every piece and takes one objcg/css reference per new piece
    # (folio_split_memcg_refs(), mm/memcontrol.c; split_page_memcg() before 6.15),
    # charging and uncharging nothing.
    source = "d245f9b4ab80; mm/huge_memory.c __split_unmapped_folio(), mm/memcontrol.c folio_split_memcg_refs()"
    handles = ("charge", "uncharge", "transfer", "device_free", "split")
    needs = ("charge", "uncharge")
    unit = "large-folio events"

    def _size(self, ev: Event, what: str) -> None:
        """A row of a large folio: its page count must be a power of two (its order), and equal
        to the size the model holds for the folio when it holds one."""
        nr = ev.nr_pages
        state = self.model.folios.get(ev.folio)
        known = state.nr if state is not None and state.memcg else 0
        if nr <= 1 and known <= 1:
            return
        self.check(max(nr, known))
        if not _order_ok(nr):
            self.report(ev, ev.folio, ev.memcg, f"{what} of {nr} pages: not 1 << order")
        elif known and nr and nr != known:
            assert state is not None
            self.report(
                ev, ev.folio, ev.memcg,
                f"{what} of {nr} pages, but the folio was charged as {known} pages at seq {state.seq} "
                f"({state.via}) and not split since",
                since_ts_ns=state.ts_ns, related=[state.seq],
            )

    def on_charge(self, ev: Event) -> None:
        if ev.ret == 0 and ev.memcg and ev.nr_pages > 1:
            self.check(ev.nr_pages)
            if not _order_ok(ev.nr_pages):
                self.report(ev, ev.folio, ev.memcg, f"charge of {ev.nr_pages} pages: not 1 << order")

    def on_uncharge(self, ev: Event) -> None:
        if ev.memcg:
            self._size(ev, "uncharge")

    def on_transfer(self, ev: Event) -> None:
        if ev.memcg:
            self._size(ev, "transfer")

    def on_device_free(self, ev: Event) -> None:
        if ev.memcg:
            self._size(ev, "device-private free")

    def on_split(self, ev: Event) -> None:
        nr, piece = ev.nr_pages, ev.value
        self.check(nr)
        if not (_order_ok(nr) and _order_ok(piece) and piece < nr):
            self.report(ev, ev.folio, ev.memcg,
                        f"split of {nr} pages into pieces of {piece}: orders must fall (new < old)")
            return
        state = self.model.folios.get(ev.folio)
        if state is None or not state.memcg:
            return  # charged before the trace, or a later step of a non-uniform split
        if ev.memcg and ev.memcg != state.memcg:
            self.report(
                ev, ev.folio, ev.memcg,
                f"split hands the pieces to memcg {ev.memcg}, but the folio is charged to memcg "
                f"{state.memcg} since seq {state.seq}: a split moves no charge",
                since_ts_ns=state.ts_ns, related=[state.seq],
            )
        elif state.nr != nr:
            self.report(
                ev, ev.folio, ev.memcg,
                f"split of a {nr}-page folio that was charged as {state.nr} pages at seq {state.seq}",
                since_ts_ns=state.ts_ns, related=[state.seq],
            )
