"""The in-kernel ledger and the transport's own counters, read from BPF maps.

The probes add every row they emit to the ``ledger`` map (tracer/bpf/recorder.c,
``ct_ledger_add``) *before* handing it to the transport: per (memcg, kind) —
and per counter item for ``memcg_stat`` rows — the number of events and their
pages (sum of ``nr_pages``; for ``memcg_stat`` the sum of the counter delta,
in the counter's own unit). A record the ring buffer refuses is still in the
ledger, so per-memcg sums stay exact when the event stream is not.

This module owns reading those maps:

* :func:`read_ledger` — the ledger as the ``ledger`` metadata list
  (traces/SCHEMA.md), per-CPU values summed;
* :class:`CounterDeltas` — with ``--aggregate-counters`` the memcg counter
  probes write only to the ledger; this turns successive ledger snapshots
  into ``memcg_stat`` delta rows (one per memcg and item per interval);
* :func:`transport_counters` — records the ring-buffer retry rescued, ledger
  keys that did not fit;
* :func:`stop_probes` — the end-of-recording cut (disarms the probes);
* :func:`program_stats` / :func:`recursion_misses` — program runs the kernel skipped because another
  BPF program was already running on that CPU (``bpf_prog_info.recursion_misses``,
  "bpf: Add per-program recursion prevention mechanism" ca35f7843fa1, v5.12).
  The probe never ran, so neither the stream nor the ledger saw those events;
  the count is system-wide (the scope filter runs inside the probe).

Limits: reading a per-CPU hash walks it key by key (two syscalls per key);
the ledger holds at most ``CT_LEDGER_KEYS`` keys (16384) and says so when full.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .decode import KIND_CODES, dict_array

__all__ = [
    "ledger_cflags",
    "read_ledger",
    "ledger_rows",
    "CounterDeltas",
    "transport_counters",
    "recursion_misses",
    "program_stats",
    "stop_probes",
]

_TX_NAMES = ("retried", "ledger_full")
_KIND_MEMCG_STAT = next(code for code, name in KIND_CODES.items() if name == "memcg_stat")


def ledger_cflags(*, aggregate_counters: bool, rescue: bool) -> list[str]:
    """-D flags of the ledger and the lossless emit (tracer/bpf/recorder.c)."""
    flags = ["-DCT_AGG_COUNTERS=1"] if aggregate_counters else []
    if not rescue:
        flags.append("-DCT_NO_RETRY=1")
    return flags


def ledger_rows(bpf: Any) -> Iterable[tuple[int, int, int, int, int, int]]:
    """(memcg, kind code, probe id, item, events, pages) per ledger key,
    per-CPU values summed."""
    table = bpf[b"ledger"]
    for key, values in table.items():
        yield (int(key.memcg), int(key.kind), int(key.probe), int(key.item),
               sum(int(v.events) for v in values), sum(int(v.pages) for v in values))


def _item_name(probe: int, item: int, item_tables: Mapping[int, Mapping[int, str]]) -> str:
    table = item_tables.get(probe)
    return "" if table is None else table.get(item, str(item))


def read_ledger(snapshot: Iterable[tuple[int, int, int, int, int, int]],
                item_tables: Mapping[int, Mapping[int, str]]) -> list[dict[str, Any]]:
    """A :func:`ledger_rows` snapshot as metadata entries, one per (memcg,
    kind, item), sorted."""
    sums: dict[tuple[int, str, str], list[int]] = {}
    for memcg, kind, probe, item, events, pages in snapshot:
        name = _item_name(probe, item, item_tables) if kind == _KIND_MEMCG_STAT else ""
        acc = sums.setdefault((memcg, KIND_CODES.get(kind, f"?{kind}"), name), [0, 0])
        acc[0] += events
        acc[1] += pages
    return [
        {"memcg": m, "kind": k, "item": i, "events": e, "pages": p}
        for (m, k, i), (e, p) in sorted(sums.items())
    ]


class CounterDeltas:
    """``memcg_stat`` rows from successive ledger snapshots (aggregated mode).

    Each call to :meth:`rows` emits, per (memcg, probe, item) that changed
    since the previous call, one row: ``value`` = the counter's delta,
    ``ret`` = the number of tracepoint hits summed into it, ``span_ns`` = the
    interval (the row covers (ts_ns - span_ns, ts_ns]). Within one snapshot
    increments come before decrements, so a running sum over the rows never
    dips below the kernel's own value at the snapshot (PGPGIN before PGPGOUT).
    """

    def __init__(self, probe_names: Mapping[int, str], item_tables: Mapping[int, Mapping[int, str]],
                 start_ns: int) -> None:
        self._probe_names = probe_names
        self._tables = item_tables
        self._prev: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._last_ns = start_ns

    def rows(self, snapshot: Iterable[tuple[int, int, int, int, int, int]], now_ns: int,
             pid: int | None = None) -> dict[str, Any] | None:
        """Delta rows since the previous snapshot (None when nothing moved)."""
        out: list[tuple[int, int, int, int, int]] = []
        for memcg, kind, probe, item, events, pages in snapshot:
            if kind != _KIND_MEMCG_STAT:
                continue
            key = (memcg, probe, item)
            pe, pp = self._prev.get(key, (0, 0))
            if events != pe:
                out.append((memcg, probe, item, pages - pp, events - pe))
                self._prev[key] = (events, pages)
        span = now_ns - self._last_ns
        self._last_ns = now_ns
        if not out:
            return None
        out.sort(key=lambda r: (-r[3], r[0], r[1], r[2]))
        n = len(out)
        probes = sorted({r[1] for r in out})
        items = sorted({(r[1], r[2]) for r in out})
        return {
            "ts_ns": [now_ns] * n,
            "kind": ["memcg_stat"] * n,
            "probe": dict_array(np.array([probes.index(r[1]) for r in out]),
                                [self._probe_names.get(p, f"?{p}") for p in probes]),
            "memcg": [r[0] for r in out],
            "item": dict_array(np.array([items.index((r[1], r[2])) for r in out]),
                               [_item_name(p, i, self._tables) for p, i in items]),
            "value": [r[3] for r in out],
            "ret": [r[4] for r in out],
            "span_ns": [span] * n,
            "pid": [os.getpid() if pid is None else pid] * n,
        }


def transport_counters(bpf: Any) -> dict[str, int]:
    """``ct_tx`` counters summed over CPUs: ``retried`` (ring buffer only)
    and ``ledger_full``."""
    try:
        table = bpf[b"ct_tx"]
    except KeyError:
        return {}
    return {name: sum(int(v) for v in table[ctypes.c_int(i)]) for i, name in enumerate(_TX_NAMES)}


def stop_probes(bpf: Any) -> None:
    """Cut the recording: disarm the probes' one switch (``armed``,
    tracer/bpf/recorder.c), so that from now on they add nothing to the
    ledger or the transport and the last ledger snapshot and the stream end
    at the same point."""
    bpf[b"armed"][ctypes.c_int(0)] = ctypes.c_uint32(0)



# ---- bpf_prog_info.recursion_misses ------------------------------------
_SYS_BPF = 321  # x86-64
_BPF_OBJ_GET_INFO_BY_FD = 15
#: offsetof(struct bpf_prog_info, recursion_misses) (include/uapi/linux/bpf.h);
#: the kernel fills as much of the struct as the buffer we pass holds.
_INFO_RUN_TIME_NS = 192  # then run_cnt (200), recursion_misses (208)
_INFO_SIZE = 216


def _prog_info(fd: int) -> tuple[int, int, int] | None:
    """(run_cnt, run_time_ns, recursion_misses) of one loaded program; run
    figures are 0 unless kernel.bpf_stats_enabled is set."""
    info = ctypes.create_string_buffer(_INFO_SIZE)
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", fd, _INFO_SIZE, ctypes.addressof(info)), 16)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_BPF, _BPF_OBJ_GET_INFO_BY_FD, attr, 16) != 0:
        return None
    info_len = struct.unpack_from("<I", attr.raw, 4)[0]
    if info_len < _INFO_SIZE:  # kernel older than 5.12: no such field
        return None
    run_time, run_cnt, misses = struct.unpack_from("<QQQ", info.raw, _INFO_RUN_TIME_NS)
    return int(run_cnt), int(run_time), int(misses)


def _probe_of(func: str, kprobe_funcs: Mapping[str, str]) -> str:
    if func.startswith("tracepoint__"):
        return "tp:" + func[len("tracepoint__"):].replace("__", ":", 1)
    if func.startswith("raw_tracepoint__"):
        return "raw_tp:" + func[len("raw_tracepoint__"):]
    return kprobe_funcs.get(func, func)


def program_stats(bpf: Any, kprobe_funcs: Mapping[str, str] | None = None) -> dict[str, tuple[int, int, int]]:
    """Per probe string: (run_cnt, run_time_ns, recursion_misses), summed over
    its programs. The run figures need ``sysctl kernel.bpf_stats_enabled=1``
    (bench/record_overhead.py sets it; it costs two clock reads per run)."""
    out: dict[str, tuple[int, int, int]] = {}
    for name, fn in getattr(bpf, "funcs", {}).items():
        func = name.decode() if isinstance(name, bytes) else str(name)
        info = _prog_info(fn.fd)
        if info is None:
            continue
        probe = _probe_of(func, kprobe_funcs or {})
        prev = out.get(probe, (0, 0, 0))
        out[probe] = (prev[0] + info[0], prev[1] + info[1], prev[2] + info[2])
    return out


def recursion_misses(bpf: Any, kprobe_funcs: Mapping[str, str] | None = None) -> dict[str, int]:
    """Per probe string, program runs the kernel skipped (nonzero only)."""
    return {probe: m for probe, (_, _, m) in program_stats(bpf, kprobe_funcs).items() if m}
