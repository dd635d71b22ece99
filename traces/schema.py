"""The chargetrace event schema: columns, event kinds and the schema version.

This module is the single owner of the on-disk layout. The recorder (tracer/)
builds Arrow batches with :data:`ARROW_SCHEMA`; the reader fills columns that an
older version lacked with :data:`COLUMN_DEFAULTS`, so older traces are read by
column name. Every change bumps :data:`SCHEMA_VERSION` and gets a line in
traces/SCHEMA.md.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION",
    "OLDEST_READABLE_VERSION",
    "ARROW_SCHEMA",
    "COLUMNS",
    "COLUMN_DEFAULTS",
    "COLUMN_SINCE",
    "REQUIRED_COLUMNS",
    "KINDS",
    "FOLIO_KINDS",
    "METADATA_KEY",
    "METADATA_DIGEST_KEY",
    "MAX_STRING_BYTES",
    "MAX_EVENTS_DEFAULT",
]

#: Version of the layout written by this release.
SCHEMA_VERSION = 3
#: Oldest version this release still reads (by column name).
OLDEST_READABLE_VERSION = 1

#: Key of the JSON metadata blob in each Parquet file's key-value metadata.
METADATA_KEY = b"chargetrace"
#: Key of the SHA-256 (hex) of that blob: Parquet's page checksums do not cover
#: the footer, so a flipped bit in the metadata is found through this (version 2).
METADATA_DIGEST_KEY = b"chargetrace.sha256"

_DICT_STR = pa.dictionary(pa.int32(), pa.string())

ARROW_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.uint64(), nullable=False),
        pa.field("ts_ns", pa.uint64(), nullable=False),
        pa.field("cpu", pa.uint32(), nullable=False),
        pa.field("pid", pa.uint32(), nullable=False),
        pa.field("tid", pa.uint32(), nullable=False),
        pa.field("comm", _DICT_STR, nullable=False),
        pa.field("kind", _DICT_STR, nullable=False),
        pa.field("probe", _DICT_STR, nullable=False),
        pa.field("folio", pa.uint64(), nullable=False),
        pa.field("folio_new", pa.uint64(), nullable=False),
        pa.field("nr_pages", pa.uint32(), nullable=False),
        pa.field("memcg", pa.uint64(), nullable=False),
        pa.field("memcg_new", pa.uint64(), nullable=False),
        pa.field("addr", pa.uint64(), nullable=False),
        pa.field("ret", pa.int64(), nullable=False),
        pa.field("item", _DICT_STR, nullable=False),
        pa.field("value", pa.int64(), nullable=False),
        pa.field("span_ns", pa.uint64(), nullable=False),
        pa.field("pgmap_ops", pa.uint64(), nullable=False),
    ]
)

COLUMNS: tuple[str, ...] = tuple(ARROW_SCHEMA.names)

#: Columns without which a file is not a chargetrace trace at all.
REQUIRED_COLUMNS: frozenset[str] = frozenset({"seq", "ts_ns", "kind"})

#: Value used for a column that an older schema version did not have.
COLUMN_DEFAULTS: dict[str, object] = {
    "ts_ns": 0,
    "cpu": 0,
    "pid": 0,
    "tid": 0,
    "comm": "",
    "probe": "",
    "folio": 0,
    "folio_new": 0,
    "nr_pages": 0,
    "memcg": 0,
    "memcg_new": 0,
    "addr": 0,
    "ret": 0,
    "item": "",
    "value": 0,
    "span_ns": 0,
    "pgmap_ops": 0,
}

#: Schema version that introduced a column. A trace of an older version lacks
#: it by design (its default means "not recorded"), so the reader does not
#: report it as a column filled with defaults.
COLUMN_SINCE: dict[str, int] = {
    "pgmap_ops": 3,
}

#: Every event kind with a one-line meaning; SCHEMA.md gives the field use.
KINDS: dict[str, str] = {
    "fault": "user page fault (addr, value=error code)",
    "device_fault": "CPU fault on a device-private entry enters the driver's migrate_to_ram",
    "device_fault_done": "that fault returns (ret = vm_fault_t)",
    "migrate_setup": "migrate_vma_setup / migrate_device_range returned (value=cpages)",
    "migrate_pages": "migrate_vma_pages / migrate_device_pages returned (value=sources migrated, -1 unknown)",
    "migrate_finalize": "migrate_vma_finalize / migrate_device_finalize entered",
    "page_migration": "migrate_pages() batch, e.g. compaction (item=reason, value=succeeded, ret=failed)",
    "charge": "folio charge returned (memcg = folio's memcg after, ret = 0 on success)",
    "uncharge": "folio uncharge entered (memcg = folio's memcg at entry, 0 = nothing to do)",
    "transfer": "mem_cgroup_migrate(folio -> folio_new) (memcg = old's at entry, memcg_new = new's at return)",
    "replace": "mem_cgroup_replace_folio(folio -> folio_new): force-charges folio_new",
    "device_free": "device-private folio freed (memcg at entry, value = refcount at entry, -1 unknown)",
    "split": "large folio split (folio = head, nr_pages = pages before, value = pages per new folio)",
    "memcg_stat": "memcg counter tracepoint (memcg, item = counter name, value = delta)",
    "usage": "sample of a memcg's usage (item = file name, value = bytes)",
    "lru_insert": "folio put on an LRU list (memcg = folio's memcg then, 0 = uncharged)",
    "memstat": "sample of one memory.stat key (memcg, item = key as the file spells it, value as printed)",
    "fork": "process fork (pid = parent, value = child pid)",
    "exit": "task exit (value = 1 when the whole thread group is gone)",
    "lost": "events dropped (cpu, value = count, span_ns = window ending at ts_ns)",
}

#: Longest string a dictionary column may hold (comm is 16 bytes, probe and
#: counter names are short): a longer one is damage or forgery, and decoding it
#: once per row is what exhausts memory.
MAX_STRING_BYTES = 4096

#: Default cap on the rows of one trace (the reader refuses more before
#: decoding them; ``CHARGETRACE_MAX_EVENTS`` or ``--max-events`` raise it).
#: A row costs about 100 bytes in memory once read.
MAX_EVENTS_DEFAULT = 50_000_000

#: Kinds that carry a folio id.
FOLIO_KINDS: frozenset[str] = frozenset(
    {"charge", "uncharge", "transfer", "replace", "device_free", "lru_insert"}
)
