"""The reference accounting model: per-folio and per-memcg charge state.

The model applies each event's effect as the kernel of the trace's era would
(mm/memcontrol.c charge/uncharge/migrate, mm/memremap.c device frees; the era
profiles in replay/eras.py). Rules (replay/rules/) look at the state *before* the
model applies an event and report where the trace and the model disagree; the
model then follows the kernel's own view (the memcg read from the folio) so
one fault is reported once, not as a cascade.

Folio states: absent from :attr:`Model.folios` = unknown (not seen yet; it may
have been charged before the recording started), or a :class:`FolioState`
whose ``memcg`` is 0 (uncharged) or the charged memcg.

The model is the one owner of the accounting logic the rules read: the
device-free -> uncharge pairing (:attr:`Model.device_free_pairs`), the
per-memcg counter sums and memory.stat samples, and what each memcg holds
(:meth:`Model.held`, units from replay/units.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .drivers import DriverTally
from .eras import FORCE, EraProfile
from .events import Event
from .units import Held, held_from_counters, held_from_memstat

__all__ = ["FolioState", "MemcgLedger", "Window", "DeviceFreePair", "Model", "NOT_IN_CALL", "SAMPLE_KINDS"]

#: How a folio got its charge (or lost it).
VIA_CHARGE = "charge"
VIA_TRANSFER = "transfer"  # moved here by mem_cgroup_migrate (>= 6.7)
VIA_FORCE = "force"  # force-charged by mem_cgroup_migrate (<= 6.6) or replace
VIA_PRE_TRACE = "pre-trace"  # charged before the recording began
VIA_UNCHARGE = "uncharge"
VIA_TRANSFERRED_AWAY = "transferred-away"  # the old folio of a >= 6.7 transfer


@dataclass
class FolioState:
    memcg: int  # 0 = uncharged
    nr: int
    via: str
    seq: int  # event that put the folio in this state
    ts_ns: int
    pid: int = 0  # process whose event charged it
    in_trace: bool = True  # the charge was made inside the trace (counts in `live`)
    #: <= 6.6: this folio was the source of a force-charged migration; its own
    #: charge must still be uncharged when it is freed (R4).
    migrated_seq: int = -1
    #: An uncharged folio (memcg 0): the memcg its charge left, by uncharge or by a >= 6.7 transfer
    #: (0 = none seen). Lets a finding about a later use of the folio name the memcg involved.
    last_memcg: int = 0


@dataclass
class MemcgLedger:
    """Page counts for one memcg, as the model sees them."""

    memcg: int
    charged: int = 0  # pages charged in the trace (charge events)
    force_charged: int = 0  # pages force-charged by migration/replace (<= 6.6)
    uncharged: int = 0  # pages uncharged whose charge the trace saw
    pre_trace_uncharged: int = 0  # pages uncharged that were charged before the trace
    transferred_in: int = 0
    transferred_out: int = 0
    #: live = charges seen in the trace and still held. Never clamped: a
    #: negative value is an underflow the report shows.
    live: int = 0
    #: Pages charged as parts of split large folios that have not been seen as
    #: folios of their own yet: the split copies memcg_data to every new folio
    #: (split_page_memcg(), mm/memcontrol.c) without a charge event.
    split_tails: int = 0
    #: Folios more than were charged that a split in the trace will uncharge:
    #: each split of an n-page folio into pieces of v pages adds n/v - 1
    #: (PGPGOUT counts them, PGPGIN counted the folio once; replay/units.py).
    split_extra_folios: int = 0
    counters: Counter = field(default_factory=Counter)  # memcg_stat item -> sum
    usage: list[tuple[int, int, str, int]] = field(default_factory=list)  # (seq, ts, item, bytes)
    #: memory.stat key -> last sampled value (memstat rows), and the seq of the sample
    memstat: dict[str, int] = field(default_factory=dict)
    memstat_seq: int = -1
    memstat_after: int = -2  #: Model.last_activity_seq when that sample set was taken


@dataclass
class DeviceFreePair:
    """A device-private free with a memcg, and the uncharge that completed it in
    the same call (free_zone_device_folio(), mm/memremap.c) — or the event on
    the same thread that showed none came (``uncharge_seq`` = -1)."""

    free: Event
    uncharge_seq: int = -1
    ended_by_seq: int = -1  # next in-call event on the thread (-1: end of trace)
    ended_by_kind: str = ""


@dataclass
class Window:
    """An open migrate or device-fault window on one thread."""

    seq: int
    ts_ns: int
    item: str = ""
    transfers: int = 0
    pgmap_ops: int = 0  # device fault: the driver's pgmap_ops id (replay/drivers.py)


class Model:
    def __init__(self, era: EraProfile, device_folios: frozenset[int] = frozenset(), page_size: int = 4096,
                 device_drivers: dict[int, int] | None = None) -> None:
        self.era = era
        self.page_size = page_size or 4096
        self.folios: dict[int, FolioState] = {}
        self.memcgs: dict[int, MemcgLedger] = {}
        #: Folios the trace shows to be device-private (seen in a device free).
        self.device_folios = device_folios
        #: Per-driver figures of device memory (replay/drivers.py reads them).
        self.drivers = DriverTally(device_drivers or {})
        self.migrate_windows: dict[int, Window] = {}  # tid -> window
        self.fault_windows: dict[int, Window] = {}  # tid -> window
        self.forked_pids: set[int] = set()
        self.exited_pids: set[int] = set()
        #: tid -> the device free whose uncharge has not been seen yet (R6).
        self.pending_free: dict[int, DeviceFreePair] = {}
        #: Every device free with a memcg, in order, with its pairing (R6 reads it).
        self.device_free_pairs: list[DeviceFreePair] = []
        #: True when the samples come from cgroup v1 files (memory.usage_in_bytes,
        #: v1 memory.stat keys), False for v2, None before any sample.
        self.cgroup_v1: bool | None = None
        #: seq of the last event that is not a recorder sample (usage/memstat):
        #: samples taken with no event in between belong to one sample set.
        self.last_activity_seq = -1
        self.first_ts = -1
        self.last_seq = -1
        self.last_ts = 0

    # -- helpers for rules ------------------------------------------------------
    def ledger(self, memcg: int) -> MemcgLedger:
        led = self.memcgs.get(memcg)
        if led is None:
            led = self.memcgs[memcg] = MemcgLedger(memcg)
        return led

    # -- transitions ------------------------------------------------------------
    def apply(self, ev: Event) -> None:
        if self.first_ts < 0:
            self.first_ts = ev.ts_ns
        self.last_seq, self.last_ts = ev.seq, ev.ts_ns
        if ev.kind not in SAMPLE_KINDS:
            self.last_activity_seq = ev.seq
        pair = self.pending_free.get(ev.tid)
        if pair is not None and ev.kind not in NOT_IN_CALL:
            del self.pending_free[ev.tid]
            if ev.kind == "uncharge" and ev.folio == pair.free.folio:
                pair.uncharge_seq = ev.seq
            else:
                pair.ended_by_seq, pair.ended_by_kind = ev.seq, ev.kind
                self.free_without_uncharge(pair.free)
        handler = _APPLY.get(ev.kind)
        if handler is not None:
            handler(self, ev)

    def unpaired_device_frees(self) -> list[DeviceFreePair]:
        """Device frees of a charged folio with no uncharge in the same call
        (including those still open at the end of the trace)."""
        return [p for p in self.device_free_pairs if p.uncharge_seq < 0]

    def held(self, memcg: int, observed_from_creation: bool) -> Held | None:
        """What ``memcg`` holds, in pages by kind: the last memory.stat sample, or
        else the page-unit counter sums when they are absolute (the memcg was
        observed from its creation); None when the trace cannot say."""
        led = self.memcgs.get(memcg)
        if led is None:
            return None
        held = held_from_memstat(led.memstat, self.page_size, bool(self.cgroup_v1))
        if held is not None:
            return held
        if observed_from_creation and led.counters:
            return held_from_counters(led.counters)
        return None

    def split_credit(self, memcg: int, nr: int) -> bool:
        """Whether an unknown folio of ``nr`` pages charged to ``memcg`` can be
        a part of a large folio split in the trace (the model then knows it)."""
        led = self.memcgs.get(memcg)
        return led is not None and led.split_tails >= nr

    def _take_split_credit(self, memcg: int, nr: int) -> bool:
        if not self.split_credit(memcg, nr):
            return False
        self.ledger(memcg).split_tails -= nr
        return True

    def _drop_charge(self, state: FolioState) -> None:
        """Release the model's charge for ``state`` from its memcg."""
        if not state.memcg:
            return
        led = self.ledger(state.memcg)
        if state.in_trace:
            led.live -= state.nr
            led.uncharged += state.nr
        else:
            led.pre_trace_uncharged += state.nr

    def _apply_charge(self, ev: Event) -> None:
        if ev.ret != 0 or not ev.memcg:
            return  # R2: a failed charge has no effect
        prior = self.folios.get(ev.folio)
        if prior is not None and prior.memcg:
            self._drop_charge(prior)  # R1 reported it; keep one charge
        nr = ev.nr_pages or 1
        led = self.ledger(ev.memcg)
        led.charged += nr
        led.live += nr
        self.folios[ev.folio] = FolioState(ev.memcg, nr, VIA_CHARGE, ev.seq, ev.ts_ns, ev.pid)

    def _apply_uncharge(self, ev: Event) -> None:
        prior = self.folios.get(ev.folio)
        nr = ev.nr_pages or (prior.nr if prior else 1)
        if prior is not None and prior.memcg:
            self._drop_charge(prior)
        elif ev.memcg:
            led = self.ledger(ev.memcg)
            if prior is None and self._take_split_credit(ev.memcg, nr):
                led.live -= nr  # a part of a large folio split in the trace
                led.uncharged += nr
            elif prior is None:
                led.pre_trace_uncharged += nr  # charged before the trace began
            else:
                led.live -= nr  # uncharged twice: rules report it; never clamp
                led.uncharged += nr
        self.folios[ev.folio] = FolioState(0, nr, VIA_UNCHARGE, ev.seq, ev.ts_ns, ev.pid,
                                           last_memcg=prior.memcg if prior is not None and prior.memcg else ev.memcg)

    def _apply_transfer(self, ev: Event) -> None:
        window = self.migrate_windows.get(ev.tid)
        if window is not None:
            window.transfers += 1
        fault = self.fault_windows.get(ev.tid)
        known = self.folios.get(ev.folio)
        self.drivers.transfer(ev, ev.nr_pages or (known.nr if known else 1),
                              fault.pgmap_ops if fault is not None else None, self.device_folios)
        if self.era.migrate == FORCE:
            self._force_charge(ev)
            return
        if not ev.memcg:
            return  # the kernel returns early when old is not charged
        old = self.folios.get(ev.folio)
        nr = ev.nr_pages or (old.nr if old else 1)
        if old is not None and old.memcg:
            in_trace = old.in_trace
        else:
            in_trace = old is None and self._take_split_credit(ev.memcg, nr)
        target = ev.memcg_new or ev.memcg
        if old is not None and old.memcg:
            if old.memcg != target:  # R5 reported it; follow the kernel
                self._drop_charge(old)
                in_trace = False
        led = self.ledger(target)
        led.transferred_in += nr
        self.ledger(ev.memcg).transferred_out += nr
        self.folios[ev.folio] = FolioState(0, nr, VIA_TRANSFERRED_AWAY, ev.seq, ev.ts_ns, ev.pid, last_memcg=ev.memcg)
        self.folios[ev.folio_new] = FolioState(
            target, nr, VIA_TRANSFER, ev.seq, ev.ts_ns, old.pid if old else ev.pid, in_trace
        )

    def _force_charge(self, ev: Event) -> None:
        """<= 6.6 mem_cgroup_migrate, and mem_cgroup_replace_folio: charge new,
        leave old charged until it is freed."""
        new = self.folios.get(ev.folio_new)
        if new is not None and new.memcg:
            return  # the kernel returns early when new is already charged
        memcg = ev.memcg_new or ev.memcg
        if not memcg:
            return
        old = self.folios.get(ev.folio)
        nr = ev.nr_pages or (old.nr if old else 1)
        led = self.ledger(memcg)
        led.force_charged += nr
        led.live += nr
        if old is None:
            split_part = bool(ev.memcg) and self._take_split_credit(ev.memcg, nr)
            old = self.folios[ev.folio] = FolioState(
                ev.memcg, nr, VIA_PRE_TRACE, ev.seq, ev.ts_ns, ev.pid, in_trace=split_part
            )
        if old.memcg:
            old.migrated_seq = ev.seq
        self.folios[ev.folio_new] = FolioState(memcg, nr, VIA_FORCE, ev.seq, ev.ts_ns, old.pid)

    def _apply_device_free(self, ev: Event) -> None:
        self.drivers.device_free(ev)
        if ev.memcg:
            # The free path uncharges next, on the same thread (free_zone_device_page,
            # mm/memremap.c); the uncharge row settles it (R6).
            pair = self.pending_free[ev.tid] = DeviceFreePair(ev)
            self.device_free_pairs.append(pair)
            return
        state = self.folios.get(ev.folio)
        if state is not None and state.memcg:
            self._drop_charge(state)  # the kernel found it uncharged; follow it
            self.folios[ev.folio] = FolioState(0, state.nr, VIA_UNCHARGE, ev.seq, ev.ts_ns, ev.pid)

    def free_without_uncharge(self, free: Event) -> None:
        """A device free whose uncharge never came: the kernel would have
        uncharged it, so the model does (the rule has reported the gap)."""
        state = self.folios.get(free.folio)
        if state is not None and state.memcg:
            self._drop_charge(state)
        elif state is None:
            self.ledger(free.memcg).pre_trace_uncharged += free.nr_pages or 1
        self.folios[free.folio] = FolioState(0, free.nr_pages or 1, VIA_UNCHARGE, free.seq, free.ts_ns, free.pid)

    def _apply_split(self, ev: Event) -> None:
        """A large folio of ``nr_pages`` split into folios of ``value`` pages."""
        state = self.folios.get(ev.folio)
        piece = ev.value if ev.value > 0 else 1
        memcg = ev.memcg or (state.memcg if state is not None else 0)
        if memcg and ev.nr_pages > piece:
            self.ledger(memcg).split_extra_folios += ev.nr_pages // piece - 1
        if state is None or not state.memcg or piece >= state.nr:
            return
        if state.in_trace:
            self.ledger(state.memcg).split_tails += state.nr - piece
        state.nr = piece

    def _apply_memcg_stat(self, ev: Event) -> None:
        self.ledger(ev.memcg).counters[ev.item] += ev.value

    def _apply_memstat(self, ev: Event) -> None:
        led = self.ledger(ev.memcg)
        if led.memstat_after != self.last_activity_seq:
            led.memstat = {}  # a new sample set: forget the keys of the last one
        led.memstat[ev.item] = ev.value
        led.memstat_seq = ev.seq
        led.memstat_after = self.last_activity_seq
        if ev.item in _V1_STAT_KEYS:
            self.cgroup_v1 = True
        elif ev.item in _V2_STAT_KEYS:
            self.cgroup_v1 = False

    def _apply_usage(self, ev: Event) -> None:
        self.ledger(ev.memcg).usage.append((ev.seq, ev.ts_ns, ev.item, ev.value))
        if ev.item in _V1_FILES:
            self.cgroup_v1 = True
        elif ev.item in _V2_FILES:
            self.cgroup_v1 = False

    def _apply_migrate_setup(self, ev: Event) -> None:
        self.migrate_windows[ev.tid] = Window(ev.seq, ev.ts_ns, ev.item)

    def _apply_migrate_pages(self, ev: Event) -> None:
        window = self.migrate_windows.get(ev.tid)
        if window is not None:
            window.transfers = 0

    def _apply_migrate_finalize(self, ev: Event) -> None:
        self.migrate_windows.pop(ev.tid, None)

    def _apply_device_fault(self, ev: Event) -> None:
        self.fault_windows[ev.tid] = Window(ev.seq, ev.ts_ns, ev.item, pgmap_ops=ev.pgmap_ops)
        self.drivers.device_fault(ev)

    def _apply_device_fault_done(self, ev: Event) -> None:
        self.fault_windows.pop(ev.tid, None)

    def _apply_fork(self, ev: Event) -> None:
        self.forked_pids.add(ev.pid)
        self.forked_pids.add(ev.value)

    def _apply_exit(self, ev: Event) -> None:
        if ev.value == 1 or ev.pid == ev.tid:
            self.exited_pids.add(ev.pid)
        self.migrate_windows.pop(ev.tid, None)
        self.fault_windows.pop(ev.tid, None)


