"""Write chargetrace traces: segment files while recording, one file at the end.

A :class:`TraceWriter` buffers rows and writes each flush as a complete,
closed segment file (written under a temporary name, then renamed), so a
recorder killed at any moment leaves only readable segments behind and loses
at most the rows buffered since the last flush. When the target is a
``*.parquet`` file, segments go to ``<target>.partial/`` and :meth:`close`
merges them into the target; when it is a directory, the segments stay there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import ChargetraceError
from .metadata import TraceMeta
from .schema import ARROW_SCHEMA, COLUMN_DEFAULTS, METADATA_KEY

__all__ = ["TraceWriter", "write_table", "segment_name", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"
_COMPRESSION = "zstd"
_ROW_GROUP_ROWS = 128 * 1024


def segment_name(index: int) -> str:
    return f"seg-{index:06d}.parquet"


def _schema_with(meta: TraceMeta) -> pa.Schema:
    return ARROW_SCHEMA.with_metadata({METADATA_KEY: meta.to_json()})


def write_table(table: pa.Table, path: str | os.PathLike[str], meta: TraceMeta) -> None:
    """Write a whole table as one trace file (atomically: temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    table = conform(table).replace_schema_metadata({METADATA_KEY: meta.to_json()})
    try:
        pq.write_table(table, tmp, compression=_COMPRESSION, row_group_size=_ROW_GROUP_ROWS)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ChargetraceError(f"{path}: cannot write trace ({exc.strerror or exc})") from None


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
    numbered in arrival order.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        meta: TraceMeta,
        *,
        flush_rows: int = 256 * 1024,
        flush_seconds: float = 2.0,
    ) -> None:
        self.target = Path(target)
        self.meta = meta
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.single_file = self.target.suffix == ".parquet"
        self.segment_dir = (
            self.target.with_name(self.target.name + PARTIAL_SUFFIX) if self.single_file else self.target
        )
        try:
            if self.segment_dir.exists():
                if any(self.segment_dir.iterdir()):
                    raise ChargetraceError(f"{self.segment_dir}: already exists and is not empty")
            self.segment_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ChargetraceError(f"{self.segment_dir}: cannot create ({exc.strerror or exc})") from None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._segments = 0
        self._next_seq = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.closed = False

    # -- input -------------------------------------------------------------
    def append_columns(self, columns: Mapping[str, Any]) -> None:
        table = columns_to_table(columns, self._next_seq)
        if table.num_rows == 0:
            return
        self._next_seq = int(pc.max(table.column("seq")).as_py()) + 1
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
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        write_table(table, self.segment_dir / segment_name(self._segments), self.meta)
        self._segments += 1
        self.rows_written += table.num_rows

    def close(self) -> Path:
        """Flush, then (single-file target) merge the segments into the target."""
        if self.closed:
            return self.target
        self.flush()
        if self._segments == 0:
            # An empty recording is still a valid trace: it says nothing happened.
            write_table(ARROW_SCHEMA.empty_table(), self.segment_dir / segment_name(0), self.meta)
            self._segments = 1
        else:
            # Rewrite the last segment's metadata so it carries the final meta
            # (end time, drop counts) even if the merge below never happens.
            last = self.segment_dir / segment_name(self._segments - 1)
            write_table(pq.read_table(last), last, self.meta)
        if self.single_file:
            self._merge()
        self.closed = True
        return self.target

    def _merge(self) -> None:
        segments = sorted(self.segment_dir.glob("seg-*.parquet"))
        tmp = self.target.with_name(self.target.name + ".tmp")
        try:
            with pq.ParquetWriter(tmp, _schema_with(self.meta), compression=_COMPRESSION) as out:
                for seg in segments:
                    out.write_table(conform(pq.read_table(seg)), row_group_size=_ROW_GROUP_ROWS)
            os.replace(tmp, self.target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ChargetraceError(
                f"{self.target}: cannot write ({exc.strerror or exc}); segments kept in {self.segment_dir}"
            ) from None
        shutil.rmtree(self.segment_dir, ignore_errors=True)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
