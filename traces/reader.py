"""Read chargetrace traces: a Parquet file or a directory of segment files.

Everything that can be wrong with an input becomes one :class:`ChargetraceError`
line naming the file: missing, empty, truncated, not Parquet, a page whose
checksum does not match, Parquet but not a trace, a newer or older schema,
metadata of the wrong shape (traces/validate.py), duplicated column names,
nulls, a column type that would lose information when cast (``folio`` stored
as float64), invalid UTF-8, strings or row counts beyond the caps, segments of
different recordings in one directory.

What reads but is not the whole recording (seq gaps, unknown kinds, drop
counters that disagree with the ``lost`` rows, ...) is listed in
:attr:`Trace.integrity` (traces/integrity.py) for replay to take into account.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .arrays import constant_array, longest_string, numpy_of
from .errors import ChargetraceError
from .integrity import Integrity, check_rows
from .metadata import TraceMeta
from .schema import (
    ARROW_SCHEMA,
    COLUMN_DEFAULTS,
    COLUMN_SINCE,
    MAX_EVENTS_DEFAULT,
    MAX_STRING_BYTES,
    METADATA_DIGEST_KEY,
    METADATA_KEY,
    OLDEST_READABLE_VERSION,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
)
from .writer import PARTIAL_SUFFIX

__all__ = ["Trace", "TraceStream", "read_trace", "read_meta", "stream_trace", "trace_files", "max_events"]

#: Uncompressed bytes a row may take on average (a real one takes ~100), above
#: a fixed allowance for dictionaries: more means oversized strings.
_BYTES_PER_ROW = 1024
_BYTES_ALLOWANCE = 64 * 1024 * 1024

Progress = Callable[[int, int], None]


@dataclass
class Trace:
    """A whole trace in memory: rows in ``seq`` order, its metadata, and what
    the reader found wrong with it (:class:`Integrity`; empty when clean)."""

    path: Path
    table: pa.Table
    meta: TraceMeta
    integrity: Integrity = field(default_factory=Integrity)

    @property
    def num_events(self) -> int:
        return self.table.num_rows


def max_events() -> int:
    """The row cap: ``CHARGETRACE_MAX_EVENTS`` if set (a positive integer), else the default."""
    raw = os.environ.get("CHARGETRACE_MAX_EVENTS", "")
    if not raw:
        return MAX_EVENTS_DEFAULT
    if not raw.isdigit() or int(raw) < 1:
        raise ChargetraceError(f"CHARGETRACE_MAX_EVENTS={raw!r} is not a positive integer")
    return int(raw)


def trace_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files that make up the trace at ``path``."""
    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        if partial.is_dir():
            raise ChargetraceError(
                f"{path}: no such file, but {partial} holds an unfinished recording; "
                f"replay that directory"
            )
        raise ChargetraceError(f"{path}: no such file or directory")
    if path.is_dir():
        # Only the recorder's own segment names: a directory that merely holds
        # some Parquet files (several traces, say) is not one trace.
        try:
            files = sorted(path.glob("seg-*.parquet"))
        except OSError as exc:
            raise ChargetraceError(f"{path}: cannot list ({exc.strerror or exc})") from None
        if not files:
            raise ChargetraceError(f"{path}: directory holds no trace segments (seg-*.parquet)")
        return files
    return [path]


