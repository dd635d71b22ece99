"""Feed a trace to the compiled kernel, batch by batch, and finish with the
reference code.

Two passes over the file(s). The first reads only ``kind`` (and ``folio`` and
``pgmap_ops`` of the row groups holding device frees) for the device-private
folio set, each device folio's driver and the kind counts (alloc.py). The second reads the columns the rules use with
``ParquetFile.iter_batches`` (traces/reader.py :class:`TraceStream`), maps
``kind`` and ``item`` to small integer codes and hands each batch to
:func:`kernel.run`. Memory is one batch of columns plus the live state.

What runs in Python is per trace, per memcg or per recorder sample, never per
kernel event or per folio seen: the metadata's scope and ledger (RuleContext,
the L1 rule), the integrity checks (traces/integrity.py RowChecker, per
batch, vectorised), the ``usage``/``memstat`` sample rows (a few per memcg and
phase: the reference Model and rules apply them, on a Model whose per-memcg
ledgers are copied from the arrays first), and every rule's ``finish()`` on
that same Model, holding the folios still charged at the end (live state)
and the per-driver sums (drivers.py), from which ``report.drivers`` is made
as for the reference engine.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa

from chargetrace.traces import stream_trace
from chargetrace.traces.arrays import numpy_of
from chargetrace.traces.integrity import RowChecker

from ..automaton import Automaton, RuleContext
from ..config import ReplayConfig
from ..engine import LostWindow, mark_inconclusive, missed_windows
from ..eras import FORCE, select_era
from ..events import Event
from ..model import DeviceFreePair, FolioState, MemcgLedger, Model
from ..report import Report, build_report
from ..rules import ALL_RULES
from .alloc import grow_rows, make_room, new_state, prepass
from .drivers import tally_of
from .kernel import flush_pending, run
from .layout import (
    C_ACTIVE, C_ATT_CHARGE, C_ATT_SPLIT, C_ATT_TRANSFER, C_EXITED, C_FORCE, C_REFCOUNT, C_RING_CAP, C_SETTLED, F_IN,
    F_MEMCG, F_MIG, F_NR, F_ORD, F_PID, F_SEQ, F_TS, F_VIA, ITEMS_FIXED, K_LOST, KINDS, M_ANON_ORD, M_ANON_RUN,
    M_ANON_UNDER, M_CHARGED, M_EXISTS, M_FORCE, M_LIVE, M_PG_IN, M_PG_OUT, M_PG_SEEN, M_PG_UNDER, M_PRE, M_SPLIT,
    M_SPLIT_EXTRA, M_TIN, M_TOUT, M_UNCHARGED, NC, P_EXITED, P_FORKED, R3PGPG, R13ANON, S_FFREE, S_FHW, S_FIRST_TS,
    S_FORGOTTEN, S_LAST_ACT, S_LAST_SEQ, S_LAST_TS, S_NFIND, S_NMEMCG, S_NTID, S_NUNP, S_STOP, STOP_ORDER,
    STOP_ROOM, STOP_SAMPLE, U_CPU, U_ENDED_KIND, U_ENDED_SEQ, U_FOLIO, U_MEMCG, U_NR, U_PGMAP, U_PID, U_SEQ, U_TID,
    U_TS, U_VALUE, VIA_NAMES, check_reference,
)
from .results import as_uint64, findings_of
from .state import Events, State

__all__ = ["replay_compiled", "Unsupported", "RING_CAP"]

_COLUMNS = ["seq", "ts_ns", "cpu", "pid", "tid", "kind", "folio", "folio_new", "nr_pages", "memcg", "memcg_new",
            "ret", "item", "value", "span_ns", "pgmap_ops"]
#: Uncharged folio states kept (model.py): 2**20 by default (about 100 MiB at most),
#: CHARGETRACE_FORGET_AFTER to change it.
RING_CAP = 1 << 20


class Unsupported(Exception):
    """The compiled engine cannot replay this trace (the reference engine can)."""


class _Codes:
    """Integer codes of dictionary strings (kind, item), stable over batches."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = list(names)
        self.code = {name: i for i, name in enumerate(self.names)}

    def of(self, array: pa.Array) -> np.ndarray:
        """Codes of a dictionary array's rows."""
        words = array.dictionary.to_pylist()
        lut = np.empty(max(len(words), 1), np.int64)
        for i, word in enumerate(words):
            code = self.code.get(word)
            if code is None:
                code = self.code[word] = len(self.names)
                self.names.append(word)
            lut[i] = code
        return lut[numpy_of(array.indices)]


