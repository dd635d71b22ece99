"""Wall time and peak memory of query, report, export and convert on a shipped trace.

    python bench/look_speed.py [--trace traces/hmm-tests-6.1.parquet] [--runs 3]

Each command runs in a fresh process (`python -m chargetrace.cli ...`), as a
user would run it; convert reads `perf script` text written once from the
trace's own counter rows (the layout perf prints). Prints medians and every
run as JSON. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _perf_text(trace: Path, out: Path) -> int:
    """The trace's memcg_stat and fault rows printed in `perf script` layout."""
    from chargetrace.traces import read_trace

    t = read_trace(trace)
    n = 0
    with open(out, "w") as fh:
        for r in t.table.to_pylist():
            secs, ns = divmod(r["ts_ns"], 1_000_000_000)
            head = f"{r['comm'] or 'x':>16} {r['pid']}/{r['tid']} [{r['cpu']:03d}] {secs}.{ns:09d}:"
            if r["kind"] == "memcg_stat":
                fh.write(f"{head} memcg:count_memcg_events: memcg_id={r['memcg']} item=0 val={r['value']}\n")
            elif r["kind"] == "fault":
                fh.write(f"{head} exceptions:page_fault_user: address={r['addr']:#x} ip=0x0 error_code={r['value']:#x}\n")
            else:
                continue
            n += 1
    return n


def _run(argv: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.strip()}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=ROOT / "traces" / "hmm-tests-6.1.parquet")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = _perf_text(args.trace, tmp / "perf.txt")
        commands = {
            "query events": ["query", str(args.trace), "SELECT kind, count(*) FROM events GROUP BY kind", "--json"],
            "query ledger": ["query", str(args.trace), "SELECT * FROM ledger", "--json"],
            "report": ["report", str(args.trace), "-o", str(tmp / "r.html")],
            "export": ["export", str(args.trace), "--perfetto", str(tmp / "t.pftrace")],
        }
        results = {}
        for name, argv in commands.items():
            walls = [_run(argv)[0] for _ in range(args.runs)]
            results[name] = {"median_s": round(statistics.median(walls), 2), "runs": [round(w, 2) for w in walls]}
        walls = []
        for i in range(args.runs):
            walls.append(_run(["convert", str(tmp / "perf.txt"), "-o", str(tmp / f"c{i}.parquet")])[0])
        results[f"convert ({lines} perf lines)"] = {"median_s": round(statistics.median(walls), 2),
                                                    "runs": [round(w, 2) for w in walls]}
        results["peak_rss_mb_any_child"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        results["report_bytes"] = (tmp / "r.html").stat().st_size
        results["perfetto_bytes"] = (tmp / "t.pftrace").stat().st_size
    print(json.dumps({"trace": str(args.trace), **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
