"""Cost of the reader's integrity checks: read_trace against a bare pyarrow read.

    python bench/read_integrity.py [--runs 5] [TRACE ...]

Default traces: the shipped hmm-tests recordings. Prints medians per trace:
pyarrow.parquet.read_table (no checks) and read_trace (page checksums, full
UTF-8/index validation, typed metadata, seq/kind/drop checks). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq

from chargetrace.traces import read_trace

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path,
                        default=[REPO / "traces/hmm-tests-6.1.parquet", REPO / "traces/hmm-tests-6.12.parquet"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| trace | events | pyarrow read_table | read_trace (checked) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for path in args.traces:
        raw, checked = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            pq.read_table(path, page_checksum_verification=False)
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            trace = read_trace(path)
            checked.append(time.perf_counter() - t)
        r, c = statistics.median(raw), statistics.median(checked)
        print(f"| {path.name} | {trace.num_events:,} | {r * 1000:.0f} ms | {c * 1000:.0f} ms | {c / r:.2f} |")


if __name__ == "__main__":
    main()
