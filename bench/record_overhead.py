"""Recorder overhead and losses on a fault-heavy workload (run as root on the target machine).

Each of --runs rounds runs, interleaved so that they share the machine's noise:
  * untraced: tests/live/workload.c touches PAGES pages ROUNDS times and
    reports the duration of its touch loop;
  * one traced run per --variants entry, the same command under
    `chargetrace record`:
      - ``before``: the consumer position published as before the fix
        (``struct.pack_into``, see bench/ringbuf_failures.py) and no
        retry (``RecordConfig(rescue=False)``),
      - ``after``: the default recorder (8-byte consumer store, one retry,
        ledger),
      - ``aggregated``: ``--aggregate-counters`` (memcg counters summed in BPF).
    Each traced run is a fresh process running :class:`Recording` (this
    script with ``--child``), so ``before`` can swap the ring reader.

Per variant it prints medians of the traced/untraced ratio of the touch
loop, records delivered per second (trace rows with ts inside the workload's
first-to-last fault window / that window), kernel events represented per
second (an aggregated row counts the hits it sums), records per fault, and
totals of transport drops, records rescued by the retry, and probe runs the
kernel skipped (``drops.missed``). Usage:

    python bench/record_overhead.py [--pages 65536] [--rounds 4] [--runs 5]
        [--ringbuf-mb 32] [--variants before,after,aggregated]
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chargetrace.traces import read_trace

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("before", "after", "aggregated")


def _parse(out: str) -> dict[str, int]:
    return {k: int(v, 0) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+|\d+)", out)}


def _bpf_cost(stderr: str) -> dict[str, float]:
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"bpf_runs"'):
            return json.loads(line)
    return {"bpf_runs": 0, "bpf_ns": 0}


def _measure(trace_path: Path) -> dict[str, float]:
    t = read_trace(trace_path)
    tab = t.table
    kind = tab.column("kind").cast("string")
    ts = tab.column("ts_ns").to_numpy()
    rows = pc.invert(pc.is_in(kind, value_set=pa.array(["usage", "lost"]))).to_numpy(zero_copy_only=False)
    fault = pc.equal(kind, "fault").to_numpy(zero_copy_only=False)
    # An aggregated memcg_stat row (span_ns > 0) stands for `ret` kernel events.
    span = tab.column("span_ns").to_numpy()
    ret = tab.column("ret").to_numpy()
    weight = np.where((span > 0) & pc.equal(kind, "memcg_stat").to_numpy(zero_copy_only=False), ret, 1)
    lo, hi = ts[fault].min(), ts[fault].max()
    win = rows & (ts >= lo) & (ts <= hi)
    seconds = (hi - lo) / 1e9
    drops = t.meta.drops
    return {
        "records_per_s": float(win.sum()) / seconds,
        "events_per_s": float(weight[win].sum()) / seconds,
        "records_per_fault": float(rows.sum()) / max(1, int(fault.sum())),
        "drops": int(drops.get("total", 0)),
        "rescued": int((drops.get("rescued") or {}).get("retried", 0)),
        "missed": int(sum((drops.get("missed") or {}).values())),
    }


def _child(variant: str, ringbuf_mb: float, out: Path, cmd: list[str]) -> None:
    """One traced run in this process (``--child``)."""
    from chargetrace.tracer import ringbuf
    from chargetrace.tracer.recorder import RecordConfig, Recording

    if variant == "before":
        sys.path.insert(0, str(Path(__file__).parent))
        from ringbuf_failures import PackIntoReader

        ringbuf.RingReader.read = PackIntoReader.read  # type: ignore[method-assign]
    cfg = RecordConfig(output=out, command=cmd, ringbuf_mb=ringbuf_mb, status=False,
                       aggregate_counters=variant == "aggregated", rescue=variant != "before")
    from chargetrace.tracer.ledger import program_stats

    with Recording(cfg) as rec:
        rec.run()
        # In-kernel cost: the probes' own run time (kernel.bpf_stats_enabled).
        stats = program_stats(rec._bpf)
    runs = sum(n for n, _, _ in stats.values())
    print(json.dumps({"bpf_runs": runs, "bpf_ns": sum(t for _, t, _ in stats.values())}), file=sys.stderr)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, variant, mb, out, *cmd = sys.argv
        _child(variant, float(mb), Path(out), cmd)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ringbuf-mb", default="32")
    ap.add_argument("--variants", default="before,after,aggregated")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"record_overhead: unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    stats_knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    knob_was = stats_knob.read_text().strip()
    stats_knob.write_text("1\n")  # the probes' run time, for BPF ns per fault
    try:
        _session(args, variants)
    finally:
        stats_knob.write_text(knob_was + "\n")


def _session(args: argparse.Namespace, variants: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chargetrace-bench-"))
    exe = tmp / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(ROOT / "tests/live/workload.c")], check=True)
    cmd = [str(exe), str(args.pages), str(args.rounds)]
    untraced: list[int] = []
    traced: dict[str, list[int]] = {v: [] for v in variants}
    stats: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for i in range(args.runs):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        untraced.append(_parse(out)["elapsed_ns"])
        for v in variants:
            trace = tmp / f"t{i}-{v}.parquet"
            rec = subprocess.run([sys.executable, __file__, "--child", v, args.ringbuf_mb, str(trace), *cmd],
                                 capture_output=True, text=True, check=True)
            traced[v].append(_parse(rec.stdout)["elapsed_ns"])
            stats[v].append(_measure(trace))
            cost = _bpf_cost(rec.stderr)
            stats[v][-1]["bpf_ns_per_fault"] = cost["bpf_ns"] / (args.pages * args.rounds)
            stats[v][-1]["bpf_ns_per_run"] = cost["bpf_ns"] / max(1, cost["bpf_runs"])
            trace.unlink()
            s = stats[v][-1]
            print(f"run {i} {v:>10}: untraced {untraced[-1] / 1e6:.0f} ms, traced {traced[v][-1] / 1e6:.0f} ms, "
                  f"{s['records_per_s']:,.0f} records/s, {s['events_per_s']:,.0f} events/s, "
                  f"{s['records_per_fault']:.2f} records/fault, drops {s['drops']}, rescued {s['rescued']}, "
                  f"missed {s['missed']}, BPF {s['bpf_ns_per_fault']:.0f} ns/fault "
                  f"({s['bpf_ns_per_run']:.0f} ns/run)", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    mu = statistics.median(untraced)
    faults = args.pages * args.rounds
    result: dict[str, object] = {
        "pages": args.pages, "rounds": args.rounds, "runs": args.runs, "ringbuf_mb": float(args.ringbuf_mb),
        "untraced_ms_median": round(mu / 1e6, 1), "untraced_faults_per_s": round(faults / (mu / 1e9)),
    }
    for v in variants:
        mt = statistics.median(traced[v])
        result[v] = {
            "traced_ms_median": round(mt / 1e6, 1),
            "ratio_traced_untraced": round(mt / mu, 2),
            "records_per_s_median": round(statistics.median(s["records_per_s"] for s in stats[v])),
            "events_per_s_median": round(statistics.median(s["events_per_s"] for s in stats[v])),
            "records_per_fault_median": round(statistics.median(s["records_per_fault"] for s in stats[v]), 2),
            "bpf_ns_per_fault_median": round(statistics.median(s["bpf_ns_per_fault"] for s in stats[v])),
            "bpf_ns_per_run_median": round(statistics.median(s["bpf_ns_per_run"] for s in stats[v])),
            "drops_per_run": [s["drops"] for s in stats[v]],
            "rescued_per_run": [s["rescued"] for s in stats[v]],
            "missed_per_run": [s["missed"] for s in stats[v]],
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
