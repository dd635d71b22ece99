"""R10: after munmap/exit every charge the trace made is released — except what
is legitimately held.

A closed memcg (observed from creation, no task left, drained) may still hold
page cache of files that still exist, shmem/tmpfs (force_empty cannot reclaim
it without swap), kernel objects and socket buffers: the kernel keeps those
charged on purpose. The folios the trace charged and never saw uncharged are
compared with the page cache and shmem the memcg says it holds (Model.held:
memory.stat samples, else the page counters; units in replay/units.py): up to
that figure they are reported as *held*, beyond it as leaks. Kernel objects and
socket buffers never come from a folio charge, so they excuse none (a dropped
anon uncharge hid behind 5 pages of kmem before that was so). A charge record
says nothing about the folio's kind, so the comparison is per memcg, in pages.

While a task of the scope still runs (``scope.tasks_left``) nothing is judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..automaton import Rule
from ..findings import CANDIDATE, VIOLATION
from ..units import Held

__all__ = ["ReleasedAtExit", "Outstanding"]


@dataclass
class Outstanding:
    """Charges the trace made in one memcg that are still held at its end."""

    memcg: int
    folios: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    pages: int = 0
    first_ts: int = 0
    held: Held | None = None  #: what the memcg says it holds (None: unknown)
    verdict: str = ""  #: "held" (legitimately), "leak", "open" (scope not closed)


class ReleasedAtExit(Rule):
    id = "R10"
    title = "charges are released at munmap/exit, apart from page cache, shmem, kernel and socket memory"
    # exit_mmap() zaps every anon folio, RAM or device-private (mm/mmap.c,
    # zap_nonpresent_ptes() in mm/memory.c); the last put uncharges.
    source = "mm/mmap.c exit_mmap(); mm/memory.c zap_nonpresent_ptes()"
    handles = ()
    needs = ("charge", "uncharge")
    unit = "pages"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.outstanding: dict[int, Outstanding] = {}

    def finish(self) -> None:
        model, scope = self.model, self.ctx.scope
        for memcg, led in model.memcgs.items():
            if self.ctx.closed(memcg):
                charged = led.charged + led.force_charged
                self.checked += charged
                self.substance += charged
                self.pages += charged
        for folio, state in model.folios.items():
            if not state.memcg or not state.in_trace or state.migrated_seq >= 0:
                continue  # uncharged, charged before the trace, or R4's
            out = self.outstanding.setdefault(state.memcg, Outstanding(state.memcg, first_ts=state.ts_ns))
            out.folios.append(folio)
            out.seqs.append(state.seq)
            out.pages += state.nr
            out.first_ts = min(out.first_ts, state.ts_ns)
        for memcg, led in model.memcgs.items():
            if led.split_tails:
                out = self.outstanding.setdefault(memcg, Outstanding(memcg, first_ts=model.first_ts))
                out.pages += led.split_tails
        for memcg, out in sorted(self.outstanding.items()):
            out.held = model.held(memcg, self.ctx.observed_from_creation(memcg))
            if self.ctx.closed(memcg):
                legit = out.held.folio_backed() if out.held is not None else 0
                out.verdict = "held" if out.pages <= legit else "leak"
            else:
                out.verdict = "open"
            if out.verdict == "held" or scope.tasks_left:
                continue
            self._report(out)

    def _report(self, out: Outstanding) -> None:
        what = f"{out.pages} page(s) ({len(out.folios)} folio(s) and split parts) charged in the trace are " \
               f"still charged to memcg {out.memcg} at the end"
        if out.verdict == "leak":
            holds = out.held.describe() if out.held is not None else "no memory.stat sample or page counters"
            legit = out.held.folio_backed() if out.held is not None else 0
            message = (f"{what}; its tasks exited and it was drained, and it holds only {legit} page(s) "
                       f"of page cache or shmem that may stay charged in folios ({holds})")
            kind = VIOLATION
        else:
            exited = {self.model.folios[f].pid for f in out.folios} & self.model.exited_pids
            if not exited:
                return
            message = f"{what}; process(es) {', '.join(map(str, sorted(exited)))} exited " \
                      f"(page cache or shmem may stay charged)"
            kind = CANDIDATE
        self.report(
            self.end_point(), out.folios[0] if len(out.folios) == 1 else 0, out.memcg, message,
            since_ts_ns=out.first_ts, related=out.seqs[:20], kind=kind,
        )
