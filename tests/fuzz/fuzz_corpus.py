"""Seeded corpus of damaged, filtered and forged traces, built from real bases.

Scope: the generators (tests/fuzz/damage.py) cover each category of issue 8 (byte flips, truncation, footers,
foreign files, dropped / renamed / retyped / null / duplicated columns, odd
values, broken metadata, mixed segment directories, removed rows, duplicated
seq, renamed kinds, drop counters vs lost rows, float folio, markup in text).
Case ``i`` of seed ``s`` is always the same file. Bases are the shipped
synthetic trace and a fresh recording-shaped trace written by this release's
writer (page checksums, recording id, row count), each balanced.

Limits: generators damage what a reader sees; they do not model a kernel.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chargetrace.traces import ARROW_SCHEMA, TraceWriter
from chargetrace.traces.schema import METADATA_KEY
from damage import GENERATORS, OTHER_BASES, VALID

__all__ = ["Base", "Case", "CATEGORIES", "VALID", "make_bases", "make_case", "same_as_base"]

CATEGORIES = GENERATORS

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Base:
    name: str
    path: Path  # a single-file trace
    segdir: Path  # the same rows written as a segment directory (3 segments)
    table: pa.Table  # rows as read, seq order
    meta: dict  # metadata JSON of the single file


@dataclass
class Case:
    category: str
    detail: str
    path: Path
    command: str  # replay | info | mutate | anonymize
    may_be_intact: bool = False  # balanced is an allowed answer


def make_bases(work: Path) -> list[Base]:
    """The balanced traces every case starts from."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import hmm_workload, synthetic_meta

    bases = []
    shipped = REPO / "traces" / "synthetic-hmm-lifecycle-6.7.parquet"
    fresh = work / "fresh.parquet"
    with TraceWriter(fresh, synthetic_meta("6.7+", 4242)) as writer:  # pointers hidden, checksums on
        writer.append_rows(hmm_workload("6.7+", seed=11).rows)
    for name, path in (("shipped-v1", shipped), ("fresh-v2", fresh)):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[METADATA_KEY])
        segdir = work / f"{name}.d"
        segdir.mkdir()
        bounds = np.linspace(0, table.num_rows, 4).astype(int)
        for i in range(3):
            piece = table.slice(bounds[i], bounds[i + 1] - bounds[i])
            pq.write_table(piece, segdir / f"seg-{i:06d}.parquet", write_page_checksum=True)
        bases.append(Base(name, path, segdir, table.replace_schema_metadata(None), meta))
    return bases


_COMMANDS = ["replay", "replay", "replay", "info", "replay", "anonymize", "replay", "mutate"]


def make_case(seed: int, index: int, bases: list[Base], work: Path) -> Case:
    """Case ``index`` of ``seed``: categories in turn, parameters from a seeded RNG."""
    OTHER_BASES[:] = bases
    names = list(CATEGORIES)
    category = names[index % len(names)]
    rng = random.Random(f"{seed}:{index}")
    # Byte flips need page checksums: only the fresh base has them.
    base = bases[-1] if category == "byte flips" else rng.choice(bases)
    out = work / f"case-{index}.parquet"
    if os.path.lexists(out):
        shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
    detail, path = CATEGORIES[category](rng, base, out)
    command = _COMMANDS[(index // len(names)) % len(_COMMANDS)]
    return Case(category, f"{base.name}: {detail}", path, command,
                may_be_intact=category == "markup in text" or detail.startswith(VALID))


def same_as_base(path: Path, bases: list[Base]) -> bool:
    """Whether ``path`` holds exactly a base's rows and meaningful metadata (read without checks).

    A case that is not damaged after all (a flipped bit in a statistic, a
    lossless retype) may be called balanced; any other may not.
    """
    cosmetic = {"host", "kernel_release", "recorder", "started_at", "ended_at", "provenance", "recording_id"}

    def meaningful(meta: dict) -> dict:
        # Free text the replay never reads; era.detected_by only explains the era.
        out = {k: v for k, v in meta.items() if k not in cosmetic}
        if isinstance(out.get("era"), dict):
            out["era"] = {k: v for k, v in out["era"].items() if k != "detected_by"}
        return out

    try:
        files = sorted(path.glob("seg-*.parquet")) if path.is_dir() else [path]
        tables = [pq.read_table(f) for f in files]
        raw = json.loads(pq.ParquetFile(files[-1]).metadata.metadata[METADATA_KEY])
    except Exception:  # noqa: BLE001 - unreadable raw: certainly not the base
        return False
    for base in bases:
        # A base of an older schema version lacks the newer columns: compare its own.
        names = [n for n in ARROW_SCHEMA.names if n in base.table.column_names]
        schema = pa.schema([ARROW_SCHEMA.field(n) for n in names])
        try:
            table = pa.concat_tables([t.replace_schema_metadata(None).select(names).cast(schema)
                                      for t in tables]).sort_by("seq")
        except Exception:  # noqa: BLE001 - a column missing or not castable: not this base
            continue
        same_meta = meaningful(raw) == meaningful(base.meta)
        if same_meta and table.equals(base.table.select(names).cast(schema)):
            return True
    return False
