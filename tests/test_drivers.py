"""Per-driver attribution of device-private memory, end to end without a kernel.

The recorder names each ``pgmap_ops`` pointer through /proc/kallsyms and the
driver catalogue (tracer/drivers.py) before the writer replaces it by an id;
the reader keeps version-2 traces (no column) whole; replay attributes faults,
migrations, frees and end-of-trace charges per driver (replay/drivers.py), with
either replay engine (the compiled one keeps the figures in its arrays,
replay/compiled/drivers.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import MEMCG, meta_for, rows_of

from chargetrace.replay import ReplayConfig
from chargetrace.replay.drivers import UNATTRIBUTED
from chargetrace.replay.report import JSON_VERSION
from chargetrace.traces import TraceWriter, read_trace, write_table
from chargetrace.traces.anonymize import anonymize
from chargetrace.traces.schema import METADATA_DIGEST_KEY, METADATA_KEY
from chargetrace.tracer.drivers import CATALOGUE, UNNAMED, KallsymsData, PgmapTable, driver_name

DMIRROR = 0xFFFFFFFFC0A41240  # a module address, as in /proc/kallsyms
NOUVEAU = 0xFFFFFFFFC1B00080
STRAY = 0xFFFFFFFFC0F00000  # no symbol starts there

KALLSYMS = f"""\
ffffffff81000000 T _stext
{DMIRROR:016x} r dmirror_devmem_ops\t[test_hmm]
{DMIRROR + 0x40:016x} t dmirror_devmem_fault\t[test_hmm]
{NOUVEAU:016x} r nouveau_dmem_pagemap_ops\t[nouveau]
ffffffffc0c00000 d some_other_ops\t[vendor_gpu]
"""


@pytest.fixture
def kallsyms(tmp_path: Path) -> Path:
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    return path


def test_catalogue_names_and_unknown_symbols() -> None:
    assert driver_name("dmirror_devmem_ops", "test_hmm") == "test_hmm (dmirror)"
    assert driver_name("svm_migrate_pgmap_ops", "amdgpu").startswith("amdgpu")
    assert driver_name("some_other_ops", "vendor_gpu") == "some_other_ops [vendor_gpu]"
    assert driver_name("builtin_ops", "") == "builtin_ops"
    assert driver_name("", "") == UNNAMED
    assert len({d.symbol for d in CATALOGUE}) == len(CATALOGUE)


def test_kallsyms_data_symbols_by_exact_address(kallsyms: Path) -> None:
    syms = KallsymsData(kallsyms)
    assert syms.lookup(DMIRROR) == ("dmirror_devmem_ops", "test_hmm")
    assert syms.lookup(DMIRROR + 0x40) == ("", "")  # a text symbol is no ops table
    assert syms.lookup(DMIRROR + 8) == ("", "")  # inside the table is not its start


def test_a_module_loaded_later_is_found_by_reading_again(kallsyms: Path) -> None:
    syms = KallsymsData(kallsyms)
    assert syms.lookup(STRAY) == ("", "")
    kallsyms.write_text(KALLSYMS + f"{STRAY:016x} r late_ops\t[late]\n")
    assert syms.lookup(STRAY) == ("late_ops", "late")


def _device_rows() -> list[dict]:
    # Raw pointers as the BPF records carry them; folio ids are small already.
    return rows_of(
        ("device_fault", {"pgmap_ops": DMIRROR, "addr": 0x7000}),
        ("device_fault_done", {"pgmap_ops": DMIRROR}),
        ("device_free", {"folio": 0xD000, "nr_pages": 1, "pgmap_ops": NOUVEAU}),
        ("device_free", {"folio": 0xD001, "nr_pages": 1, "pgmap_ops": DMIRROR}),
        ("device_free", {"folio": 0xD002, "nr_pages": 1, "pgmap_ops": STRAY}),
    )


def _record(path: Path, rows: list[dict], kallsyms: Path, *, raw_pointers: bool) -> Path:
    meta = meta_for()
    with TraceWriter(path, meta, raw_pointers=raw_pointers) as writer:
        table = PgmapTable(meta, writer.pgmap_id, KallsymsData(kallsyms))
        for row in rows:  # one batch per row: ids must stay stable across batches
            cols = {k: [v] for k, v in row.items()}
            table.note({"pgmap_ops": pa.array(cols.get("pgmap_ops", [0]), pa.uint64())})
            writer.append_rows([row])
    return path


def test_recorded_pointers_become_ids_named_in_the_metadata(tmp_path: Path, kallsyms: Path) -> None:
    path = _record(tmp_path / "t.parquet", _device_rows(), kallsyms, raw_pointers=False)
    trace = read_trace(path)
    assert trace.integrity.clean, trace.integrity.problems
    ops = trace.table.column("pgmap_ops").to_pylist()
    assert ops == [1, 1, 2, 1, 3]  # by first appearance
    names = {e["id"]: (e["symbol"], e["module"], e["driver"]) for e in trace.meta.pgmaps}
    assert names == {1: ("dmirror_devmem_ops", "test_hmm", "test_hmm (dmirror)"),
                     2: ("nouveau_dmem_pagemap_ops", "nouveau", "nouveau"),
                     3: ("", "", UNNAMED)}
    # No kernel address is left anywhere in the file (rows or metadata).
    blob = path.read_bytes()
    for raw in (DMIRROR, NOUVEAU, STRAY):
        assert raw.to_bytes(8, "little") not in blob and str(raw).encode() not in blob


def test_raw_pointers_key_the_table_by_address_and_anonymize_renumbers_both(tmp_path: Path, kallsyms: Path) -> None:
    raw = read_trace(_record(tmp_path / "raw.parquet", _device_rows(), kallsyms, raw_pointers=True))
    assert {e["id"] for e in raw.meta.pgmaps} == {DMIRROR, NOUVEAU, STRAY}
    assert raw.table.column("pgmap_ops").to_pylist()[0] == DMIRROR
    table, meta = anonymize(raw)
    write_table(table, tmp_path / "anon.parquet", meta)
    anon = read_trace(tmp_path / "anon.parquet")
    by_id = {e["id"]: e["driver"] for e in anon.meta.pgmaps}
    drivers = [by_id[i] for i in anon.table.column("pgmap_ops").to_pylist()]
    assert drivers == ["test_hmm (dmirror)", "test_hmm (dmirror)", "nouveau", "test_hmm (dmirror)", UNNAMED]
    assert max(anon.table.column("pgmap_ops").to_pylist()) == 3


def test_version_2_traces_lack_the_column_by_design(tmp_path: Path) -> None:
    """A v2 trace has no pgmap_ops: read as 0 and not a damaged trace; a v3 one without it is."""
    path = _record(tmp_path / "t.parquet", rows_of(("device_free", {"folio": 0xD000, "nr_pages": 1})),
                   tmp_path / "none", raw_pointers=True)
    table = pq.read_table(path)
    meta_blob = json.loads(table.schema.metadata[b"chargetrace"])
    for version, clean in ((2, True), (3, False)):
        meta = read_trace(path).meta
        meta.schema_version = version
        out = tmp_path / f"v{version}.parquet"
        meta.rows = table.num_rows
        blob = meta.to_json()
        old = table.drop(["pgmap_ops"]).replace_schema_metadata(
            {METADATA_KEY: blob, METADATA_DIGEST_KEY: hashlib.sha256(blob).hexdigest().encode()})
        pq.write_table(old, out)
        trace = read_trace(out)
        assert trace.table.column("pgmap_ops").to_pylist() == [0]
        assert trace.integrity.clean is clean, (version, trace.integrity.problems)
    assert meta_blob["schema_version"] == 3


@pytest.fixture(params=["reference", "compiled"])
def engine(request) -> str:
    if request.param == "compiled":
        pytest.importorskip("numba", reason="the compiled engine needs numba (pip install numba)")
    return request.param


def _no_fallback(line: str) -> None:
    raise AssertionError(f"the engine asked for did not replay: {line}")


def _replay_rows(tmp_path: Path, rows: list[dict], pgmaps: list[dict] | None, engine: str = "reference"):
    from chargetrace.replay.engine import replay_file

    meta = meta_for("force")
    meta.pgmaps = pgmaps
    path = tmp_path / "r.parquet"
    with TraceWriter(path, meta, raw_pointers=True) as writer:
        writer.append_rows(rows)
    return replay_file(path, ReplayConfig(engine=engine, notice=_no_fallback))[0]


F, G, H, D1, D2, D3 = 0x1000, 0x2000, 0x3000, 0xD000, 0xD001, 0xD002
DM, NV = 1, 2  # pgmap_ops ids


def _migration_story() -> list[dict]:
    """Two pages to dmirror memory, one back by a CPU fault, both freed; one page to
    nouveau memory, freed while still charged, so its uncharge follows."""
    def t(old, new):
        return ("transfer", {"folio": old, "folio_new": new, "memcg": MEMCG, "memcg_new": MEMCG, "nr_pages": 1})
    return rows_of(
        ("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1}),
        ("charge", {"folio": G, "memcg": MEMCG, "nr_pages": 1}),
        ("charge", {"folio": H, "memcg": MEMCG, "nr_pages": 1}),
        ("migrate_setup", {"item": "migrate_vma_setup"}), t(F, D1), t(G, D2),
        ("migrate_pages", {"item": "migrate_vma_pages", "value": 2}), ("migrate_finalize", {"item": "migrate_vma_finalize"}),
        ("migrate_setup", {"item": "migrate_vma_setup"}), t(H, D3),
        ("migrate_pages", {"item": "migrate_vma_pages", "value": 1}), ("migrate_finalize", {"item": "migrate_vma_finalize"}),
        ("device_fault", {"pgmap_ops": DM, "addr": 0x7000}),
        ("migrate_setup", {"item": "migrate_vma_setup"}), t(D1, 0x5000),
        ("migrate_pages", {"item": "migrate_vma_pages", "value": 1}), ("migrate_finalize", {"item": "migrate_vma_finalize"}),
        ("device_fault_done", {"pgmap_ops": DM}),
        ("device_free", {"folio": D1, "memcg": MEMCG, "nr_pages": 1, "pgmap_ops": DM}),
        ("uncharge", {"folio": D1, "memcg": MEMCG, "nr_pages": 1}),
        ("device_free", {"folio": D2, "memcg": MEMCG, "nr_pages": 1, "pgmap_ops": DM}),
        ("uncharge", {"folio": D2, "memcg": MEMCG, "nr_pages": 1}),
        ("device_free", {"folio": D3, "memcg": MEMCG, "nr_pages": 1, "pgmap_ops": NV}),
        ("uncharge", {"folio": D3, "memcg": MEMCG, "nr_pages": 1}),
    )


PGMAPS = [{"id": DM, "symbol": "dmirror_devmem_ops", "module": "test_hmm", "driver": "test_hmm (dmirror)"},
          {"id": NV, "symbol": "nouveau_dmem_pagemap_ops", "module": "nouveau", "driver": "nouveau"}]


def test_replay_reports_each_drivers_pages(tmp_path: Path, engine: str) -> None:
    report = _replay_rows(tmp_path, _migration_story(), PGMAPS, engine)
    assert report.violations == [], [f.message for f in report.violations]
    rows = {d.driver: d for d in report.drivers}
    assert set(rows) == {"test_hmm (dmirror)", "nouveau"}
    dm, nv = rows["test_hmm (dmirror)"], rows["nouveau"]
    assert (dm.device_faults, dm.migrated_to_device, dm.migrated_from_device, dm.freed) == (1, 2, 1, 2)
    assert (nv.device_faults, nv.migrated_to_device, nv.migrated_from_device, nv.freed) == (0, 1, 0, 1)
    assert dm.charged_at_end == nv.charged_at_end == 0
    out = report.to_json()
    assert out["json_version"] == JSON_VERSION == 2
    assert [d["driver"] for d in out["drivers"]] == ["test_hmm (dmirror)", "nouveau"]


def test_a_device_page_still_charged_at_the_end_counts_for_its_driver(tmp_path: Path, engine: str) -> None:
    """A device page is reused: freed once (which names its driver), migrated to again and
    still charged when the trace ends."""
    K = 0x4000
    rows = _migration_story() + rows_of(
        ("charge", {"folio": K, "memcg": MEMCG, "nr_pages": 1}),
        ("migrate_setup", {"item": "migrate_vma_setup"}),
        ("transfer", {"folio": K, "folio_new": D1, "memcg": MEMCG, "memcg_new": MEMCG, "nr_pages": 1}),
        ("migrate_pages", {"item": "migrate_vma_pages", "value": 1}),
        ("migrate_finalize", {"item": "migrate_vma_finalize"}),
    )
    for i, row in enumerate(rows):
        row["ts_ns"] = 1000 * (i + 1)
    report = _replay_rows(tmp_path, rows, PGMAPS, engine)
    by = {d.driver: d for d in report.drivers}
    assert by["test_hmm (dmirror)"].migrated_to_device == 3 and by["test_hmm (dmirror)"].charged_at_end == 1
    assert by["nouveau"].charged_at_end == 0 and UNATTRIBUTED not in by


def test_without_pgmap_ops_device_events_are_unattributed(tmp_path: Path, engine: str) -> None:
    rows = [{**r, "pgmap_ops": 0} for r in _migration_story()]
    report = _replay_rows(tmp_path, rows, None, engine)
    assert [d.driver for d in report.drivers] == [UNATTRIBUTED]
    d = report.drivers[0]
    assert (d.device_faults, d.migrated_to_device, d.migrated_from_device, d.freed) == (1, 3, 1, 3)


def test_no_device_events_no_driver_rows(tmp_path: Path, engine: str) -> None:
    report = _replay_rows(tmp_path, rows_of(("charge", {"folio": F, "memcg": MEMCG, "nr_pages": 1})), [], engine)
    assert report.drivers == [] and report.to_json()["drivers"] == []


def test_query_groups_by_driver(tmp_path: Path, kallsyms: Path) -> None:
    pytest.importorskip("duckdb")
    from chargetrace.look import query

    path = _record(tmp_path / "t.parquet", _device_rows(), kallsyms, raw_pointers=False)
    res = query(str(path), "SELECT driver, count(*) AS n FROM events WHERE driver <> '' GROUP BY 1 ORDER BY 2 DESC")
    assert [(r["driver"], r["n"]) for r in res.to_records()] == [("test_hmm (dmirror)", 3), ("nouveau", 1),
                                                                (UNNAMED, 1)]
