"""R12: no LRU insertion of an uncharged or device-private folio.

Scope: ``lru_insert`` rows (``tp:pagemap:mm_lru_insertion``, the folio's memcg read in BPF at the
insertion). While memcg is on, every folio that goes on an LRU list is charged first (page cache by
``filemap_add_folio()``, anon by the fault path, migration destinations by ``mem_cgroup_migrate()``),
and ``folio_lruvec()`` of an uncharged folio hits ``VM_WARN_ON_ONCE_FOLIO(!memcg ...)`` in
``folio_lruvec_lock_irqsave()`` (mm/memcontrol.c). ZONE_DEVICE folios never go on an LRU
(``migrate_vma_insert_page()`` / ``migrate_device_finalize()`` test ``folio_is_zone_device()``).

Limits: "device-private" is what the model knows (folios seen in a device free); a device folio
never freed inside the trace is judged only by its memcg.
"""

from __future__ import annotations

from ..automaton import Rule
from ..events import Event

__all__ = ["NoLruForUnchargedOrDevice"]


class NoLruForUnchargedOrDevice(Rule):
    id = "R12"
    title = "no LRU insertion of an uncharged or device-private folio"
    # With charge transfer (85ce2c517ade, 6.7) the old folio of a migration has memcg_data 0;
    # migrate_device_finalize() still put it back on the LRU until 41cddf83d8b0
    # "mm/migrate_device: don't add folio to be freed to LRU in migrate_device_finalize()".
    source = "41cddf83d8b0; mm/memcontrol.c folio_lruvec_lock_irqsave()"
    handles = ("lru_insert",)
    needs = ("lru_insert",)

    def on_lru_insert(self, ev: Event) -> None:
        self.check(ev.nr_pages or 1)
        if ev.folio in self.model.device_folios:
            self.report(ev, ev.folio, ev.memcg, "device-private folio put on an LRU list "
                        "(ZONE_DEVICE folios never go on an LRU)")
            return
        if ev.memcg == 0:
            state = self.model.folios.get(ev.folio)
            # The finding names the memcg the folio's charge left (by the transfer or uncharge at
            # `related`): the insertion's own memcg is 0 by definition.
            memcg = (state.memcg or state.last_memcg) if state is not None else 0
            was = (f"; the model last saw it {state.via} at seq {state.seq}"
                   + (f" (memcg {memcg})" if memcg else "")) if state is not None else ""
            self.report(ev, ev.folio, memcg,
                        f"uncharged folio (memcg_data 0) put on an LRU list{was}",
                        related=[state.seq] if state is not None else ())
