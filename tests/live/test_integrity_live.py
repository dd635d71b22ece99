"""Live: what the recorder leaves behind is private, whole, and never balanced when it failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chargetrace.replay import replay
from chargetrace.traces import read_trace

from .conftest import cli

pytestmark = pytest.mark.live


def test_fresh_recording_is_private_whole_and_marked(tmp_path: Path, workload: Path) -> None:
    out = tmp_path / "t.parquet"
    proc = subprocess.run(cli("record", "--quiet", "-o", str(out), "--", str(workload), "256"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    trace = read_trace(out)
    assert trace.integrity.clean, trace.integrity.problems
    assert trace.meta.complete and trace.meta.rows == trace.num_events and trace.meta.recording_id
    assert trace.meta.anonymized  # no --raw-pointers: folio ids are opaque
    again = subprocess.run(cli("record", "--quiet", "-o", str(out), "--", str(workload), "16"),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr.splitlines()[-1]


def test_full_disk_leaves_no_trace_that_replays_balanced(tmp_path: Path, workload: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(tiny)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip()}")
    try:
        out = tiny / "t.parquet"
        # ~1.9 M events: the first segments fit in 3 MiB, a later one does not.
        proc = subprocess.run(cli("record", "--quiet", "-o", str(out), "--", str(workload), "65536", "4"),
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.splitlines()[-1]
        assert last.startswith("chargetrace: error: ") and "No space left" in last, proc.stderr
        assert not out.exists()
        partial = tiny / "t.parquet.partial"
        assert list(partial.glob("seg-*.parquet")), "no segment fitted: the disk filled too early to test"
        trace = read_trace(partial)
        assert any("did not finish" in p for p in trace.integrity.problems)
        assert replay(trace).verdict != "balanced"
        assert not list(tiny.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
