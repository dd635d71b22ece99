import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from chargetrace.traces import KINDS, TraceMeta, TraceWriter, read_trace
from chargetrace.tracer.decode import EVENT_DTYPE, KIND_CODES, decode

COMMON_H = Path(__file__).resolve().parents[1] / "tracer" / "bpf" / "common.h"


def test_dtype_mirrors_the_c_struct() -> None:
    body = re.search(r"struct ct_event \{(.*?)\};", COMMON_H.read_text(), re.S).group(1)
    fields = re.findall(r"(\w+)(?:\[\d+\])?;", body)
    assert tuple(fields) == EVENT_DTYPE.names
    assert EVENT_DTYPE.itemsize == 112


def test_kind_codes_are_schema_kinds() -> None:
    assert set(KIND_CODES.values()) <= set(KINDS)
    assert len(set(KIND_CODES)) == len(KIND_CODES)


def _packed() -> bytes:
    ev = np.zeros(4, dtype=EVENT_DTYPE)
    code = {v: k for k, v in KIND_CODES.items()}
    ev["kind"] = [code["fault"], code["memcg_stat"], code["memcg_stat"], code["page_migration"]]
    ev["probe"] = [1, 2, 2, 3]
    ev["item"] = [0, 0, 1, 0]
    ev["value"] = [6, 1, -512, 10]
    ev["memcg"] = [0, 77, 77, 0]
    ev["addr"] = [0x7F0000001000, 0, 0, 0]
    ev["pid"] = [10, 10, 11, 12]
    ev["comm"] = [b"workload", b"workload", b"kworker/0:1", b"kcompactd0"]
    ev["ts_ns"] = [1, 2, 3, 4]
    return ev.tobytes()


def test_decode_packed_buffer(tmp_path: Path) -> None:
    probes = {1: "tp:exceptions:page_fault_user", 2: "tp:memcg:count_memcg_events", 3: "tp:migrate:mm_migrate_pages"}
    tables = {2: {0: "PGPGIN", 1: "PGPGOUT"}, 3: {0: "compaction"}}
    cols = decode(_packed(), probes, tables)
    assert cols["kind"].to_pylist() == ["fault", "memcg_stat", "memcg_stat", "page_migration"]
    assert cols["item"].to_pylist() == ["", "PGPGIN", "PGPGOUT", "compaction"]
    assert cols["comm"].to_pylist() == ["workload", "workload", "kworker/0:1", "kcompactd0"]
    assert cols["probe"].to_pylist()[3] == "tp:migrate:mm_migrate_pages"
    assert cols["value"].to_pylist() == [6, 1, -512, 10]
    assert isinstance(cols["kind"], pa.DictionaryArray)
    # the columns go through the writer unchanged
    with TraceWriter(tmp_path / "t.parquet", TraceMeta()) as w:
        w.append_columns(cols)
    df = read_trace(tmp_path / "t.parquet").table.to_pandas()
    assert list(df.seq) == [0, 1, 2, 3]
    assert list(df.memcg) == [0, 77, 77, 0]
    assert list(df.addr)[0] == 0x7F0000001000


def test_decode_unknown_item_and_empty() -> None:
    cols = decode(_packed(), {}, {2: {}})
    assert cols["item"].to_pylist() == ["", "0", "1", ""]
    assert cols["probe"].to_pylist()[0] == "?1"
    assert len(decode(b"", {}, {})["kind"]) == 0
