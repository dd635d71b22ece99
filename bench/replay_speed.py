"""Replay throughput: events/s and peak memory of `replay` on a generated trace.

    python bench/replay_speed.py [--scale 100] [--runs 3]

Generates a synthetic HMM trace (tests/synthetic.py) of about 3,400 x scale
events once, then times read_trace + replay in fresh processes and prints the
median and every run. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

_ONE_RUN = """
import json, resource, sys, time
from chargetrace.traces import read_trace
from chargetrace.replay import replay
t0 = time.perf_counter()
trace = read_trace(sys.argv[1])
t1 = time.perf_counter()
report = replay(trace)
t2 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "replay_s": t2 - t1, "events": report.events,
                  "verdict": report.verdict,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from synthetic import hmm_workload, synthetic_meta, write_rows

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic-bench.parquet"
        sim = hmm_workload("6.7+", seed=7, scale=args.scale)
        write_rows(sim.rows, path, synthetic_meta("6.7+", 4242))
        size_mb = path.stat().st_size / 2**20
        runs = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", _ONE_RUN, str(path)], check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out))
    events = runs[0]["events"]
    replay_s = statistics.median(r["replay_s"] for r in runs)
    read_s = statistics.median(r["read_s"] for r in runs)
    print(f"trace: {events} events, {size_mb:.1f} MiB on disk, verdict {runs[0]['verdict']}")
    print(f"read  median {read_s:.3f} s")
    print(f"replay median {replay_s:.3f} s = {events / replay_s:,.0f} events/s")
    print(f"peak RSS median {statistics.median(r['peak_rss_mb'] for r in runs):.0f} MiB")
    print("runs:", json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
