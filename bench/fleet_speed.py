"""Fleet replay speed: N traces serially vs on local cores, one large trace whole vs
in folio buckets, and the same fleet on a local Spark cluster.

    python bench/fleet_speed.py [--traces 8] [--source traces/workload-6.1-limit-migrate.parquet]
                                [--big-events 1e6] [--buckets 2,4] [--jobs 2] [--spark]

Builds a hive tree ``host=h<i>/boot=1/`` of N copies of SOURCE and one trace of
about ``--big-events`` rows tiled from traces/hmm-tests-6.1.parquet
(bench/tile.py), then times, in this process (the pools fork their workers):
``replay_fleet`` with 1 job and with ``--jobs``; ``replay_partitioned`` of the
big trace in each bucket count (after the same ``read_trace``, which is timed
apart); with ``--spark`` a local[JOBS] Spark session's start, its first and
second ``replay_on_spark`` of the tree. Every figure is printed with the load
average (``uptime``) when it was taken: on a shared machine they are noisy.
Figures go to BENCHMARKS.md "Fleet replay".
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _say(what: str, seconds: float, extra: str = "") -> None:
    print(f"{what:<44} {seconds:8.2f} s  {extra:<34} load {_load()}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=8)
    parser.add_argument("--source", type=Path, default=ROOT / "traces" / "workload-6.1-limit-migrate.parquet")
    parser.add_argument("--big-events", type=float, default=1e6)
    parser.add_argument("--buckets", default="2,4")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--spark", action="store_true")
    args = parser.parse_args()

    from tile import DEFAULT_SOURCE, tile

    from chargetrace.replay import replay
    from chargetrace.replay.fleet import replay_fleet
    from chargetrace.replay.fleet_partition import plan_buckets, primary_kinds, replay_partitioned
    from chargetrace.traces import read_trace

    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        tree = Path(tmp) / "fleet"
        for i in range(args.traces):
            d = tree / f"host=h{i}" / "boot=1"
            d.mkdir(parents=True)
            shutil.copy(args.source, d / args.source.name)
        events = replay_fleet(tree, jobs=1).totals()["events"]  # warm the page cache and imports
        print(f"fleet: {args.traces} x {args.source.name} = {events} events; cpus {os.cpu_count()}")
        t = time.perf_counter()
        serial = replay_fleet(tree, jobs=1)
        s1 = time.perf_counter() - t
        _say("fleet serial (--jobs 1)", s1, f"{events / s1:,.0f} events/s")
        t = time.perf_counter()
        parallel = replay_fleet(tree, jobs=args.jobs)
        s2 = time.perf_counter() - t
        _say(f"fleet local pool (--jobs {args.jobs})", s2, f"{events / s2:,.0f} events/s, x{s1 / s2:.2f}")
        assert [r.verdict for r in serial.traces] == [r.verdict for r in parallel.traces]

        big = Path(tmp) / "big.parquet"
        tile(DEFAULT_SOURCE, big, args.big_events)
        t = time.perf_counter()
        trace = read_trace(big)
        _say(f"read_trace of {trace.num_events} events", time.perf_counter() - t)
        t = time.perf_counter()
        whole = replay(trace)
        w = time.perf_counter() - t
        _say("one trace whole (replay)", w, f"{trace.num_events / w:,.0f} events/s, {whole.verdict}")
        for k in (int(x) for x in args.buckets.split(",")):
            t = time.perf_counter()
            plan = plan_buckets(trace.table, k, primary_kinds(trace))
            p = time.perf_counter() - t
            sizes = [len(r) for r in plan.rows]
            t = time.perf_counter()
            report = replay_partitioned(trace, k, jobs=args.jobs)
            s = time.perf_counter() - t
            assert report.verdict == whole.verdict and len(report.violations) == len(whole.violations)
            _say(f"one trace in {k} buckets (--jobs {args.jobs})", s,
                 f"x{w / s:.2f}; plan {p:.2f} s, rows {sizes}")

        if args.spark:
            from chargetrace.replay.fleet_spark import replay_on_spark, spark_session

            t = time.perf_counter()
            spark = spark_session(f"local[{args.jobs}]")
            spark.range(1).count()
            _say(f"spark local[{args.jobs}] start + first job", time.perf_counter() - t)
            try:
                for attempt in ("first", "second"):
                    t = time.perf_counter()
                    rows = replay_on_spark(spark, str(tree))
                    s = time.perf_counter() - t
                    assert [r["verdict"] for r in rows] == [r.verdict for r in serial.traces]
                    _say(f"spark fleet replay ({attempt})", s, f"{events / s:,.0f} events/s")
            finally:
                spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
