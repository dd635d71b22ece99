"""Live: the same workload recorded by perf and by `chargetrace record` replays alike.

perf records the memcg, exceptions and sched tracepoints system-wide while a
shell moves itself into a fresh v1/v2 memcg, execs the workload, and then
drains the memcg (force_empty / reclaim) — what `chargetrace record` does for
its own scope. `chargetrace convert` turns perf.data into a trace with that
scope; both replays must give the same verdict and the same counter totals for
the workload's memcg.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chargetrace.replay import replay
from chargetrace.traces import read_trace

from .conftest import cli, record

pytestmark = pytest.mark.live

N = 2048
TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("memcg:count_memcg_events,memcg:mod_memcg_state,memcg:mod_memcg_lruvec_state,"
          "exceptions:page_fault_user,sched:sched_process_exit,sched:sched_process_fork")


def _perf_or_skip() -> str:
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("no perf on PATH (Debian: apt-get install linux-perf)")
    if not (TRACEFS / "events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True)
    if not (TRACEFS / "events" / "memcg" / "count_memcg_events").is_dir():
        pytest.skip("this kernel has no memcg:* tracepoints (added in 6.13)")
    return perf


def _totals(trace_path: Path) -> tuple[str, dict[str, int], int]:
    trace = read_trace(trace_path)
    report = replay(trace)
    memcg = trace.meta.scope.memcg
    row = next(r for r in report.memcgs if r.memcg == memcg)
    rules = {r.rule: r.checked for r in report.rules}
    return report.verdict, {"pgpgin": row.pgpgin, "pgpgout": row.pgpgout, "anon_mapped": row.anon_mapped}, \
        rules.get("R3.pgpg", 0)


def test_perf_and_chargetrace_recordings_replay_alike(tmp_path: Path, workload: Path) -> None:
    perf = _perf_or_skip()
    from chargetrace.tracer.cgroups import create_child, memcg_of_pid

    # chargetrace's own recording of the workload.
    run = record(tmp_path, "--", str(workload), str(N), name="ct.parquet")
    assert run.returncode == 0, run.stderr

    # perf's recording of the same workload in a fresh memcg, drained after exit.
    parent = memcg_of_pid("self")
    cg = create_child(parent, f"chargetrace-perftest-{os.getpid()}")
    try:
        drain = "echo 0 > memory.force_empty" if cg.version == 1 else "cat memory.current > memory.reclaim"
        script = (f'sh -c \'echo $$ > "{cg.path}/cgroup.procs" && exec "{workload}" {N}\' >/dev/null; '
                  f'cd "{cg.path}" && {{ {drain}; }} 2>/dev/null; sleep 0.2')
        data = tmp_path / "perf.data"
        proc = subprocess.run([perf, "record", "-q", "-o", str(data), "-e", EVENTS, "-a", "--", "sh", "-c", script],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / "perf.parquet"
        conv = subprocess.run(cli("convert", str(data), "-o", str(out), "--cgroup", str(cg.path), "--fresh",
                                  "--exited", "--settled", "force_empty" if cg.version == 1 else "reclaim",
                                  "--json"), capture_output=True, text=True, timeout=120)
        assert conv.returncode == 0, conv.stderr
    finally:
        cg.remove()

    ct_verdict, ct_totals, ct_checked = _totals(run.trace)
    pf_verdict, pf_totals, pf_checked = _totals(out)
    meta = read_trace(out).meta
    assert meta.recorder.startswith("perf")
    assert meta.provenance["tool"] == "perf" and meta.provenance["converted_from"] == str(data)
    assert ct_verdict == pf_verdict == "balanced"
    assert ct_checked > 0 and pf_checked > 0
    print(f"chargetrace: {ct_totals}; perf: {pf_totals}", file=sys.stderr)
    assert pf_totals == ct_totals
    # The probe column names the tracepoint of every converted row.
    probes = set(read_trace(out).table.column("probe").cast("string").unique().to_pylist())
    assert {"tp:memcg:count_memcg_events", "tp:exceptions:page_fault_user"} <= probes