def _np(table: pa.Table, name: str) -> np.ndarray:
    """A primitive column of one batch as numpy without copying (the copying
    path of ``to_numpy`` imports pandas)."""
    return numpy_of(table.column(name))


def _i64(table: pa.Table, name: str) -> np.ndarray:
    a = _np(table, name)
    return a.view(np.int64) if a.dtype == np.uint64 else a


def _config(ctx: RuleContext, automaton: Automaton, era, ring: int) -> np.ndarray:
    cfg = np.zeros(NC, np.int64)
    cfg[C_FORCE] = era.migrate == FORCE
    cfg[C_REFCOUNT] = era.device_free_refcount
    cfg[C_ATT_CHARGE] = ctx.attached("charge")
    cfg[C_ATT_TRANSFER] = ctx.attached("transfer")
    cfg[C_ATT_SPLIT] = ctx.attached("split")
    cfg[C_EXITED] = ctx.scope.exited
    cfg[C_SETTLED] = ctx.scope.settled
    cfg[C_RING_CAP] = ring
    for index, rule in enumerate(automaton.rules):
        cfg[C_ACTIVE + index] = rule in automaton.active
    return cfg


class _Run:
    """One compiled replay: the arrays, the reference objects they are copied
    into, and the codes of this trace's strings."""

    def __init__(self, stream, config: ReplayConfig) -> None:
        self.stream = stream
        meta = stream.meta
        self.era = select_era(meta, config.era)
        self.model = Model(self.era, frozenset(), meta.page_size)
        self.ctx = RuleContext(self.model, meta, self.era)
        self.automaton = Automaton(self.ctx, ALL_RULES)
        self.kinds_count, *device_frees = prepass(stream)
        why = check_reference(set(self.kinds_count))
        if why:
            raise Unsupported(why)
        self.kinds = _Codes(KINDS)
        self.items = _Codes(ITEMS_FIXED)
        env = os.environ.get("CHARGETRACE_FORGET_AFTER", "")
        ring = int(env) if env.isdigit() and int(env) > 0 else RING_CAP
        ring = min(ring, max(stream.num_rows, 16))
        cfg = _config(self.ctx, self.automaton, self.era, ring)
        scope = self.ctx.scope
        observed = {m for m in set(scope.parents) | {scope.memcg} if self.ctx.observed_from_creation(m)}
        self.ledger_rule = next((r for r in self.automaton.active if r.id == "L1"), None)
        kl1 = np.zeros(len(KINDS) + 64, np.int64)
        self.st = new_state(cfg, kl1, device_frees, observed, stream.num_rows, ring)
        self.checker = RowChecker(str(stream.path), meta)
        # Probe runs the kernel skipped (drops.missed) first, then the trace's lost rows as met.
        self.windows: list[LostWindow] = missed_windows(meta)
        self.progress = config.progress

    # -- the stream ------------------------------------------------------------------------
    def feed(self) -> None:
        for table in self.stream.batches(_COLUMNS):
            n = table.num_rows
            if not n:
                continue
            kind = self.kinds.of(table.column("kind").combine_chunks())
            item = self.items.of(table.column("item").combine_chunks())
            ev = Events(_i64(table, "seq"), _i64(table, "ts_ns"), _np(table, "cpu"), _np(table, "pid"),
                        _np(table, "tid"), kind, _np(table, "folio"), _np(table, "folio_new"),
                        _np(table, "nr_pages"), _i64(table, "memcg"), _i64(table, "memcg_new"), _np(table, "ret"),
                        item, _np(table, "value"), _i64(table, "span_ns"), _np(table, "pgmap_ops"))
            lost = kind == K_LOST
            self.checker.feed(ev.seq.view(np.uint64), lost, ev.value, ev.ts.view(np.uint64))
            if lost.any():
                self._lost_windows(ev, lost)
            self._grow_codes()
            row = 0
            while row < n:
                row = run(self.st, ev, row, n)
                why = self.st.sc[S_STOP]
                if row >= n:
                    break
                if why == STOP_ROOM:
                    self.st = make_room(self.st, len(self.items.names), self.st.kl1.shape[0])
                elif why == STOP_SAMPLE:
                    row = self._samples(ev, row, n)
                elif why == STOP_ORDER:
                    raise Unsupported("its rows are not in seq order (the reference reader sorts them)")
            if self.progress is not None:
                self.progress(n)

    def _grow_codes(self) -> None:
        st = self.st
        if len(self.kinds.names) > st.kl1.shape[0]:
            self.st = st = st._replace(kl1=grow_rows(st.kl1, 2 * len(self.kinds.names)))
        handles = set(self.ledger_rule.handles) if self.ledger_rule is not None else set()
        for code, name in enumerate(self.kinds.names):
            st.kl1[code] = name in handles
        nitems = len(self.items.names)
        if nitems > st.mcnt.shape[1] or st.kl1.shape[0] > st.l1k.shape[1]:
            self.st = make_room(st, nitems, st.kl1.shape[0])

    def _lost_windows(self, ev: Events, lost: np.ndarray) -> None:
        at = np.flatnonzero(lost).tolist()
        for i in at:
            ts, span = int(ev.ts.view(np.uint64)[i]), int(ev.span.view(np.uint64)[i])
            self.windows.append(LostWindow(int(ev.seq.view(np.uint64)[i]), int(ev.cpu[i]), int(ev.value[i]),
                                           max(0, ts - span), ts))

    def _event(self, ev: Events, i: int) -> Event:
        return Event(int(ev.seq.view(np.uint64)[i]), int(ev.ts.view(np.uint64)[i]), int(ev.cpu[i]), int(ev.pid[i]),
                     int(ev.tid[i]), "", self.kinds.names[ev.kind[i]], "", int(ev.folio[i]), int(ev.folio_new[i]),
                     int(ev.nr[i]), as_uint64(int(ev.memcg[i])), as_uint64(int(ev.memcg_new[i])), 0, int(ev.ret[i]),
                     self.items.names[ev.item[i]], int(ev.value[i]), as_uint64(int(ev.span[i])), int(ev.pgmap[i]))

    def _samples(self, ev: Events, row: int, n: int) -> int:
        """Recorder sample rows from ``row`` on: the reference rules and Model apply
        them, on the Model the arrays are copied into first."""
        self._flush_findings()
        self._sync_model()
        sc, model = self.st.sc, self.model
        dispatch = self.automaton.dispatch
        while row < n and self.kinds.names[ev.kind[row]] in ("usage", "memstat"):
            if ev.seq[row] <= sc[S_LAST_SEQ]:
                raise Unsupported("its rows are not in seq order (the reference reader sorts them)")
            event = self._event(ev, row)
            for handler in dispatch.get(event.kind, ()):
                handler(event)
            model.apply(event)
            sc[S_FIRST_TS], sc[S_LAST_SEQ], sc[S_LAST_TS] = model.first_ts, model.last_seq, model.last_ts
            row += 1
        return row

    # -- arrays -> the reference objects ---------------------------------------------------------
    def _flush_findings(self) -> None:
        st = self.st
        n = int(st.sc[S_NFIND])
        if n:
            self.ctx.findings.extend(findings_of(st.fb[:n].copy(), self.era.name, self.kinds.names,
                                                 self.items.names))
            st.sc[S_NFIND] = 0

    def _sync_model(self) -> None:
        """Model.memcgs and the scalars the Python rules read, from the arrays."""
        st, model = self.st, self.model
        sc = st.sc
        model.first_ts, model.last_seq, model.last_ts = int(sc[S_FIRST_TS]), int(sc[S_LAST_SEQ]), int(sc[S_LAST_TS])
        model.last_activity_seq = int(sc[S_LAST_ACT])
        names = self.items.names
        for r in np.flatnonzero(st.md[: sc[S_NMEMCG], M_EXISTS]).tolist():
            memcg = as_uint64(int(st.mkey[r]))
            led = model.memcgs.get(memcg)
            if led is None:
                led = model.memcgs[memcg] = MemcgLedger(memcg)
            d = st.md[r].tolist()
            (led.charged, led.force_charged, led.uncharged, led.pre_trace_uncharged, led.transferred_in,
             led.transferred_out, led.live, led.split_tails, led.split_extra_folios) = (
                d[M_CHARGED], d[M_FORCE], d[M_UNCHARGED], d[M_PRE], d[M_TIN], d[M_TOUT], d[M_LIVE], d[M_SPLIT],
                d[M_SPLIT_EXTRA])
            rows = st.mrows[r]
            led.counters = Counter({names[i]: int(st.mcnt[r, i]) for i in np.flatnonzero(rows).tolist()})

    def _sync_end(self) -> None:
        """What the rules' finish() reads beyond the ledgers: the folios still
        charged (in first-seen order, as a dict keeps them), the processes, the
        device frees whose uncharge never came, the per-driver figures."""
        st, model = self.st, self.model
        sc = st.sc
        hw = int(sc[S_FHW])
        fd = st.fd[:hw]
        live = np.flatnonzero((fd[:, F_MEMCG] != 0) & _in_map(st, hw))
        live = live[np.argsort(fd[live, F_ORD], kind="stable")]
        # What drivers.driver_rows reads of the model: the tally, and which charged folios are device folios.
        model.drivers, model.device_folios = tally_of(st, st.fkey[live])
        model.folios = {
            int(st.fkey[f]): FolioState(as_uint64(r[F_MEMCG]), r[F_NR], VIA_NAMES[r[F_VIA]], r[F_SEQ], r[F_TS],
                                        r[F_PID], bool(r[F_IN]), r[F_MIG])
            for f, r in zip(live.tolist(), fd[live].tolist())
        }
        pids = st.phk[st.phv >= 0]
        prow = st.phv[st.phv >= 0]
        model.exited_pids = set(pids[st.pd[prow, P_EXITED] != 0].astype(np.int64).tolist())
        model.forked_pids = set(pids[st.pd[prow, P_FORKED] != 0].astype(np.int64).tolist())
        st2 = make_room(st, len(self.items.names), st.kl1.shape[0])
        st2 = st2._replace(ub=grow_rows(st2.ub, int(sc[S_NUNP]) + int(sc[S_NTID]) + 1))
        self.st = st = st2
        flush_pending(st)
        unpaired = st.ub[: st.sc[S_NUNP]]
        unpaired = unpaired[np.argsort(unpaired[:, U_SEQ], kind="stable")]
        names = self.kinds.names
        model.device_free_pairs = [
            DeviceFreePair(Event(as_uint64(u[U_SEQ]), as_uint64(u[U_TS]), u[U_CPU], u[U_PID], u[U_TID], "",
                                 "device_free", "", as_uint64(u[U_FOLIO]), 0, u[U_NR], as_uint64(u[U_MEMCG]), 0, 0,
                                 0, "", u[U_VALUE], 0, as_uint64(u[U_PGMAP])),
                           -1, u[U_ENDED_SEQ], names[u[U_ENDED_KIND]] if u[U_ENDED_SEQ] >= 0 else "")
            for u in unpaired.tolist()
        ]

    def _rule_state(self) -> None:
        """Coverage counted in the loop, and the counter rules' running sums."""
        st = self.st
        for index, rule in enumerate(self.automaton.rules):
            rule.checked += int(st.chk[index])
            rule.substance += int(st.sub[index])
            rule.pages += int(st.pg[index])
        n = int(st.sc[S_NMEMCG])
        md, keys = st.md[:n], [as_uint64(int(k)) for k in st.mkey[:n].tolist()]
        pgpg = self.automaton.rules[R3PGPG]
        for r in np.flatnonzero(md[:, M_PG_SEEN]).tolist():
            pgpg.pgpgin[keys[r]] = int(md[r, M_PG_IN])
            pgpg.pgpgout[keys[r]] = int(md[r, M_PG_OUT])
            if md[r, M_PG_UNDER]:
                pgpg.underflowed.add(keys[r])
        anon = self.automaton.rules[R13ANON]
        seen = np.flatnonzero(md[:, M_ANON_ORD])
        for r in seen[np.argsort(md[seen, M_ANON_ORD])].tolist():
            anon.running[keys[r]] = int(md[r, M_ANON_RUN])
            if md[r, M_ANON_UNDER]:
                anon.underflowed.add(keys[r])
        if self.ledger_rule is not None:
            stream: dict = defaultdict(lambda: [0, 0])
            kinds, items = self.kinds.names, self.items.names
            for r, k in zip(*np.nonzero(st.l1k[:n, :, 2])):
                stream[(keys[r], kinds[k], "")] = [int(st.l1k[r, k, 0]), int(st.l1k[r, k, 1])]
            for r, i in zip(*np.nonzero(st.l1i[:n, :, 2])):
                stream[(keys[r], "memcg_stat", items[i])] = [int(st.l1i[r, i, 0]), int(st.l1i[r, i, 1])]
            self.ledger_rule.stream = stream

    def finish(self) -> Report:
        self._flush_findings()
        self._sync_model()
        self._sync_end()
        self._rule_state()
        self.automaton.finish()
        mark_inconclusive(self.ctx.findings, self.windows)
        summary = _Summary(self.stream.path, self.stream.meta,
                           self.checker.finish(self.kinds_count, sorted(self.stream.missing_columns)),
                           int(self.checker.rows))
        report = build_report(summary, self.automaton, self.windows, kinds=self.kinds_count)
        forgotten = int(self.st.sc[S_FORGOTTEN])
        if forgotten:
            report.notes.append(
                f"compiled engine: the states of {forgotten} uncharged folio(s) beyond the newest "
                f"{int(self.st.cfg[C_RING_CAP])} were forgotten; a later uncharge of one of them was judged as of "
                f"a folio never seen (--engine reference keeps them all)")
        return report


class _Summary:
    """The parts of a Trace a report reads, without its rows."""

    def __init__(self, path, meta, integrity, rows: int) -> None:
        self.path, self.meta, self.integrity, self.num_events = path, meta, integrity, rows


def _in_map(st: State, hw: int) -> np.ndarray:
    """Rows of the folio arrays that hold a folio (not on the free list)."""
    used = np.ones(hw, bool)
    used[st.ffree[: st.sc[S_FFREE]]] = False
    return used


def replay_compiled(path: str | os.PathLike[str], config: ReplayConfig | None = None) -> Report:
    """Replay the trace at ``path`` (a file or segment directory) with the compiled
    engine, streaming it; the same report as :func:`chargetrace.replay.replay`.
    Raises :class:`Unsupported` when only the reference engine can replay it."""
    run_ = _Run(stream_trace(path), config or ReplayConfig())
    run_.feed()
    return run_.finish()
