"""The recorder's own truth on the running kernel: arming, scope following,
tasks that outlive the command, exit status, phases, quiet recordings, and a
signal during setup. Real BPF, real cgroups, through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from chargetrace.tracer.cgroups import memcg_mount, memcg_of_pid
from chargetrace.traces import read_trace

from .conftest import cli, record

pytestmark = pytest.mark.live

N = 2048

# The memory cgroup directory of the shell running it, as $d (v1 or v2).
_MY_CG = ("p=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup); "
          "if [ -n \"$p\" ]; then d=/sys/fs/cgroup/memory$p; "
          "else d=/sys/fs/cgroup$(awk -F: '$1 == \"0\" {print $3}' /proc/self/cgroup); fi; ")


def _v1_only() -> None:
    # A v2 memcg holding processes cannot enable +memory for children (no
    # internal processes); the lab guests exercise v2.
    if memcg_mount()[1] != 1:
        pytest.skip("needs the memory controller on cgroup v1 (children of a populated memcg)")


def _df(trace: Path) -> tuple[pd.DataFrame, object]:
    t = read_trace(trace)
    return t.table.to_pandas(), t.meta


def _stat(df: pd.DataFrame, memcg: int, item: str) -> int:
    rows = df[(df.kind == "memcg_stat") & (df.memcg == memcg) & (df.item == item)]
    return int(rows.value.sum())


def test_no_row_before_arming_system_wide(tmp_path: Path) -> None:
    run = record(tmp_path, "--duration", "1", "--events", "fault,memcg_events,exit")
    assert run.returncode == 0, run.stderr
    df, meta = _df(run.trace)
    assert meta.armed_ns and meta.armed_ns > 0
    assert len(df) > 0 and int(df.ts_ns.min()) >= meta.armed_ns
    # every probe entry says which row kind it emits
    assert all(p.get("kind") for p in meta.probes)


def test_phases_memstat_exit_status_and_arming(tmp_path: Path, workload: Path) -> None:
    run = record(tmp_path, "--", "sh", "-c", f"{workload} {N}; exit 7")
    assert run.returncode == 7, run.stderr
    assert "command exit status 7" in run.stderr
    df, meta = _df(run.trace)
    s = meta.scope
    assert s.exit_status == 7 and s.exited and s.tasks_left == [] and s.oom_kills == 0
    assert int(df.ts_ns.min()) >= meta.armed_ns
    assert list(s.phases) == ["start", "exit", "settled"] or set(s.phases) == {"start", "exit", "settled"}
    assert s.phases["start"] < s.phases["exit"] < s.phases["settled"]
    for phase, seq in s.phases.items():
        first = df[df.seq == seq].iloc[0]
        assert first.kind == "usage" and first.memcg == s.memcg, phase
        block = df[(df.seq >= seq) & (df.kind == "memstat")]
        items = set(block.item)
        assert {"cache", "rss"} <= items or {"anon", "file"} <= items, phase
    ms = df[df.kind == "memstat"]
    assert (ms.probe == "sample:memory.stat").all() and set(ms.memcg) == {s.memcg}
    if memcg_mount()[1] == 1:
        assert "kmem.usage" in set(ms.item)
    # the start sample comes before the command's first fault
    assert s.phases["start"] < df[df.kind == "fault"].seq.min()
    assert s.settle and s.settle["method"] in ("force_empty", "reclaim") and s.settle["done"]
    assert s.settle["unreclaimed_bytes"] >= 0 and isinstance(s.settle["why"], str)
    assert [m["memcg"] for m in s.memcgs] == [s.memcg] and s.memcgs[0]["created_in_scope"]
    assert s.unseen_fault_share == 0.0 and s.moved_out == []


def test_signal_exit_status_is_128_plus_n(tmp_path: Path) -> None:
    run = record(tmp_path, "--", "sh", "-c", "kill -TERM $$")
    assert run.returncode == 128 + signal.SIGTERM, run.stderr
    _df_, meta = _df(run.trace)
    assert meta.scope.exit_status == 128 + signal.SIGTERM


def test_child_memcg_created_by_the_workload_is_followed(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    cmd = _MY_CG + f'mkdir "$d/child" && echo $$ > "$d/child/cgroup.procs" && exec {workload} {N}'
    run = record(tmp_path, "--", "sh", "-c", cmd)
    assert run.returncode == 0, run.stderr
    df, meta = _df(run.trace)
    child = run.workload["memcg"]
    s = meta.scope
    assert child != s.memcg
    entry = {m["memcg"]: m for m in s.memcgs}[child]
    assert entry["parent"] == s.memcg and entry["created_in_scope"] and entry["path"].endswith("/child")
    # the child's charges are in the trace (the workload's N pages and more)
    assert _stat(df, child, "PGPGIN") >= N
    assert _stat(df, child, "PGPGOUT") == _stat(df, child, "PGPGIN")
    # and it is sampled with the scope
    assert child in set(df[(df.kind == "memstat") & (df.seq >= s.phases["exit"])].memcg)
    assert not Path(entry["path"]).exists()  # removed with the scope


def _outside(name: str) -> Path:
    return memcg_of_pid("self").path / name


def test_memcg_made_by_a_scope_task_outside_the_tree_joins_the_scope(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    out = _outside(f"ct-live-made-{os.getpid()}")
    cmd = _MY_CG + f'o=$(dirname "$d")/{out.name}; mkdir "$o" && echo $$ > "$o/cgroup.procs" && exec {workload} {N}'
    try:
        run = record(tmp_path, "--", "sh", "-c", cmd)
        assert run.returncode == 0, run.stderr
        df, meta = _df(run.trace)
        dst = run.workload["memcg"]
        assert dst == os.stat(out).st_ino
        entry = {m["memcg"]: m for m in meta.scope.memcgs}[dst]
        assert entry["created_in_scope"] and entry["parent"] == os.stat(out.parent).st_ino
        assert meta.scope.moved_out == []  # it never left the scope
        assert _stat(df, dst, "PGPGIN") >= N
        assert meta.scope.unseen_fault_share == 0.0
    finally:
        if out.exists():
            out.rmdir()


def test_move_to_a_memcg_made_during_the_recording_is_followed(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    out = _outside(f"ct-live-late-{os.getpid()}")
    trace = tmp_path / "late.parquet"
    cmd = f'while [ ! -d {out} ]; do sleep 0.02; done; echo $$ > {out}/cgroup.procs && exec {workload} {N}'
    proc = subprocess.Popen(cli("record", "--quiet", "-o", str(trace), "--", "sh", "-c", cmd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        scope_cg = memcg_of_pid("self").path / f"chargetrace-{proc.pid}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the command runs: probes are armed
            if scope_cg.exists() and (scope_cg / "cgroup.procs").read_text().strip():
                break
            time.sleep(0.02)
        out.mkdir()  # by the test, not by a scope task
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        w = {k: int(v, 0) for k, v in (kv.split("=") for kv in stdout.split() if "=" in kv)}
        df, meta = _df(trace)
        dst = os.stat(out).st_ino
        assert meta.scope.moved_out == [{"pid": w["pid"], "memcg": dst, "followed": True}]
        entry = {m["memcg"]: m for m in meta.scope.memcgs}[dst]
        assert entry["created_in_scope"]  # made while armed: every charge in it was seen
        assert _stat(df, dst, "PGPGIN") >= N
        assert meta.scope.unseen_fault_share == 0.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if out.exists():
            out.rmdir()


def test_move_to_an_existing_memcg_counts_unseen_faults(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    out = _outside(f"ct-live-old-{os.getpid()}")
    out.mkdir()
    try:
        run = record(tmp_path, "--", "sh", "-c", f'echo $$ > {out}/cgroup.procs && exec {workload} {N}')
        assert run.returncode == 0, run.stderr
        df, meta = _df(run.trace)
        dst = os.stat(out).st_ino
        assert meta.scope.moved_out == [{"pid": run.workload["pid"], "memcg": dst, "followed": False}]
        assert dst not in {m["memcg"] for m in meta.scope.memcgs}
        assert _stat(df, dst, "PGPGIN") == 0  # not recorded ...
        assert meta.scope.unseen_fault_share > 0.5  # ... and said so: N faults of a few more
    finally:
        out.rmdir()


def test_task_outliving_the_command(tmp_path: Path) -> None:
    run = record(tmp_path, "--exit-wait", "0.5", "--", "sh", "-c", "sleep 3 & exit 0")
    assert run.returncode == 0, run.stderr
    _d, meta = _df(run.trace)
    s = meta.scope
    assert not s.exited and [t["comm"] for t in s.tasks_left] == ["sleep"]
    assert "exit" not in s.phases and "end" in s.phases
    assert "outlived the command (sleep)" in run.stderr
    waited = record(tmp_path, "--exit-wait", "10", "--", "sh", "-c", "sleep 1 & exit 0", name="w.parquet")
    assert waited.returncode == 0, waited.stderr
    _d, meta = _df(waited.trace)
    assert meta.scope.exited and meta.scope.tasks_left == [] and "exit" in meta.scope.phases


def test_oom_kill_is_named(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("swap is on: the limit would swap instead of killing")
    cmd = _MY_CG + f'echo 16M > "$d/memory.limit_in_bytes" && exec {workload} 20000'
    run = record(tmp_path, "--", "sh", "-c", cmd)
    assert run.returncode == 128 + signal.SIGKILL, run.stderr
    _d, meta = _df(run.trace)
    assert meta.scope.oom_kills and meta.scope.oom_kills >= 1
    assert "OOM killed" in run.stderr


def test_quiet_recording_killed_keeps_its_events(tmp_path: Path, workload: Path) -> None:
    trace = tmp_path / "quiet.parquet"
    proc = subprocess.Popen(cli("record", "--quiet", "-o", str(trace), "--", "sh", "-c", f"{workload} {N}; sleep 20"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("pid=")
        time.sleep(3.5)  # the workload is done; nothing happens for the rest
    finally:
        proc.kill()
        proc.wait()
    t = read_trace(tmp_path / "quiet.parquet.partial")
    df = t.table.to_pandas()
    assert (df.kind == "fault").sum() >= N


def test_signal_during_setup_leaves_no_trace(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    trace = tmp_path / "setup.parquet"
    proc = subprocess.Popen(cli("record", "-o", str(trace), "--", "touch", str(marker)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Interpreter start + imports take longer than this, so the signal lands in
    # setup; the handler is installed before setup starts.
    deadline = time.monotonic() + 30
    while "choosing probes" not in (err := _peek(proc)) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 2, rest
    lines = rest.strip().splitlines()
    assert lines[-1].startswith("chargetrace: error: SIGINT during setup: touch never ran")
    assert not marker.exists()
    assert not trace.exists() and not (tmp_path / "setup.parquet.partial").exists()


def _peek(proc: subprocess.Popen[str]) -> str:
    """The first status line of the recorder (blocking read of one line)."""
    assert proc.stderr is not None
    return proc.stderr.readline()


def test_unknown_event_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(cli("record", "-o", str(tmp_path / "x.parquet"), "--events", "fault,nope", "--", "true"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown event nope" in proc.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_existing_cgroup_and_pid_scopes_start_armed(tmp_path: Path, workload: Path) -> None:
    _v1_only()
    cg = _outside(f"ct-live-cg-{os.getpid()}")
    cg.mkdir()
    target = subprocess.Popen(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {workload} 256 100000000"],
                              stdout=subprocess.PIPE, text=True)
    try:
        w = {k: int(v, 0) for k, v in (kv.split("=") for kv in target.stdout.readline().split())}
        by_cg = record(tmp_path, "--cgroup", str(cg), "--duration", "1.5", "--events", "fault,memcg_events")
        by_pid = record(tmp_path, "-p", str(target.pid), "--duration", "1.5", "--events", "fault,memcg_events",
                        name="p.parquet")
    finally:
        target.kill()
        target.wait()
        cg.rmdir()
    for run in (by_cg, by_pid):
        assert run.returncode == 0, run.stderr
        df, meta = _df(run.trace)
        s = meta.scope
        assert meta.armed_ns and int(df.ts_ns.min()) >= meta.armed_ns
        assert s.memcg == w["memcg"] and [m["memcg"] for m in s.memcgs] == [w["memcg"]]
        assert not s.memcgs[0]["created_in_scope"] and not s.fresh
        # still running at the end: no exit phase, the task is listed, nothing settled
        assert not s.exited and s.tasks_left == [{"pid": target.pid, "comm": "workload"}]
        assert set(s.phases) == {"start", "end"} and s.settle is None and s.exit_status is None
        assert (df[df.kind == "fault"].pid == target.pid).all() and (df.kind == "fault").sum() > 0


def test_settle_says_what_stayed_charged_and_why(tmp_path: Path) -> None:
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("swap is on: reclaim could swap the tmpfs pages out")
    shm = Path(f"/dev/shm/ct-live-{os.getpid()}")
    try:
        run = record(tmp_path, "--", "sh", "-c", f"dd if=/dev/zero of={shm} bs=1M count=8 2>/dev/null")
        assert run.returncode == 0, run.stderr
    finally:
        shm.unlink(missing_ok=True)
    _d, meta = _df(run.trace)
    settle = meta.scope.settle
    assert settle["done"] and settle["method"] in ("force_empty", "reclaim")
    # the tmpfs file outlives the command: no swap, so reclaim cannot take it
    assert settle["unreclaimed_bytes"] >= 8 << 20
    assert settle["why"].startswith("shmem/tmpfs/memfd pages (reclaim needs swap): 8388608 bytes")
