"""The fuzz corpus at CI size, and a large trace: bounded memory, progress lines.

CI runs ``CHARGETRACE_FUZZ_CASES`` cases (default 2000, about a minute on two
cores); for more, set it higher or run ``python tests/fuzz/run_fuzz.py --cases N``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chargetrace.traces import ARROW_SCHEMA, TraceMeta  # noqa: E402
from chargetrace.traces.schema import METADATA_KEY  # noqa: E402
from fuzz_corpus import CATEGORIES  # noqa: E402
from run_fuzz import format_table, run_corpus  # noqa: E402

CASES = int(os.environ.get("CHARGETRACE_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("CHARGETRACE_FUZZ_SEED", "1"))


def test_fuzz_corpus(tmp_path, capsys):
    counts, failures = run_corpus(CASES, SEED, tmp_path)
    table = format_table(counts)
    with capsys.disabled():
        print(f"\nfuzz corpus: {CASES} cases, seed {SEED}\n{table}")
    assert set(counts) == set(CATEGORIES)
    assert not failures, "\n".join(failures[:20])
    # Every category refuses or reports something: none is a no-op generator.
    for category, c in counts.items():
        assert sum(v for k, v in c.items() if k != "balanced") > 0, category


def _big_trace(path: Path, rows: int) -> Path:
    """A large, well-formed trace: faults and exits only (a few kinds, cheap to build)."""
    seq = np.arange(rows, dtype=np.uint64)
    kinds = pa.DictionaryArray.from_arrays(pa.array(np.where(seq % 1000 == 999, 1, 0).astype(np.int32)),
                                           pa.array(["fault", "exit"]))
    cols = {"seq": seq, "ts_ns": seq * np.uint64(100), "kind": kinds, "addr": seq * np.uint64(4096)}
    zeros = np.zeros(rows, np.int32)
    arrays = []
    for fld in ARROW_SCHEMA:
        if fld.name in cols:
            arrays.append(cols[fld.name] if fld.name == "kind" else pa.array(cols[fld.name], fld.type))
        elif pa.types.is_dictionary(fld.type):
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(zeros), pa.array([""])))
        else:
            arrays.append(pa.array(zeros, pa.int32()).cast(fld.type))
    table = pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)
    meta = TraceMeta(recorder="tests/fuzz large trace", rows=rows)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: meta.to_json()}), path,
                   row_group_size=128 * 1024, compression="zstd")
    return path


def _peak_rss_mb(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
        "print('RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(p.returncode)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    lines = proc.stderr.splitlines()
    rss = int(lines[-1].split()[1]) / 1024
    proc.stderr = "\n".join(lines[:-1]) + ("\n" if lines[:-1] else "")
    return proc, rss


def test_large_trace_bounded_memory_and_progress(tmp_path):
    rows = 2_000_000
    path = _big_trace(tmp_path / "big.parquet", rows)
    env = {**os.environ, "CHARGETRACE_MAX_EVENTS": str(10_000_000)}
    cli = [sys.executable, "-m", "chargetrace.cli"]
    proc, rss = _peak_rss_mb([*cli, "info", "--json", str(path)], env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["events"] == rows
    progress = [line for line in proc.stderr.splitlines() if "reading" in line]
    assert len(progress) >= 5 and progress[-1].endswith(f"({rows} of {rows} events)"), proc.stderr
    # Memory grows with the rows read, within a per-row bound (about 100 bytes
    # per row in Arrow, plus the interpreter and libraries).
    print(f"\nlarge trace: {rows} rows, info peak RSS {rss:.0f} MB")
    assert rss < 250 + rows * 300 / 1e6, rss
    # Over the cap: the reference engine, which holds every row, refuses it from the footer,
    # before any row is decoded.
    env["CHARGETRACE_MAX_EVENTS"] = str(rows // 2)
    proc, rss = _peak_rss_mb([*cli, "replay", "--engine", "reference", str(path)], env)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"{rows} events, more than the {rows // 2}" in proc.stderr
    print(f"over the cap: refused, peak RSS {rss:.0f} MB")
    assert rss < 250, rss
    # The compiled engine (the default from 200,000 events) streams the trace in bounded
    # memory, so the cap is not its: it replays the whole trace.
    if importlib.util.find_spec("numba") is not None:
        proc, rss = _peak_rss_mb([*cli, "replay", "--json", str(path)], env)
        assert proc.returncode != 2 and json.loads(proc.stdout)["events"] == rows, proc.stderr
        print(f"over the cap, compiled engine: replayed, peak RSS {rss:.0f} MB")
        assert rss < 1024, rss
