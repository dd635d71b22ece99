"""The counter units replay/units.py relies on, checked on the running kernel.

Each workload is recorded with the real `chargetrace record -- CMD` and its
memcg_stat rows summed: PGPGIN/PGPGOUT must count folios (events), not
pages — one per THP, one per large page-cache folio — while NR_ANON_MAPPED,
NR_ANON_THPS and NR_FILE_PAGES move by pages. Each recording must then
replay without a false violation, with the counter rules having checked
something of substance. Needs the memcg tracepoints (6.13+) and cgroup v1
PGPGIN/PGPGOUT (CONFIG_MEMCG_V1); skips with the reason otherwise.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from chargetrace.replay import replay
from chargetrace.traces import read_trace

from .conftest import HERE, record

pytestmark = pytest.mark.live

#: Charges the workload's exec and startup make besides the pages it touches
#: (measured: 14-270; the page-cache run's are mostly anon startup pages).
STARTUP = 400


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bin") / "units"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(HERE / "units.c")], check=True)
    return out


def _run(tmp: Path, *argv: str) -> tuple[pd.DataFrame, dict[str, int], object]:
    run = record(tmp, "--", *argv)
    assert run.returncode == 0, run.stderr
    printed = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", run.stdout)}
    trace = read_trace(run.trace)
    df = trace.table.to_pandas()
    stats = df[df.kind == "memcg_stat"]
    if stats.empty:
        pytest.skip("no memcg_stat rows: the memcg:* tracepoints (Linux 6.13+) did not attach")
    if not (stats.item == "PGPGIN").any():
        pytest.skip("no PGPGIN rows: the kernel counts them only for cgroup v1 (CONFIG_MEMCG_V1)")
    return stats, printed, trace


def _total(stats: pd.DataFrame, item: str) -> int:
    return int(stats[stats.item == item].value.sum())


def _peak(stats: pd.DataFrame, item: str) -> int:
    running = stats[stats.item == item].value.cumsum()
    return int(running.max()) if len(running) else 0


def _drained(stats: pd.DataFrame) -> None:
    """Every folio charged was uncharged, except page cache the drained memcg still
    holds legitimately (each such folio is at least one page of NR_FILE_PAGES)."""
    still_charged = _total(stats, "PGPGIN") - _total(stats, "PGPGOUT")
    assert 0 <= still_charged <= _total(stats, "NR_FILE_PAGES"), still_charged


def _replays_clean(trace) -> None:
    report = replay(trace)
    assert report.verdict == "balanced", ([f.message for f in report.violations], report.notes)
    cov = report.coverage()["rules"]
    assert cov["R3.pgpg"]["substance"] > 0 and cov["R13.anon"]["substance"] > 0, cov
    assert all(m.reconcile in ("ok", "") for m in report.memcgs)


def test_order0_anon_pgpgin_is_one_event_per_page(tmp_path: Path, units: Path) -> None:
    stats, printed, trace = _run(tmp_path, str(units), "anon", "4096")
    pages = printed["pages"]
    pgpgin = _total(stats, "PGPGIN")
    # order-0 folios: one event each, so events = pages (+ startup charges)
    assert pages <= pgpgin <= pages + STARTUP
    assert pages <= _peak(stats, "NR_ANON_MAPPED") <= pages + STARTUP
    _drained(stats)
    _replays_clean(trace)


def test_thp_pgpgin_is_one_event_per_huge_folio(tmp_path: Path, units: Path) -> None:
    if "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        pytest.skip("transparent huge pages are disabled on this kernel")
    stats, printed, trace = _run(tmp_path, str(units), "thp", "16")
    thp = printed["thp"]
    if thp == 0:
        pytest.skip("the kernel backed no huge page (fragmented memory?)")
    pages = printed["pages"]
    pgpgin = _total(stats, "PGPGIN")
    # NR_ANON_MAPPED / NR_ANON_THPS move by pages: 512 per THP ...
    assert _peak(stats, "NR_ANON_THPS") == 512 * thp
    assert _peak(stats, "NR_ANON_MAPPED") >= pages
    assert _total(stats, "THP_FAULT_ALLOC") >= thp
    # ... PGPGIN by folios: one per THP (a page count would be >= 512 * thp)
    order0 = pages - 512 * thp
    assert thp <= pgpgin <= thp + order0 + STARTUP < 512 * thp
    _drained(stats)
    _replays_clean(trace)


def test_page_cache_on_disk_fs_counts_pages_in_nr_file_pages(tmp_path: Path, units: Path) -> None:
    target = Path("/var/tmp")
    fstype = subprocess.run(["stat", "-f", "-c", "%T", str(target)], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs", ""):
        pytest.skip(f"{target} is not on a disk file system ({fstype or 'unknown'})")
    stats, printed, trace = _run(tmp_path, str(units), "cache", str(target / f"chargetrace-units-{tmp_path.name}"),
                                 "16384")
    pages = printed["pages"]
    pgpgin = _total(stats, "PGPGIN")
    assert _peak(stats, "NR_FILE_PAGES") >= pages  # pages, exactly as many as cached
    # events never exceed folios; with large page-cache folios they are far fewer than pages
    assert pgpgin <= pages + STARTUP
    _drained(stats)
    print(f"page cache: {pages} pages cached in {pgpgin} PGPGIN events ({fstype})")
    _replays_clean(trace)


def test_tmpfs_file_kept_after_exit_is_held_not_a_leak(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm tmpfs")
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("swap is on: the settle's reclaim could swap the tmpfs pages out")
    kept = shm / f"chargetrace-held-{tmp_path.name}"
    try:
        run = record(tmp_path, "--", "sh", "-c", f"dd if=/dev/zero of={kept} bs=1M count=8 status=none")
        assert run.returncode == 0, run.stderr
        trace = read_trace(run.trace)
    finally:
        kept.unlink(missing_ok=True)
    stats = trace.table.to_pandas().query("kind == 'memcg_stat'")
    if not (stats.item == "PGPGIN").any():
        pytest.skip("no PGPGIN rows: the kernel counts them only for cgroup v1 (CONFIG_MEMCG_V1)")
    assert _total(stats, "NR_SHMEM") == 2048  # 8 MiB of shmem, in pages, still charged
    assert _total(stats, "PGPGIN") - _total(stats, "PGPGOUT") > 0  # its folio charges stay open
    report = replay(trace)
    assert report.verdict == "balanced", ([f.message for f in report.violations], report.notes)
    # said as held (this recorder's drain), or leaks not judged (a drain that says it did not finish)
    held_shmem = sum(h.shmem for h in report.held if h.verdict == "held")
    assert held_shmem == 2048 or any("draining after exit did not finish" in n for n in report.notes), \
        ([h.text for h in report.held], report.notes)
