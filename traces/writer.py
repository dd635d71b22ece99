"""Write chargetrace traces: segment files while recording, one file at the end.

A :class:`TraceWriter` buffers rows and writes each flush as a complete,
closed segment file (written under a temporary name, then renamed), so a
recorder killed at any moment leaves only readable segments behind and loses
at most the rows buffered since the last flush. When the target is a
``*.parquet`` file, segments go to ``<target>.partial/`` and :meth:`close`
merges them into the target; when it is a directory, the segments stay there.

Writes cannot hurt: every file is created 0600 under a fresh temporary name
(``O_EXCL``, so no symlink is followed), carries Parquet page checksums, and is
renamed over its target only when complete; any error or signal removes the
temporary file. :func:`write_table` can refuse an existing target (the CLI does
unless ``--force``). While a recording runs its segments say ``complete: false``; a
writer that fails (a full disk) or is aborted leaves them so, and never merges
them into a trace that would read as whole. Kernel pointers are replaced by
opaque ids as rows arrive (traces/pointers.py) unless ``raw_pointers``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .arrays import numpy_of
from .errors import ChargetraceError
from .metadata import TraceMeta
from .pointers import PointerMap
from .schema import ARROW_SCHEMA, COLUMN_DEFAULTS, METADATA_DIGEST_KEY, METADATA_KEY

__all__ = ["TraceWriter", "write_table", "segment_name", "atomic_output", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"
_COMPRESSION = "zstd"
_ROW_GROUP_ROWS = 128 * 1024
#: Every file this package writes; page checksums let the reader find flipped bits.
_PARQUET_OPTIONS = {"compression": _COMPRESSION, "write_page_checksum": True}


def segment_name(index: int) -> str:
    return f"seg-{index:06d}.parquet"


def _key_values(meta: TraceMeta) -> dict[bytes, bytes]:
    blob = meta.to_json()
    return {METADATA_KEY: blob, METADATA_DIGEST_KEY: hashlib.sha256(blob).hexdigest().encode()}


def _schema_with(meta: TraceMeta) -> pa.Schema:
    return ARROW_SCHEMA.with_metadata(_key_values(meta))


class _Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP during a write: unwinds like Ctrl-C so the temp file goes."""


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception for the duration of a write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_(signum: int, frame: object) -> None:
        raise _Terminated(f"signal {signum}")

    old = {s: signal.signal(s, raise_) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh private temp path beside ``path``; rename it to ``path``
    when the block succeeds, remove it on any error or signal.

    Refuses a directory, and an existing ``path`` unless ``overwrite``; a
    symbolic link at ``path`` is replaced, never followed.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise ChargetraceError(f"{path}: is a directory")
    if os.path.lexists(path) and not overwrite:
        raise ChargetraceError(f"{path}: already exists (use --force to overwrite it)")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ChargetraceError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        with _signals_unwind():
            yield tmp
            os.replace(tmp, path)
    except OSError as exc:
        raise ChargetraceError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _write_file(table: pa.Table, path: Path, meta: TraceMeta, *, overwrite: bool) -> None:
    table = conform(table).replace_schema_metadata(_key_values(meta))
    with atomic_output(path, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp, row_group_size=_ROW_GROUP_ROWS, **_PARQUET_OPTIONS)


def write_table(table: pa.Table, path: str | os.PathLike[str], meta: TraceMeta, *,
                overwrite: bool = True) -> None:
    """Write a whole table as one finished trace file (atomically, 0600).

    ``overwrite=False`` refuses an existing ``path`` (the CLI's default, until
    ``--force``); library callers rewriting a trace in place keep the default.

    The metadata written says ``complete`` as the caller's does and records the
    row count, so a later reader can tell rows removed from the end.
    """
    _write_file(table, Path(path), dataclasses.replace(meta, rows=table.num_rows), overwrite=overwrite)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to the current schema's column order and types."""
    return table.select(list(ARROW_SCHEMA.names)).cast(ARROW_SCHEMA.remove_metadata())


def columns_to_table(columns: Mapping[str, Any], first_seq: int) -> pa.Table:
    """Build a schema-conformant table from column arrays; absent columns get
    their defaults and ``seq`` is numbered from ``first_seq`` when absent."""
    n = None
    for values in columns.values():
        n = len(values)
        break
    if n is None:
        return ARROW_SCHEMA.empty_table()
    arrays = []
    for fld in ARROW_SCHEMA:
        if fld.name in columns:
            values = columns[fld.name]
        elif fld.name == "seq":
            values = pa.array(range(first_seq, first_seq + n), pa.uint64())
        else:
            values = pa.repeat(pa.scalar(COLUMN_DEFAULTS[fld.name], fld.type), n)
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            if values.type != fld.type:
                values = values.cast(fld.type)
        else:
            values = pa.array(values, type=fld.type)
        arrays.append(values)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA.remove_metadata())


