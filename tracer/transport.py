"""Moving records from BPF to Python: ring buffer (preferred) or perf buffer.

Ring buffer: the BPF side writes with ``BPF_RB_NO_WAKEUP`` and the recorder
calls ``ring_buffer_consume()`` on a ~10 ms timer (a wakeup per event slowed
the traced task ~4x here; docs/bcc-here.md §4). Perf buffer fallback (kernels
before 5.8): ``wakeup_events`` batches wakeups the same way.

BCC calls a Python callback per record; the callback only ``memmove``s the
record into a preallocated arena, and :meth:`Transport.drain` hands the
filled part to :func:`decode` in one piece. Drops are counted in BPF
(``drops`` per-CPU array: BCC's ring buffer has no lost callback) and
reported as deltas per CPU since the previous check.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

from .decode import EVENT_SIZE

__all__ = ["Transport", "DropWindow", "ringbuf_pages"]

_PAGE = 4096


def ringbuf_pages(megabytes: float) -> int:
    """Pages for a ring of ``megabytes`` MiB, rounded up to a power of two
    (the kernel requires a power-of-two multiple of the page size)."""
    pages = max(1, -(-int(megabytes * 1024 * 1024) // _PAGE))
    return 1 << (pages - 1).bit_length()


@dataclass
class DropWindow:
    """Events the transport dropped on one CPU in (ts_ns - span_ns, ts_ns]."""

    cpu: int
    count: int
    ts_ns: int
    span_ns: int


class Transport:
    """Collects raw records from ``bpf["events"]`` into an arena."""

    def __init__(self, bpf: Any, *, perf: bool, arena_events: int = 1 << 16, perf_pages: int = 256,
                 budget: int = 1 << 16) -> None:
        self.bpf = bpf
        # Records taken per poll() at most: libbpf's ring_buffer__consume()
        # keeps going while the producer keeps producing, so a fault-heavy
        # task could pin the recorder inside one consume call forever (seen
        # here: no flush, no status, no signal handling).
        self.budget = budget
        self._round = 0
        self.perf = perf
        self._cap = arena_events * EVENT_SIZE
        self._arena = ctypes.create_string_buffer(self._cap)
        self._base = ctypes.addressof(self._arena)
        self._used = 0
        self._chunks: list[bytes] = []
        self.events_seen = 0
        self.bytes_seen = 0
        self._drops_prev: list[int] = []
        self._drops_ts = time.monotonic_ns()
        table = bpf["events"]
        if perf:
            table.open_perf_buffer(self._on_perf, page_cnt=perf_pages, wakeup_events=64)
        else:
            table.open_ring_buffer(self._on_ring)

    # BCC callbacks: one per record; they copy bytes and nothing else.
    def _store(self, data: int, size: int) -> None:
        if size != EVENT_SIZE:
            return  # not ours (cannot happen: one record type)
        if self._used + size > self._cap:
            self._chunks.append(self._arena.raw[: self._used])
            self._used = 0
        ctypes.memmove(self._base + self._used, data, size)
        self._used += size
        self.events_seen += 1

    def _on_ring(self, _ctx: Any, data: int, size: int) -> int:
        self._store(data, size)
        self._round += 1
        # A negative return makes libbpf stop after this record (which it
        # has already consumed: nothing is lost).
        return -1 if self._round >= self.budget else 0

    def _on_perf(self, _cpu: int, data: int, size: int) -> None:
        # perf samples are padded to 8 bytes; our record is a multiple of 8.
        self._store(data, min(size, EVENT_SIZE))

    def poll(self) -> None:
        """Consume what is available now (at most :attr:`budget` ring-buffer
        records), without blocking."""
        self._round = 0
        if self.perf:
            self.bpf.perf_buffer_consume()
        else:
            self.bpf.ring_buffer_consume()

    def drain(self) -> bytes:
        """The records collected since the last drain, packed."""
        out = b"".join(self._chunks) + self._arena.raw[: self._used]
        self._chunks = []
        self._used = 0
        self.bytes_seen += len(out)
        return out

    def drops(self) -> list[DropWindow]:
        """Per-CPU drops since the previous call (read from the BPF map)."""
        now = time.monotonic_ns()
        values = [int(v) for v in self.bpf["drops"][ctypes.c_int(0)]]
        if not self._drops_prev:
            self._drops_prev = [0] * len(values)
        out = [
            DropWindow(cpu, v - p, now, now - self._drops_ts)
            for cpu, (v, p) in enumerate(zip(values, self._drops_prev))
            if v > p
        ]
        self._drops_prev = values
        self._drops_ts = now
        return out
