"""Recorder overhead on a fault-heavy workload (run as root on the target machine).

For each of --runs repetitions, interleaved to share the machine's noise:
  * untraced: tests/live/workload.c touches PAGES pages ROUNDS times; it
    reports the duration of its touch loop;
  * traced: the same command under `chargetrace record` (default probe set,
    default 32 MiB ring buffer); the workload reports the same duration, and
    the trace gives the events delivered while it ran and the drops.

Prints medians: traced/untraced time ratio of the touch loop, workload
faults/s, delivered events/s (rows with ts in the loop window / its length),
and total drops. Usage:

    python bench/record_overhead.py [--pages 65536] [--rounds 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from chargetrace.traces import read_trace

ROOT = Path(__file__).resolve().parents[1]


def _parse(out: str) -> dict[str, int]:
    return {k: int(v, 0) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+|\d+)", out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ringbuf-mb", default="32")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chargetrace-bench-"))
    exe = tmp / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(ROOT / "tests/live/workload.c")], check=True)
    cmd = [str(exe), str(args.pages), str(args.rounds)]
    faults = args.pages * args.rounds
    untraced, traced, rates, drops = [], [], [], []
    for i in range(args.runs):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        untraced.append(_parse(out)["elapsed_ns"])
        trace = tmp / f"t{i}.parquet"
        rec = subprocess.run(
            [sys.executable, "-m", "chargetrace.cli", "record", "--quiet", "--ringbuf-mb", args.ringbuf_mb,
             "-o", str(trace), "--", *cmd],
            capture_output=True, text=True, check=True,
        )
        w = _parse(rec.stdout)
        traced.append(w["elapsed_ns"])
        t = read_trace(trace)
        ts = t.table.column("ts_ns").to_numpy()
        kind = t.table.column("kind").to_pylist()
        fault_ts = [x for x, k in zip(ts, kind) if k == "fault"]
        # The loop window: from the buffer's first fault to the last.
        lo, hi = min(fault_ts), max(fault_ts)
        in_window = int(((ts >= lo) & (ts <= hi)).sum())
        rates.append(in_window / ((hi - lo) / 1e9))
        drops.append(int(t.meta.drops["total"]))
        trace.unlink()
        print(f"run {i}: untraced {untraced[-1] / 1e6:.1f} ms, traced {traced[-1] / 1e6:.1f} ms, "
              f"{rates[-1]:,.0f} events/s delivered, drops {drops[-1]}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    mu, mt = statistics.median(untraced), statistics.median(traced)
    result = {
        "pages": args.pages, "rounds": args.rounds, "runs": args.runs, "ringbuf_mb": float(args.ringbuf_mb),
        "untraced_ms_median": round(mu / 1e6, 1), "traced_ms_median": round(mt / 1e6, 1),
        "ratio_traced_untraced": round(mt / mu, 2),
        "untraced_faults_per_s": round(faults / (mu / 1e9)), "traced_faults_per_s": round(faults / (mt / 1e9)),
        "delivered_events_per_s_median": round(statistics.median(rates)),
        "drops_total": sum(drops),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