class TraceWriter:
    """Context-managed trace writer.

    ``append_columns`` takes column arrays (the recorder's bulk path);
    ``append_rows`` takes dicts (tests, generators). Rows without ``seq`` are
    numbered in arrival order. ``raw_pointers=True`` keeps kernel addresses in
    ``folio``/``folio_new`` (it exposes the kernel's address layout); by
    default they become opaque ids and the metadata says ``anonymized``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        meta: TraceMeta,
        *,
        flush_rows: int = 256 * 1024,
        flush_seconds: float = 2.0,
        raw_pointers: bool = False,
    ) -> None:
        self.target = Path(target)
        self.meta = meta
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.single_file = self.target.suffix == ".parquet"
        self.segment_dir = (
            self.target.with_name(self.target.name + PARTIAL_SUFFIX) if self.single_file else self.target
        )
        if self.single_file and os.path.lexists(self.target):
            raise ChargetraceError(f"{self.target}: already exists; choose a new name or remove it")
        try:
            if self.segment_dir.is_symlink():
                raise ChargetraceError(f"{self.segment_dir}: is a symbolic link; choose a new name")
            if self.segment_dir.exists():
                if any(self.segment_dir.iterdir()):
                    raise ChargetraceError(f"{self.segment_dir}: already exists and is not empty")
            self.segment_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ChargetraceError(f"{self.segment_dir}: cannot create ({exc.strerror or exc})") from None
        self._pointers = None if raw_pointers else PointerMap()
        meta.anonymized = not raw_pointers
        meta.recording_id = meta.recording_id or uuid.uuid4().hex
        # Until close() succeeds, every segment says the recording is unfinished.
        meta.complete, meta.rows = False, None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._segments = 0
        self._next_seq = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.closed = False
        #: Why writing failed (None while it has not): the trace is left unfinished.
        self.failed: str | None = None

    def pgmap_id(self, pointer: int) -> int:
        """The value ``pointer`` (a raw ``pgmap_ops``) has in the trace: its opaque
        id, or itself with ``raw_pointers`` (the key of the metadata's ``pgmaps``)."""
        return pointer if self._pointers is None else self._pointers.pgmap_id(pointer)

    # -- input -------------------------------------------------------------
    def append_columns(self, columns: Mapping[str, Any]) -> None:
        table = columns_to_table(columns, self._next_seq)
        if table.num_rows == 0:
            return
        if self._pointers is not None:
            table = self._pointers.map_table(table)
        self._next_seq = int(numpy_of(table.column("seq")).max()) + 1
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def append_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        names = [name for name in ARROW_SCHEMA.names if any(name in row for row in rows)]
        columns = {
            name: [row.get(name, COLUMN_DEFAULTS.get(name, 0)) for row in rows] for name in names
        }
        self.append_columns(columns)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.segment_dir.glob("seg-*.parquet"))

    # -- output ------------------------------------------------------------
    def flush(self) -> None:
        """Write the buffered rows as one closed segment file."""
        self._last_flush = time.monotonic()
        if not self._pending or self.failed:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        try:
            _write_file(table, self.segment_dir / segment_name(self._segments), self.meta, overwrite=False)
        except BaseException as exc:
            self.failed = str(exc) or type(exc).__name__
            raise
        self._segments += 1
        self.rows_written += table.num_rows

    def abort(self, reason: str) -> None:
        """Stop without finishing: keep what was flushed, marked incomplete, and never merge it."""
        if self.closed:
            return
        with contextlib.suppress(ChargetraceError, OSError):
            self.flush()  # the segments written so far still say complete: false
        self.failed = self.failed or reason
        self.closed = True

    def close(self) -> Path:
        """Flush, mark the trace complete, then (single-file target) merge the segments."""
        if self.closed:
            return self.target
        if not self.failed:
            with contextlib.suppress(ChargetraceError):
                self.flush()
        if self.failed:
            self.closed = True
            raise ChargetraceError(
                f"{self.target}: recording not finished ({self.failed}); the segments in "
                f"{self.segment_dir} are marked incomplete"
            )
        self.meta.complete, self.meta.rows = True, self.rows_written
        if self._segments == 0:
            # An empty recording is still a valid trace: it says nothing happened.
            _write_file(ARROW_SCHEMA.empty_table(), self.segment_dir / segment_name(0), self.meta, overwrite=False)
            self._segments = 1
        else:
            # Rewrite the last segment's metadata so it carries the final meta
            # (end time, drop counts, complete) even if the merge below never happens.
            last = self.segment_dir / segment_name(self._segments - 1)
            _write_file(pq.read_table(last), last, self.meta, overwrite=True)
        if self.single_file:
            self._merge()
        self.closed = True
        return self.target

    def _merge(self) -> None:
        segments = sorted(self.segment_dir.glob("seg-*.parquet"))
        try:
            with atomic_output(self.target) as tmp:
                with pq.ParquetWriter(tmp, _schema_with(self.meta), **_PARQUET_OPTIONS) as out:
                    for seg in segments:
                        out.write_table(conform(pq.read_table(seg)), row_group_size=_ROW_GROUP_ROWS)
        except ChargetraceError as exc:
            raise ChargetraceError(f"{exc}; segments kept in {self.segment_dir}") from None
        shutil.rmtree(self.segment_dir, ignore_errors=True)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.abort(f"{type(exc).__name__}: {exc}")
        else:
            self.close()
