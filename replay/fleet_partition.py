"""One trace replayed in folio buckets, with a verdict identical to the whole replay.

For traces too large for one worker: the rows are split into ``k`` buckets by
folio, each bucket is replayed by the reference model and rules on its own
worker, and one *primary* bucket finishes with what the others hand it. The
design, and why it is exact, is docs/fleet.md; in short:

* **Routing.** Rows of the folio kinds (:data:`FOLIO_KINDS`) go to the bucket
  of their folio. Folios that the model ties together share a bucket: a
  ``transfer``/``replace`` row names two folios (old and new) and the rules
  read both states, so both are put in one union-find component; so are a
  device free and the row that ends its call on the same thread (the model's
  device-free pairing, Model.device_free_pairs); and the split-credit folios
  (split heads, and unknown folios of the memcgs a split credits, which take
  that credit) go to the primary. A component's bucket is a hash of its
  smallest folio id.
* **Context.** Thread windows (migrate, device fault), fork and exit rows go to
  every bucket: folio rules read them (R8, R9, R11, R4's window count).
  Counter and sample rows go to the primary only; rows no rule and no model
  transition reads (faults, drop windows, page migrations) go nowhere, except
  a row that ends a device free's call, which goes to that free's bucket.
  The report counts kinds and drop windows over the whole table.
* **Exchange.** Whatever a rule reads that sums over folios is reduced: at
  each ``usage`` sample every other bucket records its per-memcg ledger
  (charged, live, ...), and the primary adds those figures before R3.usage
  and R14 read them; at each ``migrate_pages`` row the others' charge transfer
  counts are added to the primary's window before R4 compares; the "last
  activity" that groups memory.stat samples is the whole trace's. At the end
  the others hand over their ledgers, the folios still charged, the device
  frees never paired, L1's stream sums, their per-driver figures of folio
  rows (each bucket counts device faults itself: the fault rows are context),
  their coverage and findings; the primary then runs every rule's end-of-trace check (R4, R6, R10, R3.pgpg,
  R13, R3.usage, R14, L1) once, on the merged state.

Folio rules run where their folio is; counter and sample rules run in the
primary, which holds all their rows. Nothing is re-derived: the same rules
run on the same model, the exchange only puts the others' figures where the
rule reads them.

Limits: the driver reads the whole trace once (the reader's integrity checks
and the routing need every row); each worker holds its bucket's rows and
model state. The text of a few messages can differ from the whole replay's
(R3/R6 "live pages would be N" name the bucket's own live count) and R10's
``related_seqs`` (the first 20 folios' seqs) may list other folios when more
than 20 are outstanding in one memcg; verdict, findings (rule, seq, folio,
memcg, kind, inconclusive), ledger rows, held rows, coverage and the
per-driver figures are the whole replay's. A bucket with a giant component (one folio id reused by
every migration) gets that component whole: exact, not balanced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chargetrace.traces import Trace, TraceMeta

from .automaton import Automaton, RuleContext
from .config import ReplayConfig
from .drivers import device_drivers
from .engine import device_folios, iter_events, lost_windows, mark_inconclusive, missed_windows
from .eras import EraProfile, select_era
from .findings import Finding
from .model import NOT_IN_CALL, SAMPLE_KINDS, DeviceFreePair, FolioState, Model
from .report import Report, build_report
from .rules import ALL_RULES
from .rules.ledger import LedgerAgreement

__all__ = ["replay_partitioned", "plan_buckets", "primary_kinds", "BucketPlan", "FOLIO_KINDS", "CONTEXT_KINDS"]

#: Rows that name folios the model keeps state for (routed by folio).
FOLIO_KINDS = frozenset({"charge", "uncharge", "transfer", "replace", "device_free", "split", "lru_insert"})
#: Rows whose model state folio rules read: every bucket gets them.
CONTEXT_KINDS = frozenset({"migrate_setup", "migrate_pages", "migrate_finalize", "device_fault",
                           "device_fault_done", "fork", "exit"})
#: MemcgLedger fields that add up over buckets (each folio's charges are in one bucket).
ADDITIVE = ("charged", "force_charged", "uncharged", "pre_trace_uncharged", "transferred_in", "transferred_out",
            "live", "split_tails", "split_extra_folios")
PRIMARY = 0
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: consecutive ids spread over buckets


@dataclass
class BucketPlan:
    """Which rows each bucket replays (row positions, in seq order)."""

    buckets: int
    rows: list[np.ndarray]
    #: Folios in multi-folio components (the rest are hashed alone).
    components: int = 0
    largest_component: int = 0


@dataclass
class _Global:
    """What every bucket needs to know of the whole trace."""

    meta: TraceMeta
    era: EraProfile
    device_folios: frozenset[int]
    device_drivers: dict[int, int]  # device folio -> pgmap_ops id (replay/drivers.py)
    first_ts: int
    last_seq: int
    last_ts: int
    #: sample row seq -> seq of the last non-sample row before it (whole trace)
    last_activity: dict[int, int]


@dataclass
class _BucketOut:
    """What a non-primary bucket hands to the primary."""

    findings: list[Finding] = field(default_factory=list)
    coverage: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    ledgers: dict[int, dict[str, int]] = field(default_factory=dict)
    snapshots: dict[int, dict[int, dict[str, int]]] = field(default_factory=dict)
    transfers: dict[int, int] = field(default_factory=dict)
    charged: dict[int, FolioState] = field(default_factory=dict)
    unpaired: list[DeviceFreePair] = field(default_factory=list)
    stream: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)
    drivers: dict[str, dict[int, int]] = field(default_factory=dict)  # DriverTally.folio_figures


# ------------------------------------------------------------------ routing
class _Components:
    """Union-find over folio ids (path halving)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest id represents


