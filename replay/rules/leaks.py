"""R10: after munmap/exit every charge the trace made is released."""

from __future__ import annotations

from ..automaton import Rule
from ..findings import CANDIDATE, VIOLATION

__all__ = ["ReleasedAtExit"]


class ReleasedAtExit(Rule):
    id = "R10"
    title = "charges are released at munmap/exit (leak check at end of trace)"
    # exit_mmap() zaps every anon folio, RAM or device-private (mm/mmap.c,
    # zap_nonpresent_ptes() in mm/memory.c); the last put uncharges.
    source = "mm/mmap.c exit_mmap(); mm/memory.c zap_nonpresent_ptes()"
    handles = ()
    needs = ("charge", "uncharge")

    def finish(self) -> None:
        model = self.model
        # Every charge a closed memcg took in the trace is checked for release.
        for memcg, led in model.memcgs.items():
            if self.ctx.closed(memcg):
                self.checked += led.charged + led.force_charged
        for folio, state in model.folios.items():
            if not state.memcg or not state.in_trace or state.migrated_seq >= 0:
                continue  # uncharged, charged before the trace, or R4's
            if self.ctx.closed(state.memcg):
                kind, why = VIOLATION, "its memcg's tasks exited and the memcg was drained"
            elif state.pid in model.exited_pids:
                kind, why = CANDIDATE, f"process {state.pid} exited (page cache may stay charged)"
            else:
                continue
            self.report(
                self.end_point(), folio, state.memcg,
                f"still charged to memcg {state.memcg} at the end of the trace ({state.via} at seq "
                f"{state.seq} by pid {state.pid}); {why}",
                since_ts_ns=state.ts_ns, related=[state.seq], kind=kind,
            )
        for memcg, led in model.memcgs.items():
            if led.split_tails and self.ctx.closed(memcg):
                self.report(
                    self.end_point(), 0, memcg,
                    f"{led.split_tails} page(s) of large folios split in the trace are still charged to "
                    f"memcg {memcg} at the end; its tasks exited and it was drained",
                    since_ts_ns=model.first_ts,
                )
