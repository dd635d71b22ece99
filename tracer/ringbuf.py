"""A vectorized reader of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF), by mmap.

libbpf's ``ring_buffer__consume`` (what BCC wraps) calls back into Python
once per record; at ~2-3 us per call the consumer, not the kernel, limited
delivery to ~250-300k records/s here and a fault-heavy task overflowed a
32 MiB ring. Every record of ours has the same size, so the ring can be read
in bulk instead: map it as libbpf does (kernel/bpf/ringbuf.c layout: page 0 =
consumer position, read-write; page 1 = producer position; then the data
pages, mapped twice back to back so a wrapped run of records is contiguous),
view [consumer, producer) as an array of fixed-size records with numpy, stop
at the first record still being written (BUSY bit), copy, and advance the
consumer position.

The consumer position is published with one aligned 8-byte store (a ctypes
u64 over the mmap). It used to be ``struct.pack_into``, which zero-fills the
packed bytes before writing them (CPython ``s_pack_internal``): for that
instant the kernel read a consumer position of 0, and once the ring had
wrapped ``__bpf_ringbuf_reserve()`` refused records as if it were full —
the drops seen at low rates with rings of any size (measured:
bench/ringbuf_failures.py, BENCHMARKS.md).

Limits: x86-64 (total store order: reading the producer position before the
records needs no explicit barrier), records of one size only (anything else
raises), discarded records are not expected (the BPF side never discards).
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

from chargetrace.traces import ChargetraceError

__all__ = ["RingReader", "take_records"]

_HDR = 8  # struct { u32 len; u32 pg_off; } before each record
_BUSY = 1 << 31
_DISCARD = 1 << 30


def take_records(data: object, offset: int, available: int, record_size: int, max_records: int) -> tuple[bytes, int]:
    """Committed records at ``data[offset : offset + available]``, packed.

    Returns (records without headers, bytes to advance the consumer by).
    Stops at the first record still being written (BUSY bit) or discarded;
    a committed record of another size raises (the BPF side writes one size).
    """
    stride = (record_size + _HDR + 7) & ~7
    n = min(available // stride, max_records)
    if n <= 0:
        return b"", 0
    dtype = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("rec", f"V{record_size}"),
                      ("pad", f"V{stride - _HDR - record_size}")])
    recs = np.frombuffer(data, dtype=dtype, count=n, offset=offset)  # type: ignore[call-overload]
    lens = recs["len"]
    stop = np.flatnonzero(lens != record_size)
    k = int(stop[0]) if stop.size else n
    if k < n:
        bad = int(lens[k])
        if not bad & (_BUSY | _DISCARD) and bad != record_size:
            # The traceback keeps this frame: with a view alive the mmap could not be
            # closed and "BufferError: cannot close exported pointers exist" would
            # hide this message (a recorder whose C and Python halves disagree).
            del recs, lens
            raise ChargetraceError(f"ring buffer record of {bad} bytes, expected {record_size}")
    out = recs["rec"][:k].tobytes()
    del recs, lens  # no view may outlive the call (the mmap could not be closed)
    return out, k * stride


class RingReader:
    """Bulk consumer of a BPF ring buffer whose records are all ``record_size`` bytes."""

    def __init__(self, map_fd: int, size: int, record_size: int) -> None:
        if size & (size - 1):
            raise ChargetraceError(f"ring buffer size {size} is not a power of two")
        self.page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self.record_size = record_size
        self.stride = (record_size + _HDR + 7) & ~7
        self._cons = mmap.mmap(map_fd, self.page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, self.page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=self.page)
        self._cons_pos = ctypes.c_uint64.from_buffer(self._cons, 0)
        # The producer page is read-only: read its word through numpy (one
        # 8-byte load), not through a writable ctypes view.
        self._prod_pos = np.frombuffer(self._data, dtype="<u8", count=1, offset=0)

    def read(self, max_records: int) -> bytes:
        """Up to ``max_records`` committed records, packed back to back."""
        cons = self._cons_pos.value
        prod = int(self._prod_pos[0])
        out, advance = take_records(self._data, self.page + (cons & self.mask), prod - cons, self.record_size,
                                    max_records)
        if advance:
            self._cons_pos.value = cons + advance
        return out

    def close(self) -> None:
        # Views into the maps must go before the maps can be closed.
        del self._cons_pos, self._prod_pos
        self._cons.close()
        self._data.close()