def _kinds(table: pa.Table) -> tuple[np.ndarray, list[str]]:
    enc = pc.dictionary_encode(table.column("kind").cast(pa.string()).combine_chunks())
    return enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist()


def _mask(codes: np.ndarray, words: list[str], kinds: frozenset[str]) -> np.ndarray:
    return np.isin(codes, [i for i, w in enumerate(words) if w in kinds])


def plan_buckets(table: pa.Table, buckets: int, read: frozenset[str] | None = None) -> BucketPlan:
    """Route every row to the bucket(s) that replay it (see the module doc).

    ``read``: the folio-less kinds the primary must see (the model's and the
    active rules'); None = all. Rows of other kinds (faults, page migrations,
    drop windows, where no rule and no model transition reads them) go only
    where they end a device free's call; the report counts kinds and drop
    windows over the whole table."""
    codes, words = _kinds(table)
    folio = table.column("folio").to_numpy()
    folio_new = table.column("folio_new").to_numpy()
    memcg = table.column("memcg").to_numpy()
    memcg_new = table.column("memcg_new").to_numpy()
    tid = table.column("tid").to_numpy()
    is_folio = _mask(codes, words, FOLIO_KINDS)
    comps = _Components()
    primary_folios: set[int] = set()

    # transfer / replace: old and new folio in one component
    pairs = np.flatnonzero(_mask(codes, words, frozenset({"transfer", "replace"})) & (folio != 0) & (folio_new != 0))
    for a, b in zip(folio[pairs].tolist(), folio_new[pairs].tolist()):
        comps.union(a, b)

    # A device free and the row that ends its call on the thread (Model.apply's pairing).
    in_call = np.flatnonzero(~_mask(codes, words, NOT_IN_CALL))
    order = in_call[np.lexsort((in_call, tid[in_call]))]
    next_row = np.full(table.num_rows, -1, dtype=np.int64)
    same = tid[order[1:]] == tid[order[:-1]]
    next_row[order[:-1][same]] = order[1:][same]
    frees = np.flatnonzero(_mask(codes, words, frozenset({"device_free"})) & (memcg != 0))
    enders: list[tuple[int, int]] = []  # (free row, ending row of a folio-less kind)
    for p in frees.tolist():
        n = int(next_row[p])
        if n < 0:
            continue
        if is_folio[n]:
            named = [f for f in (int(folio[n]), int(folio_new[n])) if f]
            if not folio[p] or not named:
                primary_folios.update(named + [int(folio[p])] if folio[p] else named)  # one of them is the primary's
            for f in named:
                if folio[p]:
                    comps.union(int(folio[p]), f)
        else:
            enders.append((p, n))

    # Split credit (Model.split_tails): taken by unknown folios of the memcg the split head is charged to.
    splits = np.flatnonzero(_mask(codes, words, frozenset({"split"})) & (folio != 0))
    if splits.size:
        heads = np.unique(folio[splits])
        primary_folios.update(heads.tolist())
        names = np.isin(folio, heads) | np.isin(folio_new, heads)
        credited = np.unique(np.concatenate([memcg[names & is_folio], memcg_new[names & is_folio]]))
        credited = credited[credited != 0]
        takers = np.flatnonzero(_mask(codes, words, frozenset({"uncharge", "transfer", "replace"}))
                                & np.isin(memcg, credited) & (folio != 0))
        primary_folios.update(np.unique(folio[takers]).tolist())

    # Representative (smallest folio id of its component) of every folio row.
    members = np.array(sorted(comps.parent), dtype=np.uint64)
    reps = np.array([comps.find(int(m)) for m in members.tolist()], dtype=np.uint64)
    primary_reps = np.array(sorted({comps.find(f) for f in primary_folios}), dtype=np.uint64)
    key = np.where(folio != 0, folio, folio_new)
    rep = key.copy()
    if members.size:
        at = np.clip(np.searchsorted(members, key), 0, members.size - 1)
        hit = members[at] == key
        rep[hit] = reps[at[hit]]
    bucket = ((rep * _MIX) >> np.uint64(40)) % np.uint64(buckets)
    bucket = bucket.astype(np.int64)
    bucket[np.isin(rep, primary_reps) | (key == 0)] = PRIMARY
    bucket[~is_folio] = -1

    context = _mask(codes, words, CONTEXT_KINDS)
    usage = _mask(codes, words, frozenset({"usage"}))
    rows = []
    extra: dict[int, list[int]] = defaultdict(list)
    for p, n in enders:
        extra[int(bucket[p])].append(n)
    needed = ~is_folio if read is None else _mask(codes, words, read | CONTEXT_KINDS | SAMPLE_KINDS)
    for b in range(buckets):
        mine = (bucket == b) | context | usage
        if b == PRIMARY:
            mine |= needed & ~is_folio
        picked = np.flatnonzero(mine)
        if extra.get(b):
            picked = np.union1d(picked, np.array(extra[b], dtype=np.int64))
        rows.append(picked)
    sizes = defaultdict(int)
    for r in reps.tolist():
        sizes[r] += 1
    return BucketPlan(buckets, rows, len(members), max(sizes.values(), default=0))


