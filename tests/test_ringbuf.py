import struct

import pytest

from chargetrace.traces import ChargetraceError
from chargetrace.tracer.ringbuf import take_records

REC = 104
STRIDE = 112  # 8-byte header + 104, rounded to 8


def _ring(records: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for length, payload in records:
        out += struct.pack("<II", length, 0) + payload.ljust(STRIDE - 8, b"\0")
    return bytes(out)

def _ring_file(tmp_path, records):
    """A file laid out as BPF's ring buffer mapping (consumer page, producer page, the data
    mapped twice), opened read-write: the file and its descriptor."""
    import mmap
    import os

    page, size = mmap.PAGESIZE, mmap.PAGESIZE
    data = _ring(records)
    f = tmp_path / "ring"
    f.write_bytes(struct.pack("<Q", 0).ljust(page, b"\0") + struct.pack("<Q", len(data)).ljust(page, b"\0")
                  + (data.ljust(size, b"\0")) * 2)
    return f, os.open(f, os.O_RDWR)



def test_takes_committed_records_and_stops_at_busy() -> None:
    recs = [(REC, bytes([i]) * REC) for i in range(3)] + [(REC | 1 << 31, b"x" * REC), (REC, b"y" * REC)]
    data = b"\0" * 64 + _ring(recs)
    out, advance = take_records(data, 64, len(data) - 64, REC, 1000)
    assert advance == 3 * STRIDE
    assert out == b"".join(bytes([i]) * REC for i in range(3))


def test_budget_partial_and_empty() -> None:
    data = _ring([(REC, b"a" * REC)] * 5)
    out, advance = take_records(data, 0, len(data), REC, 2)
    assert (len(out), advance) == (2 * REC, 2 * STRIDE)
    # a record only partly published (producer position mid-record) is not taken
    out, advance = take_records(data, 0, STRIDE + 50, REC, 10)
    assert advance == STRIDE
    assert take_records(data, 0, 0, REC, 10) == (b"", 0)


def test_wrapped_run_is_contiguous_in_the_double_mapping() -> None:
    # The kernel maps the data area twice back to back; a run starting near the
    # end of the first copy continues into the second.
    area = _ring([(REC, bytes([10 + i]) * REC) for i in range(4)])
    out, advance = take_records(area * 2, 3 * STRIDE, 2 * STRIDE, REC, 10)
    assert out == bytes([13]) * REC + bytes([10]) * REC and advance == 2 * STRIDE


def test_foreign_record_size_is_an_error() -> None:
    data = _ring([(REC, b"a" * REC), (40, b"b" * 40)])
    with pytest.raises(ChargetraceError, match="40 bytes"):
        take_records(data, 0, len(data), REC, 10)


def test_reader_over_a_file_laid_out_like_the_ring(tmp_path) -> None:
    # A regular file in the ring's mmap layout: page 0 consumer position, page 1
    # producer position, then the data area twice (as the kernel maps it).
    import mmap
    import os

    from chargetrace.tracer.ringbuf import RingReader

    size = mmap.PAGESIZE
    f, fd = _ring_file(tmp_path, [(REC, bytes([i]) * REC) for i in range(3)])
    try:
        reader = RingReader(fd, size, REC)
        assert reader.read(2) == bytes([0]) * REC + bytes([1]) * REC
        # the consumer position went to the file as one little-endian u64
        assert struct.unpack_from("<Q", f.read_bytes(), 0)[0] == 2 * STRIDE
        assert reader.read(10) == bytes([2]) * REC and reader.read(10) == b""
        reader.close()
    finally:
        os.close(fd)
    assert struct.unpack_from("<Q", f.read_bytes(), 0)[0] == 3 * STRIDE


def test_a_foreign_record_in_the_ring_leaves_it_closable(tmp_path) -> None:
    """The error names the sizes; no view of the mapping outlives it (else close()
    raised BufferError and hid the message)."""
    import mmap
    import os

    from chargetrace.tracer.ringbuf import RingReader

    size = mmap.PAGESIZE
    f, fd = _ring_file(tmp_path, [(REC, b"a" * REC), (96, b"b" * 96)])
    try:
        reader = RingReader(fd, size, REC)
        try:
            reader.read(10)
        except ChargetraceError as exc:
            reader.close()  # as the recorder's teardown does while the error propagates
            message = str(exc)
        assert "96 bytes, expected 104" in message
    finally:
        os.close(fd)
