"""Compiled vs reference replay engine: events/s, ratio to pyarrow's read of the
same file, peak RSS — each figure from a fresh process, all in one run.

    python bench/engine_speed.py [--events 1e6] [--runs 3] [--reference] [--source TRACE]

Tiles a recorded shipped trace (traces/hmm-tests-6.1.parquet by default) to
about ``--events`` rows: each tile gets fresh folio ids (id + tile << 40), seq
and time continue, so live state stays that of one tile (a small tiler of its
own: bench/tile.py of the fleet work was not on main when this was written).
Then, per run, in fresh processes: pyarrow's read of the file (``pq.read_table``
of the columns the compiled engine reads), the compiled engine
(``replay_compiled``, after one warm-up replay of a small trace so numba's
cache is loaded outside the timing), and with ``--reference`` the reference
engine (``read_trace`` + ``replay``). Each figure is wall seconds and CPU
seconds of the process (user + system): on a loaded machine CPU seconds are
the per-core cost. Prints medians, ratios to the read, and VmHWM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The columns the compiled engine reads (replay/compiled/driver.py _COLUMNS; pgmap_ops since the drivers).
COLUMNS = ["seq", "ts_ns", "cpu", "pid", "tid", "kind", "folio", "folio_new", "nr_pages", "memcg", "memcg_new",
           "ret", "item", "value", "span_ns", "pgmap_ops"]

_RUN = {
    "read": """
import pyarrow.parquet as pq
t0, c0 = time.perf_counter(), time.process_time()
n = 0
for batch in pq.ParquetFile(sys.argv[1]).iter_batches(batch_size=65536, columns=%r, use_threads=False):
    n += batch.num_rows
t1, c1 = time.perf_counter(), time.process_time()
""" % COLUMNS,
    "compiled": """
from chargetrace.replay.compiled import replay_compiled
replay_compiled(sys.argv[2])  # compile or load numba's cache, outside the timing
t0, c0 = time.perf_counter(), time.process_time()
r = replay_compiled(sys.argv[1]); n = r.events
t1, c1 = time.perf_counter(), time.process_time()
verdict = r.verdict
""",
    "reference": """
import os
os.environ["CHARGETRACE_MAX_EVENTS"] = str(10**9)
from chargetrace.traces import read_trace
from chargetrace.replay import replay
t0, c0 = time.perf_counter(), time.process_time()
r = replay(read_trace(sys.argv[1])); n = r.events
t1, c1 = time.perf_counter(), time.process_time()
verdict = r.verdict
""",
}
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
_TAIL = """
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"s": t1 - t0, "cpu_s": c1 - c0, "events": n, "peak_rss_mib": hwm / 1024,
                  "verdict": globals().get("verdict", "")}))
"""


def _one(what: str, path: Path, small: Path) -> dict:
    code = "import json, sys, time\n" + _RUN[what] + _TAIL
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(small)], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def tile(source: Path, out: Path, events: float) -> int:
    """``source`` tiled to about ``events`` rows, a tile at a time (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chargetrace.traces import read_trace
    from chargetrace.traces.schema import METADATA_KEY

    trace = read_trace(source)
    table = trace.table
    tiles = max(1, round(events / table.num_rows))
    seq, ts = table.column("seq").to_numpy(), table.column("ts_ns").to_numpy()
    span_seq, span_ts = int(seq.max()) + 1, int(ts.max() - ts.min()) + 1
    folio, folio_new = table.column("folio").to_numpy(), table.column("folio_new").to_numpy()
    meta = trace.meta
    meta.rows = tiles * table.num_rows
    meta.drops = {"total": tiles * int(meta.drops.get("total", 0) or 0), "per_cpu": {}}
    meta.ledger = None  # a tiled trace has no in-kernel ledger of its own
    schema = table.schema.with_metadata({METADATA_KEY: meta.to_json()})
    names = table.column_names
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for k in range(tiles):
            shift = np.uint64(k << 40)
            t = table.set_column(names.index("seq"), "seq", pa.array(seq + np.uint64(k * span_seq)))
            t = t.set_column(names.index("ts_ns"), "ts_ns", pa.array(ts + np.uint64(k * span_ts)))
            t = t.set_column(names.index("folio"), "folio", pa.array(np.where(folio != 0, folio + shift, folio)))
            t = t.set_column(names.index("folio_new"), "folio_new",
                             pa.array(np.where(folio_new != 0, folio_new + shift, folio_new)))
            writer.write_table(pa.Table.from_arrays(t.columns, schema=schema), row_group_size=128 * 1024)
    return tiles * table.num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=1e6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="also time the reference engine (slow)")
    parser.add_argument("--source", type=Path, default=ROOT / "traces" / "hmm-tests-6.1.parquet")
    parser.add_argument("--keep", type=Path, default=None, help="write the tiled trace here and keep it")
    args = parser.parse_args()
    small = ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet"
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        path = args.keep or Path(tmp) / "tiled.parquet"
        if not path.exists():
            tile(args.source, path, args.events)
        size_mib = path.stat().st_size / 2**20
        whats = ["read", "compiled"] + (["reference"] if args.reference else [])
        runs = {w: [_one(w, path, small) for _ in range(args.runs)] for w in whats}
    events = runs["read"][0]["events"]
    load = os.getloadavg()[0]
    print(f"trace: {events:,} events ({args.source.name} tiled), {size_mib:.1f} MiB on disk; medians of "
          f"{args.runs} fresh processes; load average {load:.1f} on {os.cpu_count()} CPUs")
    med = {w: statistics.median(r["s"] for r in rs) for w, rs in runs.items()}
    cpu = {w: statistics.median(r["cpu_s"] for r in rs) for w, rs in runs.items()}
    for w in whats:
        rss = statistics.median(r["peak_rss_mib"] for r in runs[w])
        print(f"{w:<10} wall {med[w]:8.3f} s  cpu {cpu[w]:8.3f} s  {events / cpu[w]:>12,.0f} events/s per CPU-s  "
              f"x{cpu[w] / cpu['read']:.2f} of read (cpu)  x{med[w] / med['read']:.2f} (wall)  peak RSS {rss:,.0f} MiB"
              f"  {runs[w][0]['verdict']}")
    print("runs:", json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
