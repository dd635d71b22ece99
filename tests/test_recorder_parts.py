"""Recorder parts that need no kernel: probe-trial cache, memcg file parsing,
settle reports, exit statuses, option validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chargetrace.traces import ChargetraceError
from chargetrace.tracer import probecache
from chargetrace.tracer.catalogue import CATALOGUE, VARIANTS, Choice
from chargetrace.tracer.cgroups import Memcg, held_by
from chargetrace.tracer.command import shell_status
from chargetrace.tracer.config import RecordConfig
from chargetrace.tracer.headers import HeaderSource
from chargetrace.tracer.kernel import KernelInfo


def _kernel(tmp_path: Path, release: str = "6.18.0") -> KernelInfo:
    return KernelInfo(release, None, HeaderSource("kheaders", None, real=True), tmp_path, tmp_path / "kallsyms")


class _CountingBcc:
    """Only its version enters the cache key; the trials are replaced below."""

    __version__ = "0.29.1"


def test_trial_results_are_cached_per_kernel_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs: list[int] = []
    fault = next(v for v in VARIANTS if v.probe == "tp:exceptions:page_fault_user")

    def fake_choose(bcc, kernel, only, skip_how):  # the real trials need root and BPF
        runs.append(1)
        return [Choice("fault", "fault", fault, []), Choice("charge", "charge", None, ["kprobe: no kprobe_events"])]

    monkeypatch.setattr(probecache, "choose_probes", fake_choose)
    k = _kernel(tmp_path)
    first, key, cached = probecache.cached_choose(_CountingBcc(), k)
    assert not cached and len(runs) == 1
    again, key2, cached = probecache.cached_choose(_CountingBcc(), k)
    assert cached and key2 == key and len(runs) == 1
    assert [(c.event, c.variant, c.reasons) for c in again] == [(c.event, c.variant, c.reasons) for c in first]
    # another build, other options: other keys, trials again
    assert probecache.cache_key(_kernel(tmp_path, "6.18.1"), None, frozenset()) != key
    assert probecache.cache_key(k, {"fault"}, frozenset(), "0.29.1") != key
    assert probecache.cache_key(k, None, frozenset({"tracepoint"}), "0.29.1") != key
    probecache.forget(key)
    probecache.cached_choose(_CountingBcc(), k)
    assert len(runs) == 2


def test_a_cache_entry_naming_another_probe_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    key = probecache.cache_key(_kernel(tmp_path), None, frozenset())
    path = tmp_path / "cache" / "chargetrace" / "probes" / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"choices": [{"event": "fault", "pid": 1, "probe": "kprobe:elsewhere", "reasons": []}]}')
    assert probecache._load(key) is None
    path.write_text("not json")
    assert probecache._load(key) is None


def _memcg_dir(tmp_path: Path, version: int) -> Memcg:
    d = tmp_path / "cg"
    d.mkdir()
    if version == 1:
        (d / "memory.stat").write_text("cache 8192\nrss 4096\nshmem 4096\ntotal_cache 12288\n")
        (d / "memory.kmem.usage_in_bytes").write_text("65536\n")
        (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    else:
        (d / "memory.stat").write_text("anon 4096\nfile 0\nkernel 8192\n")
        (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    return Memcg(d, version)


def test_memstat_keys_as_the_file_spells_them(tmp_path: Path) -> None:
    m = _memcg_dir(tmp_path, 1)
    assert m.memstat() == [("cache", 8192), ("rss", 4096), ("shmem", 4096), ("total_cache", 12288),
                           ("kmem.usage", 65536)]
    assert m.oom_kills() == 2


def test_v2_memstat_and_oom_kills(tmp_path: Path) -> None:
    m = _memcg_dir(tmp_path, 2)
    assert m.memstat() == [("anon", 4096), ("file", 0), ("kernel", 8192)]
    assert m.oom_kills() == 1
    # 5.2+: the memcg's own count, not its subtree's
    (m.path / "memory.events.local").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert m.oom_kills() == 0
    (m.path / "memory.events.local").unlink()
    (m.path / "memory.events").write_text("low 0\n")  # a kernel without the counter
    assert m.oom_kills() is None


def test_held_by_names_what_reclaim_left() -> None:
    assert held_by({"cache": 8192, "shmem": 8192, "kmem.usage": 4096}) == (
        "shmem/tmpfs/memfd pages (reclaim needs swap): 8192 bytes; "
        "kernel memory (slab, page tables: freed with their objects): 4096 bytes")
    assert held_by({"anon": 0, "file": 0}) == ""


def test_shell_status() -> None:
    assert shell_status(0) == 0 and shell_status(3) == 3
    assert shell_status(-9) == 137 and shell_status(-15) == 143


def test_unknown_events_are_a_usage_error() -> None:
    with pytest.raises(ChargetraceError, match="unknown event nope"):
        RecordConfig(output=Path("x.parquet"), events={"fault", "nope"}).validate()
    RecordConfig(output=Path("x.parquet"), events={e.name for e in CATALOGUE}).validate()


def test_record_rejects_unknown_events_in_one_line(tmp_path: Path) -> None:
    # validated before the root check: any user gets the usage error
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "record", "-o", str(tmp_path / "t.parquet"),
                           "--events", "fault,bogus", "--", "true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown event bogus" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_v2_settle_uses_memory_high_where_memory_reclaim_is_absent(tmp_path: Path) -> None:
    m = _memcg_dir(tmp_path, 2)
    (m.path / "memory.current").write_text("8192\n")
    (m.path / "memory.high").write_text("max\n")
    # <= 5.18 (no memory.reclaim): memory.high = 0 reclaims in the write, then the limit goes back
    res = m.settle()
    assert (res.method, res.done) == ("high", True)
    assert (m.path / "memory.high").read_text() == "max\n"
    (m.path / "memory.reclaim").write_text("")
    res = m.settle()
    assert (res.method, res.done) == ("reclaim", True)
    assert (m.path / "memory.reclaim").read_text() == "8192\n"
