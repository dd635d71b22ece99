"""The recorder's writer thread: decode raw records and write them, in order.

Parquet writing and decoding took ~75 % of the recorder's time inline,
during which nobody read the ring buffer (it overflowed under a fault-heavy
task). pyarrow and numpy release the GIL for the heavy parts, so the reading
loop keeps running while this thread works. Everything for the trace
(decoded events, lost, usage and memstat rows) goes through one queue, so
rows keep their order and the caller can count the seq each row gets.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from chargetrace.traces import ChargetraceError, TraceWriter

from .decode import EVENT_SIZE, decode
from .drivers import PgmapTable

__all__ = ["DiskWriter"]


class DiskWriter:
    """Decodes and writes on its own thread, in arrival order (module docstring)."""

    def __init__(self, writer: TraceWriter, probe_names: dict[int, str], tables: dict[int, dict[int, str]],
                 pgmaps: PgmapTable | None = None) -> None:
        self.writer = writer
        #: Names each new pgmap_ops pointer before the writer hides it (tracer/drivers.py).
        self._pgmaps = pgmaps
        self._probe_names = probe_names
        self._tables = tables
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        #: Rows queued so far = the seq the next queued row gets (the writer
        #: numbers rows from 0 in arrival order).
        self.rows = 0
        self._written = 0
        self._written_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chargetrace-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without work; the error is raised in put()/close()
            what, payload = item
            try:
                if what == "flush":
                    self._flush_if_stale(payload)
                    continue
                cols = decode(payload, self._probe_names, self._tables) if what == "raw" else payload
                if self._pgmaps is not None:
                    self._pgmaps.note(cols)
                self.writer.append_columns(cols)
            except BaseException as exc:  # handed to the main thread
                self._error = exc

    def _flush_if_stale(self, max_age: float) -> None:
        # The writer closes a segment on append once flush_seconds passed; a
        # quiet recording appends nothing, so its rows would wait. Segments
        # the writer closed itself (rows_written moved) reset the clock, so a
        # busy recording gets no extra segments from this.
        now = time.monotonic()
        if self.writer.rows_written != self._written:
            self._written, self._written_at = self.writer.rows_written, now
        if self.writer.pending_rows and now - self._written_at >= max_age:
            self.writer.flush()
            self._written, self._written_at = self.writer.rows_written, now

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, ChargetraceError):
                raise err
            raise ChargetraceError(f"writing the trace failed: {type(err).__name__}: {err}") from None

    def put_raw(self, raw: bytes) -> None:
        self._check()
        self.rows += len(raw) // EVENT_SIZE
        self._queue.put(("raw", raw))

    def put_columns(self, cols: dict[str, Any]) -> None:
        self._check()
        self.rows += len(next(iter(cols.values()), ()))
        self._queue.put(("cols", cols))

    def put_flush(self, max_age: float) -> None:
        """Close a segment with whatever is buffered if none was closed for
        ``max_age`` seconds (a quiet recording's rows would otherwise wait for
        the next append, and SIGKILL would lose them)."""
        self._check()
        self._queue.put(("flush", max_age))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Write everything queued (the writer itself is closed by the caller)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._check()