# ------------------------------------------------------------------ buckets
def _context(g: _Global) -> tuple[Model, Automaton]:
    model = Model(g.era, g.device_folios, g.meta.page_size, g.device_drivers)
    model.first_ts = g.first_ts  # the whole trace's first event (findings' since_ts_ns)
    return model, Automaton(RuleContext(model, g.meta, g.era), ALL_RULES)


def _ledger_figures(model: Model, every: bool = False) -> dict[int, dict[str, int]]:
    """Per-memcg additive figures (non-zero ones only, unless ``every``: the
    end state, where a ledger's mere existence makes a report row)."""
    return {m: {f: getattr(led, f) for f in ADDITIVE} for m, led in model.memcgs.items()
            if every or any(getattr(led, f) for f in ADDITIVE)}


def _ledger_rule(automaton: Automaton) -> LedgerAgreement | None:
    return next((r for r in automaton.active if isinstance(r, LedgerAgreement)), None)


def _replay_other(table: pa.Table, g: _Global) -> _BucketOut:
    """A non-primary bucket: folio rows through the rules, context rows into the model only."""
    model, automaton = _context(g)
    dispatch, out = automaton.dispatch, _BucketOut()
    for ev in iter_events(table):
        if ev.kind in FOLIO_KINDS:
            for handler in dispatch.get(ev.kind, ()):
                handler(ev)
            model.apply(ev)
        elif ev.kind == "usage":
            out.snapshots[ev.seq] = _ledger_figures(model)  # an exchange point only
        else:
            if ev.kind == "migrate_pages":
                window = model.migrate_windows.get(ev.tid)
                if window is not None and window.transfers:
                    out.transfers[ev.seq] = window.transfers
            model.apply(ev)
    out.findings = automaton.ctx.findings
    out.coverage = {r.id: (r.checked, r.substance, r.pages) for r in automaton.rules}
    out.ledgers = _ledger_figures(model, every=True)
    out.charged = {f: s for f, s in model.folios.items() if s.memcg}
    out.unpaired = model.unpaired_device_frees()
    out.drivers = model.drivers.folio_figures()
    ledger = _ledger_rule(automaton)
    out.stream = {k: list(v) for k, v in ledger.stream.items()} if ledger is not None else {}
    return out


def _add(model: Model, figures: dict[int, dict[str, int]], sign: int) -> None:
    for memcg, values in figures.items():
        led = model.ledger(memcg)
        for name, value in values.items():
            setattr(led, name, getattr(led, name) + sign * value)


def _sum_snapshots(outs: list[_BucketOut], seq: int) -> dict[int, dict[str, int]]:
    total: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ADDITIVE, 0))
    for out in outs:
        for memcg, values in out.snapshots.get(seq, {}).items():
            for name, value in values.items():
                total[memcg][name] += value
    return dict(total)