#: Kinds that can arrive on a thread from other contexts (interrupts, the
#: recorder's samples), so they do not end a device-free call. Every other
#: kind on the freeing thread does: free_zone_device_folio() uncharges before
#: anything else can happen on it.
_V1_FILES = frozenset({"memory.usage_in_bytes", "memory.kmem.usage_in_bytes"})
_V2_FILES = frozenset({"memory.current"})
_V1_STAT_KEYS = frozenset({"rss", "cache", "rss_huge", "mapped_file", "total_rss", "total_cache", "kmem.usage"})
_V2_STAT_KEYS = frozenset({"anon", "file", "kernel", "sock", "slab"})

#: Rows the recorder writes from its own samples, not from kernel events.
SAMPLE_KINDS = frozenset({"usage", "memstat"})

NOT_IN_CALL = frozenset({"memcg_stat", "usage", "memstat", "lost", "page_migration"})

_APPLY = {
    "device_free": Model._apply_device_free,
    "split": Model._apply_split,
    "charge": Model._apply_charge,
    "uncharge": Model._apply_uncharge,
    "transfer": Model._apply_transfer,
    "replace": Model._force_charge,
    "memcg_stat": Model._apply_memcg_stat,
    "usage": Model._apply_usage,
    "memstat": Model._apply_memstat,
    "migrate_setup": Model._apply_migrate_setup,
    "migrate_pages": Model._apply_migrate_pages,
    "migrate_finalize": Model._apply_migrate_finalize,
    "device_fault": Model._apply_device_fault,
    "device_fault_done": Model._apply_device_fault_done,
    "fork": Model._apply_fork,
    "exit": Model._apply_exit,
}