def _open(file: Path) -> pq.ParquetFile:
    try:
        if not file.is_file():
            raise ChargetraceError(f"{file}: not a regular file")
        if file.stat().st_size == 0:
            raise ChargetraceError(f"{file}: empty file, not a trace")
        return pq.ParquetFile(file, page_checksum_verification=True)
    except ChargetraceError:
        raise
    except OSError as exc:
        if exc.strerror:
            raise ChargetraceError(f"{file}: cannot read ({exc.strerror})") from None
        raise ChargetraceError(f"{file}: not a Parquet file, or truncated ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on a bad footer
        raise ChargetraceError(f"{file}: not a Parquet file, or truncated ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    # pyarrow's messages end with a newline and sometimes hold several lines.
    text = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return text[0] if text else type(exc).__name__


def _meta_of(file: Path, pf: pq.ParquetFile) -> TraceMeta:
    # The file's own key-value pairs, not the copy inside the serialized Arrow
    # schema (ARROW:schema): the checksum below was computed over these.
    kv = pf.metadata.metadata or {}
    raw = kv.get(METADATA_KEY)
    if raw is None:
        raise ChargetraceError(f"{file}: a Parquet file, but not a chargetrace trace (no chargetrace metadata)")
    copy = (pf.schema_arrow.metadata or {}).get(METADATA_KEY)
    if copy is not None and copy != raw:
        raise ChargetraceError(f"{file}: the two copies of the metadata in the footer differ (damaged footer)")
    digest = kv.get(METADATA_DIGEST_KEY)
    if digest is not None and digest != hashlib.sha256(raw).hexdigest().encode():
        raise ChargetraceError(f"{file}: metadata does not match its checksum (damaged footer)")
    meta = TraceMeta.from_json(raw, str(file))
    version = meta.schema_version
    if version > SCHEMA_VERSION:
        raise ChargetraceError(
            f"{file}: schema version {version} is newer than this chargetrace reads "
            f"(up to {SCHEMA_VERSION}); upgrade chargetrace"
        )
    if version < OLDEST_READABLE_VERSION:
        raise ChargetraceError(
            f"{file}: schema version {version} is older than this chargetrace reads "
            f"(from {OLDEST_READABLE_VERSION})"
        )
    return meta


def read_meta(path: str | os.PathLike[str]) -> TraceMeta:
    """Metadata of a trace (the last segment's, for a directory)."""
    files = trace_files(path)
    return _meta_of(files[-1], _open(files[-1]))


def _check_layout(file: Path, pf: pq.ParquetFile) -> None:
    """What can be refused from the footer alone, before decoding any row."""
    names = pf.schema_arrow.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ChargetraceError(f"{file}: column name(s) {', '.join(map(repr, dupes))} appear more than once")
    md = pf.metadata
    size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    if size > _BYTES_ALLOWANCE + _BYTES_PER_ROW * md.num_rows:
        raise ChargetraceError(
            f"{file}: {size} bytes of data for {md.num_rows} rows: oversized values (more than "
            f"{_BYTES_PER_ROW} bytes per row), not a trace this reader decodes"
        )


def _integer(file: Path, name: str, col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    # Every version wrote these exact types. Another integer type means another
    # writer (a narrower one may have wrapped values on the way); floats,
    # booleans, strings and decimals lose information when cast to an id (a
    # float64 folio rounds away its low bits).
    lossy = "" if pa.types.is_integer(col.type) else " (a lossy type)"
    raise ChargetraceError(f"{file}: column {name!r} has type {col.type}, expected {target}{lossy}")


def _string(file: Path, name: str, col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    typ = col.type
    value_type = typ.value_type if pa.types.is_dictionary(typ) else typ
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        raise ChargetraceError(f"{file}: column {name!r} has type {typ}, expected strings")
    for chunk in col.chunks:
        words = chunk.dictionary if pa.types.is_dictionary(typ) else chunk
        longest = longest_string(words) if len(words) else 0
        if longest and longest > MAX_STRING_BYTES:
            raise ChargetraceError(
                f"{file}: column {name!r} holds a string of {longest} bytes (at most {MAX_STRING_BYTES} accepted)"
            )
    try:
        return col if typ == target else col.cast(target)
    except (pa.ArrowException, ValueError) as exc:
        raise ChargetraceError(f"{file}: column {name!r} cannot be read as strings ({_first_line(exc)})") from None


def _conform(file: Path, table: pa.Table, version: int) -> tuple[pa.Table, list[str]]:
    """The table in the current schema, and the columns that were missing (filled with
    defaults) although the trace's schema ``version`` has them."""
    missing = REQUIRED_COLUMNS - set(table.column_names)
    if missing:
        raise ChargetraceError(f"{file}: not a chargetrace trace (missing column(s) {', '.join(sorted(missing))})")
    arrays, filled = [], []
    for fld in ARROW_SCHEMA:
        if fld.name in table.column_names:
            col = table.column(fld.name)
            if col.null_count:
                raise ChargetraceError(f"{file}: column {fld.name!r} has {col.null_count} null value(s)")
            if pa.types.is_dictionary(fld.type):
                col = _string(file, fld.name, col, fld.type)
            elif col.type != fld.type:
                col = _integer(file, fld.name, col, fld.type)
        else:
            if version >= COLUMN_SINCE.get(fld.name, 0):
                filled.append(fld.name)
            col = constant_array(COLUMN_DEFAULTS[fld.name], fld.type, table.num_rows)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA.remove_metadata()), filled


def _read_rows(file: Path, pf: pq.ParquetFile, done: int, total: int, progress: Progress | None) -> pa.Table:
    pieces = []
    try:
        for i in range(pf.metadata.num_row_groups):
            piece = pf.read_row_group(i)
            # Full validation: UTF-8 of every string, dictionary indices in range.
            piece.validate(full=True)
            pieces.append(piece)
            done += piece.num_rows
            if progress is not None:
                progress(done, total)
        table = pa.concat_tables(pieces) if pieces else pf.schema_arrow.empty_table()
    except ChargetraceError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file makes pyarrow raise many types
        raise ChargetraceError(f"{file}: corrupt or truncated data ({_first_line(exc)})") from None
    return table


def _one_recording(path: Path, metas: list[TraceMeta]) -> None:
    ids = {m.recording_id for m in metas}
    if len(ids) > 1:
        shown = ", ".join(sorted(repr(i) for i in ids)[:3])
        raise ChargetraceError(f"{path}: segments of different recordings in one directory (recording ids {shown})")


def _sorted(table: pa.Table) -> pa.Table:
    seq = numpy_of(table.column("seq"))
    # Compare as uint64: seq may use the whole range up to 2**64 - 1.
    if seq.size > 1 and bool(np.any(seq[1:] < seq[:-1])):
        table = table.take(pa.array(np.argsort(seq, kind="stable")))
    return table


def read_trace(path: str | os.PathLike[str], *, progress: Progress | None = None,
               limit: int | None = None) -> Trace:
    """Read a whole trace; raises :class:`ChargetraceError` on any bad input.

    ``progress(rows_read, rows_total)`` is called after each row group;
    ``limit`` caps the rows (default :func:`max_events`), checked before decoding.
    """
    files = trace_files(path)
    opened = [(file, _open(file)) for file in files]
    metas = [_meta_of(file, pf) for file, pf in opened]
    _one_recording(Path(path), metas)
    total = sum(pf.metadata.num_rows for _, pf in opened)
    cap = max_events() if limit is None else limit
    if total > cap:
        raise ChargetraceError(
            f"{path}: {total} events, more than the {cap} this reader loads "
            f"(raise CHARGETRACE_MAX_EVENTS to read it; about 100 bytes of memory per event)"
        )
    tables, filled_all, done = [], set(), 0
    for (file, pf), file_meta in zip(opened, metas):
        _check_layout(file, pf)
        table = _read_rows(file, pf, done, total, progress)
        done += table.num_rows
        table, filled = _conform(file, table, file_meta.schema_version)
        filled_all.update(filled)
        tables.append(table)
    meta = metas[-1]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    table = _sorted(table)
    integrity = check_rows(table, meta, str(path), missing_columns=sorted(filled_all))
    return Trace(Path(path), table, meta, integrity)


@dataclass
class TraceStream:
    """A trace opened for reading batch by batch (a streaming replay): the
    footers are checked as :func:`read_trace` checks them, the rows are read
    only by :meth:`batches`, column by column as asked. Rows come in file
    order; the caller checks that ``seq`` increases (read_trace sorts)."""

    path: Path
    meta: TraceMeta
    files: list[tuple[Path, pq.ParquetFile]]
    num_rows: int
    #: Requested columns a file lacked (filled with their defaults), after iteration;
    #: not those its schema version predates (COLUMN_SINCE), as read_trace reports them.
    missing_columns: set[str] = field(default_factory=set)
    #: Each file's schema version (metadata).
    versions: dict[Path, int] = field(default_factory=dict)

    def row_groups(self) -> Iterator[tuple[Path, pq.ParquetFile, int]]:
        for file, pf in self.files:
            for index in range(pf.metadata.num_row_groups):
                yield file, pf, index

    def read(self, file: Path, pf: pq.ParquetFile, index: int, columns: list[str]) -> pa.Table:
        """One row group's ``columns``, type-checked and conformed as read_trace does."""
        present = [c for c in columns if c in pf.schema_arrow.names]
        try:
            table = pf.read_row_group(index, columns=present)
            table.validate(full=True)  # UTF-8 of every string, dictionary indices in range
        except Exception as exc:  # noqa: BLE001 - a damaged file makes pyarrow raise many types
            raise ChargetraceError(f"{file}: corrupt or truncated data ({_first_line(exc)})") from None
        return self._conform(file, table, columns)

    def batches(self, columns: list[str], batch_rows: int = 64 * 1024) -> Iterator[pa.Table]:
        """The rows, ``batch_rows`` at a time (``ParquetFile.iter_batches``: only
        these columns are decoded), type-checked and conformed."""
        for file, pf in self.files:
            present = [c for c in columns if c in pf.schema_arrow.names]
            batches = pf.iter_batches(batch_size=batch_rows, columns=present, use_threads=False)
            while True:
                try:
                    batch = next(batches, None)
                    if batch is None:
                        break
                    batch.validate(full=True)
                except ChargetraceError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a damaged file makes pyarrow raise many types
                    raise ChargetraceError(f"{file}: corrupt or truncated data ({_first_line(exc)})") from None
                yield self._conform(file, pa.Table.from_batches([batch]), columns)

    def _conform(self, file: Path, table: pa.Table, columns: list[str]) -> pa.Table:
        arrays, fields = [], []
        for name in columns:
            fld = ARROW_SCHEMA.field(name)
            if name in table.column_names:
                col = table.column(name)
                if col.null_count:
                    raise ChargetraceError(f"{file}: column {name!r} has {col.null_count} null value(s)")
                if pa.types.is_dictionary(fld.type):
                    col = _string(file, name, col, fld.type)
                elif col.type != fld.type:
                    col = _integer(file, name, col, fld.type)
            else:
                if self.versions.get(file, 0) >= COLUMN_SINCE.get(name, 0):
                    self.missing_columns.add(name)
                col = constant_array(COLUMN_DEFAULTS[name], fld.type, table.num_rows)
            arrays.append(col)
            fields.append(fld)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def stream_trace(path: str | os.PathLike[str]) -> TraceStream:
    """Open a trace for streaming: every check of :func:`read_trace` that the
    footers allow (files, metadata, one recording, layout, required columns);
    no row cap, since rows are never all in memory."""
    files = trace_files(path)
    opened = [(file, _open(file)) for file in files]
    metas = [_meta_of(file, pf) for file, pf in opened]
    _one_recording(Path(path), metas)
    for file, pf in opened:
        _check_layout(file, pf)
        missing = REQUIRED_COLUMNS - set(pf.schema_arrow.names)
        if missing:
            raise ChargetraceError(f"{file}: not a chargetrace trace (missing column(s) {', '.join(sorted(missing))})")
    total = sum(pf.metadata.num_rows for _, pf in opened)
    return TraceStream(Path(path), metas[-1], opened, total,
                       versions={file: meta.schema_version for (file, _), meta in zip(opened, metas)})
