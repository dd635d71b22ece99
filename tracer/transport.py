"""Moving records from BPF to Python: ring buffer (preferred) or perf buffer.

Ring buffer: the BPF side writes with ``BPF_RB_NO_WAKEUP`` and the recorder
reads on a ~10 ms timer (a wakeup per event slowed the traced task ~4x here;
measured on a 2-vCPU VM; BENCHMARKS.md). It reads the mmapped ring itself, in bulk
(:class:`~.ringbuf.RingReader`), instead of BCC's ``ring_buffer_consume()``
with one Python callback per record, which could not keep up with a
fault-heavy task. Perf buffer fallback (kernels before 5.8): ``wakeup_events``
batches wakeups; BCC calls a Python callback per record, which only
``memmove``s it into a preallocated arena. :meth:`Transport.drain` hands
everything collected to :func:`decode` in one piece. Drops are counted in BPF
(``drops`` per-CPU array: BCC's ring buffer has no lost callback) and
reported as deltas per CPU since the previous check.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

from .decode import EVENT_SIZE
from .ringbuf import RingReader

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
    """Collects raw records from the program's ``events`` map into an arena."""

    def __init__(self, bpf: Any, *, perf: bool, arena_events: int = 1 << 16, perf_pages: int = 256,
                 budget: int = 1 << 16, ring_bytes: int = 0) -> None:
        self.bpf = bpf
        # Records taken per poll() at most, so that a producer as fast as the
        # consumer cannot pin the recorder in one read (libbpf's consume
        # loop did exactly that: no flush, no status, no signal handling).
        self.budget = budget
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
        table = bpf[b"events"]
        self._ring: RingReader | None = None
        if perf:
            table.open_perf_buffer(self._on_perf, page_cnt=perf_pages, wakeup_events=64)
        else:
            self._ring = RingReader(table.map_fd, ring_bytes, EVENT_SIZE)

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

    def _on_perf(self, _cpu: int, data: int, size: int) -> None:
        # perf samples are padded to 8 bytes; our record is a multiple of 8.
        self._store(data, min(size, EVENT_SIZE))

    def poll(self) -> None:
        """Take what is available now (at most :attr:`budget` ring-buffer
        records), without blocking."""
        if self._ring is None:
            self.bpf.perf_buffer_consume()
            return
        raw = self._ring.read(self.budget)
        if raw:
            self._chunks.append(raw)
            self.events_seen += len(raw) // EVENT_SIZE

    def drain(self) -> bytes:
        """The records collected since the last drain, packed."""
        out = b"".join(self._chunks) + (self._arena.raw[: self._used] if self._used else b"")
        self._chunks = []
        self._used = 0
        self.bytes_seen += len(out)
        return out

    def drops(self) -> list[DropWindow]:
        """Per-CPU drops since the previous call (read from the BPF map)."""
        now = time.monotonic_ns()
        values = [int(v) for v in self.bpf[b"drops"][ctypes.c_int(0)]]
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

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
