"""Realistic large traces for benchmarks: a recorded trace tiled N times.

    python bench/tile.py SOURCE OUT --events 1e7      # e.g. SOURCE traces/hmm-tests-6.1.parquet
    python bench/tile.py --sizes 1e6,1e7,1e8 --out-dir /var/tmp/tiles   # the standard set

Each tile is the whole source recording again, shifted so that it is a new
stretch of the same kind of work, never a copy the replay could confuse with
the first: ``seq`` continues (tile i starts at i x the source's row count),
``ts_ns`` moves past the previous tile's end, folio ids get a fresh range
(id + i << 40; 0 stays "none"), and every memcg other than 0 becomes a fresh
memcg of its own (id + i << 32) listed in ``scope.memcgs`` like the original
(same parent mapping, same ``created_in_scope``), so each tile charges and
drains its own memcgs as the recording did — a balanced source stays
balanced, because no tile's leftovers (kept page cache, say) pile up in a
memcg whose last usage sample shows one tile's worth.

The metadata is made consistent with the rows: schema version current,
``rows`` = tiles x source rows, a fresh ``recording_id``, ``complete``,
``drops`` (and ``lost`` rows) multiplied, the in-kernel ``ledger`` repeated
per tile memcg, scope ``phases`` (``start`` from the first tile, the later
phases from the last), ``armed_ns`` from the first tile; the result passes
traces/integrity.py. Rows are written a tile at a time (bounded memory: one
source table plus one tile), zstd, 128 Ki-row groups, page checksums, under a
temporary name renamed on success (traces.writer.atomic_output).

Limits: a source whose folio ids are raw kernel pointers (``record
--raw-pointers``) is refused (no free id range above them); the tiles share
pids and comms (a workload run again by the same processes); ``provenance``
says the trace is tiled and from what. Above ``CHARGETRACE_MAX_EVENTS``
(50,000,000 by default) the reader refuses a trace: raise it to read 1e8.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chargetrace.traces import ARROW_SCHEMA, SCHEMA_VERSION, ChargetraceError, TraceMeta, read_trace
from chargetrace.traces.schema import METADATA_DIGEST_KEY, METADATA_KEY
from chargetrace.traces.writer import atomic_output

__all__ = ["tile", "tile_meta", "FOLIO_SHIFT", "MEMCG_SHIFT", "DEFAULT_SOURCE"]

ROOT = Path(__file__).resolve().parent.parent
#: The largest recorded (not generated) shipped trace: real hmm-tests on 6.1.
DEFAULT_SOURCE = ROOT / "traces" / "hmm-tests-6.1.parquet"
FOLIO_SHIFT = 40
MEMCG_SHIFT = 32
_ROW_GROUP_ROWS = 128 * 1024


def _memcg_of(memcg: int, tile: int) -> int:
    return memcg + (tile << MEMCG_SHIFT) if memcg else 0


def tile_meta(meta: TraceMeta, tiles: int, rows: int, seq_span: int, source: str) -> TraceMeta:
    """The metadata of ``tiles`` copies of a trace of ``rows`` rows (see the module doc)."""
    out = copy.deepcopy(meta)
    scope = out.scope
    entries = list(scope.memcgs or [])
    if scope.memcg and not any(int(e.get("memcg") or 0) == scope.memcg for e in entries):
        entries.insert(0, {"memcg": scope.memcg, "parent": 0, "path": scope.cgroup_path,
                           "created_in_scope": bool(scope.fresh)})
    listed = {int(e.get("memcg") or 0) for e in entries}
    memcgs = []
    for i in range(tiles):
        for e in entries:
            m, parent = int(e.get("memcg") or 0), int(e.get("parent") or 0)
            memcgs.append({**e, "memcg": _memcg_of(m, i),
                           "parent": _memcg_of(parent, i) if parent in listed else parent,
                           "path": e.get("path", "") + (f"#tile{i}" if i else ""),
                           # A copy is another memcg than the scope's own: it is observed
                           # from its creation exactly when its original was.
                           "created_in_scope": bool(e.get("created_in_scope"))
                           or (i > 0 and m == scope.memcg and bool(scope.fresh))})
    scope.memcgs = memcgs
    if scope.phases:
        last = (tiles - 1) * seq_span
        scope.phases = {k: v + (0 if k == "start" else last) for k, v in scope.phases.items()}
    if out.ledger is not None:
        out.ledger = [{**e, "memcg": _memcg_of(int(e["memcg"]), i)} for i in range(tiles) for e in out.ledger]
    drops = dict(out.drops or {})
    drops["total"] = int(drops.get("total", 0) or 0) * tiles
    drops["per_cpu"] = {cpu: n * tiles for cpu, n in (drops.get("per_cpu") or {}).items()}
    for key in ("missed", "rescued"):
        if isinstance(drops.get(key), dict):
            drops[key] = {k: v * tiles if isinstance(v, int) else v for k, v in drops[key].items()}
    return dataclasses.replace(
        out, schema_version=SCHEMA_VERSION, drops=drops, rows=tiles * rows, complete=True,
        recording_id=uuid.uuid4().hex, provenance={**out.provenance, "tiled": {"source": source, "tiles": tiles}},
    )


def _shift_ids(col: np.ndarray, offset: int) -> np.ndarray:
    return np.where(col != 0, col + np.uint64(offset), col)


def tile(source: str | Path, out: str | Path, events: float, *, overwrite: bool = False) -> Path:
    """Write ``out``: ``source`` tiled to at least ``events`` rows (whole tiles). Returns ``out``."""
    trace = read_trace(source)
    table, meta, rows = trace.table, trace.meta, trace.num_events
    if trace.integrity.problems:
        raise ChargetraceError(f"{source}: not a whole recording ({trace.integrity.problems[0]}); tile a clean one")
    if rows == 0:
        raise ChargetraceError(f"{source}: no rows to tile")
    tiles = max(1, -(-int(events) // rows))
    seq = table.column("seq").to_numpy()
    ts = table.column("ts_ns").to_numpy()
    folio, folio_new = table.column("folio").to_numpy(), table.column("folio_new").to_numpy()
    memcg, memcg_new = table.column("memcg").to_numpy(), table.column("memcg_new").to_numpy()
    top = int(max(folio.max(initial=0), folio_new.max(initial=0)))
    if top >> FOLIO_SHIFT or tiles >> (64 - FOLIO_SHIFT) or int(max(memcg.max(initial=0), memcg_new.max(initial=0))) >> MEMCG_SHIFT:
        raise ChargetraceError(f"{source}: folio or memcg ids too large to tile (raw pointers?)")
    seq_span = int(seq.max()) + 1
    start = meta.armed_ns if isinstance(meta.armed_ns, int) else int(ts.min())
    ts_span = int(ts.max()) - start + 1
    new_meta = tile_meta(meta, tiles, rows, seq_span, Path(source).name)
    blob = new_meta.to_json()
    schema = ARROW_SCHEMA.with_metadata({METADATA_KEY: blob, METADATA_DIGEST_KEY: hashlib.sha256(blob).hexdigest().encode()})
    names = {name: table.schema.get_field_index(name) for name in ("seq", "ts_ns", "folio", "folio_new", "memcg", "memcg_new")}
    with atomic_output(Path(out), overwrite=overwrite) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_page_checksum=True) as writer:
            for i in range(tiles):
                shifted = {
                    "seq": seq + np.uint64(i * seq_span),
                    "ts_ns": ts + np.uint64(i * ts_span),
                    "folio": _shift_ids(folio, i << FOLIO_SHIFT),
                    "folio_new": _shift_ids(folio_new, i << FOLIO_SHIFT),
                    "memcg": _shift_ids(memcg, i << MEMCG_SHIFT),
                    "memcg_new": _shift_ids(memcg_new, i << MEMCG_SHIFT),
                }
                piece = table
                for name, values in shifted.items():
                    piece = piece.set_column(names[name], name, pa.array(values, pa.uint64()))
                writer.write_table(piece.cast(schema.remove_metadata()).replace_schema_metadata(schema.metadata),
                                   row_group_size=_ROW_GROUP_ROWS)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--events", type=float, default=1e6, help="rows wanted (rounded up to whole tiles)")
    parser.add_argument("--sizes", default="", help="comma-separated sizes: write OUT-DIR/tiled-<size>.parquet each")
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    try:
        if args.sizes:
            for size in args.sizes.split(","):
                path = args.out_dir / f"tiled-{size.strip()}.parquet"
                tile(args.source, path, float(size), overwrite=args.force)
                print(path)
        elif args.out is None:
            parser.error("OUT is required without --sizes")
        else:
            print(tile(args.source, args.out, args.events, overwrite=args.force))
    except ChargetraceError as exc:
        print(f"tile: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
