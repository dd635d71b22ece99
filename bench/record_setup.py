"""Recorder set-up time with and without the probe-trial cache (root).

Runs `chargetrace record --quiet -o T -- true` --runs times with an empty
cache directory (every run tries the probes: compile + load + attach trials)
and --runs times with a warm one, interleaved, each in a fresh process, and
prints the median wall time of each. Usage:

    python bench/record_setup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _once(cache: Path, out: Path) -> float:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "chargetrace.cli", "record", "--quiet", "-o", str(out), "--", "true"],
                   env=env, check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        warm_cache = Path(tmp) / "warm"
        _once(warm_cache, Path(tmp) / "prime.parquet")
        for i in range(args.runs):
            cold.append(_once(Path(tmp) / f"cold{i}", Path(tmp) / f"c{i}.parquet"))
            warm.append(_once(warm_cache, Path(tmp) / f"w{i}.parquet"))
    print(f"cold (trials run): median {statistics.median(cold):.2f} s  {[round(x, 2) for x in cold]}")
    print(f"warm (cached):     median {statistics.median(warm):.2f} s  {[round(x, 2) for x in warm]}")


if __name__ == "__main__":
    main()