def _replay_primary(table: pa.Table, g: _Global, outs: list[_BucketOut]) -> Automaton:
    model, automaton = _context(g)
    dispatch = automaton.dispatch
    transfers: dict[int, int] = defaultdict(int)
    for out in outs:
        for seq, n in out.transfers.items():
            transfers[seq] += n
    for ev in iter_events(table):
        others = None
        if ev.kind in SAMPLE_KINDS:
            model.last_activity_seq = g.last_activity[ev.seq]
            if ev.kind == "usage":
                others = _sum_snapshots(outs, ev.seq)
                _add(model, others, +1)
        elif ev.kind == "migrate_pages" and transfers.get(ev.seq):
            window = model.migrate_windows.get(ev.tid)
            if window is not None:
                window.transfers += transfers[ev.seq]
        for handler in dispatch.get(ev.kind, ()):
            handler(ev)
        model.apply(ev)
        if others:
            _add(model, others, -1)
    _merge_end(automaton, g, outs)
    automaton.finish()
    return automaton


def _merge_end(automaton: Automaton, g: _Global, outs: list[_BucketOut]) -> None:
    """The others' end state into the primary, before the end-of-trace checks."""
    model, ctx = automaton.ctx.model, automaton.ctx
    by_id = {r.id: r for r in automaton.rules}
    ledger = _ledger_rule(automaton)
    for out in outs:
        _add(model, out.ledgers, +1)
        model.folios.update(out.charged)
        model.device_free_pairs.extend(out.unpaired)
        model.drivers.add(out.drivers)
        ctx.findings.extend(out.findings)
        for rule_id, (checked, substance, pages) in out.coverage.items():
            rule = by_id[rule_id]
            rule.checked, rule.substance, rule.pages = (rule.checked + checked, rule.substance + substance,
                                                        rule.pages + pages)
        if ledger is not None:
            for key, (events, pages) in out.stream.items():
                acc = ledger.stream[key]
                acc[0] += events
                acc[1] += pages
    model.last_seq, model.last_ts = g.last_seq, g.last_ts  # end-of-trace findings sit at the trace's end


def _global(trace: Trace, config: ReplayConfig) -> _Global:
    table = trace.table
    seq = table.column("seq").to_numpy().astype(np.int64)
    codes, words = _kinds(table)
    sample = _mask(codes, words, SAMPLE_KINDS)
    activity = np.maximum.accumulate(np.where(sample, -1, seq)) if seq.size else seq
    # The last non-sample row strictly before each sample row (Model.last_activity_seq).
    last = {int(s): int(a) for s, a in zip(seq[sample].tolist(), activity[sample].tolist())}
    ts = table.column("ts_ns")
    return _Global(trace.meta, select_era(trace.meta, config.era), device_folios(table), device_drivers(table),
                   int(ts[0].as_py()) if table.num_rows else -1,
                   int(seq[-1]) if seq.size else -1, int(ts[-1].as_py()) if table.num_rows else 0, last)


def primary_kinds(trace: Trace, config: ReplayConfig | None = None) -> frozenset[str]:
    """The folio-less kinds the primary replays: what its model's counters and
    samples need, and every kind an active rule handles (L1 counts the ledger's)."""
    return frozenset(_context(_global(trace, config or ReplayConfig()))[1].dispatch) | {"memcg_stat"}


def _other_star(args: tuple[pa.Table, _Global]) -> _BucketOut:
    return _replay_other(*args)


def _tables(table: pa.Table, plan: BucketPlan) -> Iterator[pa.Table]:
    for rows in plan.rows:
        yield table.take(pa.array(rows))


def replay_partitioned(trace: Trace, buckets: int, config: ReplayConfig | None = None, *,
                       jobs: int = 1) -> Report:
    """Replay ``trace`` in ``buckets`` folio buckets on ``jobs`` processes; the
    report's verdict, findings, ledger, held rows and coverage are those of
    :func:`replay.replay` (module doc, docs/fleet.md)."""
    config = config or ReplayConfig()
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    g = _global(trace, config)
    plan = plan_buckets(trace.table, buckets, primary_kinds(trace, config))
    tables = list(_tables(trace.table, plan))
    work = [(t, g) for t in tables[1:]]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
            outs = list(pool.map(_other_star, work))
    else:
        outs = [_other_star(w) for w in work]
    automaton = _replay_primary(tables[PRIMARY], g, outs)
    windows = lost_windows(trace.table) + missed_windows(trace.meta)
    mark_inconclusive(automaton.ctx.findings, windows)
    # The report counts kinds and events over the whole trace: its kind column is all it reads of the rows.
    whole = Trace(trace.path, trace.table.select(["kind"]), trace.meta, trace.integrity)
    return build_report(whole, automaton, windows)
