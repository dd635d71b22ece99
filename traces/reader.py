"""Read chargetrace traces: a Parquet file or a directory of segment files.

Everything that can be wrong with an input (missing, empty, truncated, not
Parquet, Parquet but not a trace, a newer or older schema, wrong column types)
becomes one :class:`ChargetraceError` line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ChargetraceError
from .metadata import TraceMeta
from .schema import (
    ARROW_SCHEMA,
    COLUMN_DEFAULTS,
    METADATA_KEY,
    OLDEST_READABLE_VERSION,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
)
from .writer import PARTIAL_SUFFIX

__all__ = ["Trace", "read_trace", "read_meta", "trace_files"]


@dataclass
class Trace:
    """A whole trace in memory: rows in ``seq`` order plus its metadata."""

    path: Path
    table: pa.Table
    meta: TraceMeta

    @property
    def num_events(self) -> int:
        return self.table.num_rows


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
        files = sorted(path.glob("seg-*.parquet"))
        if not files:
            raise ChargetraceError(f"{path}: directory holds no trace segments (seg-*.parquet)")
        return files
    return [path]


def _open(file: Path) -> pq.ParquetFile:
    try:
        if file.stat().st_size == 0:
            raise ChargetraceError(f"{file}: empty file, not a trace")
        return pq.ParquetFile(file)
    except ChargetraceError:
        raise
    except OSError as exc:
        raise ChargetraceError(f"{file}: cannot read ({exc.strerror or exc})") from None
    except (pa.ArrowException, ValueError) as exc:
        raise ChargetraceError(f"{file}: not a Parquet file, or truncated ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _meta_of(file: Path, pf: pq.ParquetFile) -> TraceMeta:
    kv = pf.schema_arrow.metadata or {}
    raw = kv.get(METADATA_KEY)
    if raw is None:
        raise ChargetraceError(f"{file}: a Parquet file, but not a chargetrace trace (no chargetrace metadata)")
    meta = TraceMeta.from_json(raw, str(file))
    version = meta.schema_version
    if not isinstance(version, int):
        raise ChargetraceError(f"{file}: schema version {version!r} is not a number")
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


def _conform(file: Path, table: pa.Table) -> pa.Table:
    missing = REQUIRED_COLUMNS - set(table.column_names)
    if missing:
        raise ChargetraceError(f"{file}: not a chargetrace trace (missing column(s) {', '.join(sorted(missing))})")
    arrays = []
    for fld in ARROW_SCHEMA:
        if fld.name in table.column_names:
            col = table.column(fld.name)
            if col.null_count:
                raise ChargetraceError(f"{file}: column {fld.name!r} has {col.null_count} null value(s)")
            if col.type != fld.type:
                try:
                    col = col.cast(fld.type)
                except (pa.ArrowException, ValueError):
                    raise ChargetraceError(
                        f"{file}: column {fld.name!r} has type {col.type}, expected {fld.type}"
                    ) from None
        else:
            col = pa.repeat(pa.scalar(COLUMN_DEFAULTS[fld.name], fld.type), table.num_rows)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA.remove_metadata())


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a whole trace; raises :class:`ChargetraceError` on any bad input."""
    files = trace_files(path)
    tables, meta = [], None
    for file in files:
        pf = _open(file)
        meta = _meta_of(file, pf)
        try:
            table = pf.read()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ChargetraceError(f"{file}: corrupt or truncated data ({_first_line(exc)})") from None
        tables.append(_conform(file, table))
    assert meta is not None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    seq = table.column("seq")
    if table.num_rows > 1:
        import pyarrow.compute as pc

        diffs = pc.pairwise_diff(seq.combine_chunks().cast(pa.int64()))
        if pc.min(diffs).as_py() <= 0:
            table = table.sort_by("seq")
    return Trace(Path(path), table, meta)
