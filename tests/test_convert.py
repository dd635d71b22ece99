"""convert: perf script / trace-cmd report / tracefs text layouts -> trace rows with provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chargetrace.convert.mapping import Mapper
from chargetrace.convert.textparse import Header, detect_format, parse_lines
from chargetrace.replay import replay
from chargetrace.traces import read_trace

# Lines in the layouts the tools print (perf 6.1 `perf script --ns -F comm,pid,tid,cpu,time,event,trace`,
# perf's default layout, and trace-cmd 3.1 `report -t` / tracefs `trace`).
PERF = """\
# os release : 6.18.44-test
# hostname : box
# nrcpus avail : 2
# event : name = memcg:count_memcg_events, , id = { 1 }, type = 2
# event : name = migrate:mm_migrate_pages, , id = { 2 }, type = 2
        workload 700/701 [001]   513.211495940:   exceptions:page_fault_user: address=0x7f0000001000 ip=0x401000 error_code=0x6
        workload 700/701 [001]   513.211496000:     memcg:count_memcg_events: memcg_id=42 item=0 val=1
        workload 700/701 [001]   513.211497000:        memcg:mod_memcg_state: memcg_id=42 item=55 val=-2
  kworker/u4:1-ev    9/9    [000]   513.300000000:      kmem:mm_page_free: page=0x1 pfn=0x2 order=0
        workload 700/701 [000]   514.000000000:     memcg:count_memcg_events: memcg_id=42 item=1 val=1
        workload 700/700 [000]   514.100000000:     sched:sched_process_exit: comm=workload pid=700 prio=120 group_dead=true
              sh 699/699 [001]   513.100000000:     sched:sched_process_fork: comm=sh pid=699 child_comm=sh child_pid=700
"""
PERF_DEFAULT = "            perf 27098 [001]   513.211495: memcg:mod_memcg_lruvec_state: memcg_id=4226 item=6 val=-1\n"
TRACECMD = """\
cpus=2
        workload-701   [001] .....   513.211495940: page_fault_user:      address=0x7f0000001000 ip=0x401000 error_code=0x6
        workload-701   [001] .....   513.211496000: count_memcg_events:   memcg_id=42 item=0 val=1
          <idle>-0     [000] d..2.   513.211500000: mm_migrate_pages:     nr_succeeded=3 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=compaction
"""
ITEMS = {"tp:memcg:count_memcg_events": {0: "PGPGIN", 1: "PGPGOUT"}, "tp:memcg:mod_memcg_state": {55: "MEMCG_KMEM"}}


def _rows(text: str, fmt: str):
    header, stats, mapper = Header(), {}, Mapper(ITEMS)
    rows = [r for r in (mapper.row(rec) for rec in parse_lines(iter(text.splitlines(True)), fmt, header, stats)) if r]
    return rows, header, stats, mapper


def test_perf_script_layout() -> None:
    assert detect_format(PERF.splitlines()) == "perf"
    rows, header, stats, mapper = _rows(PERF, "perf")
    assert header.kernel_release == "6.18.44-test" and header.ncpus == 2
    assert header.events == ["memcg:count_memcg_events", "migrate:mm_migrate_pages"]
    assert [r["kind"] for r in rows] == ["fault", "memcg_stat", "memcg_stat", "memcg_stat", "exit", "fork"]
    fault = rows[0]
    assert (fault["pid"], fault["tid"], fault["cpu"], fault["addr"], fault["value"]) == (700, 701, 1, 0x7F0000001000, 6)
    assert fault["ts_ns"] == 513_211_495_940 and fault["probe"] == "tp:exceptions:page_fault_user"
    assert [(r["memcg"], r["item"], r["value"]) for r in rows[1:4]] == [(42, "PGPGIN", 1), (42, "MEMCG_KMEM", -2),
                                                                        (42, "PGPGOUT", 1)]
    assert rows[4]["value"] == 1 and rows[5]["pid"] == 699 and rows[5]["value"] == 700
    assert mapper.unmapped == {"kmem:mm_page_free": 1} and stats.get("skipped", 0) == 0


def test_perf_default_layout_and_unnamed_items() -> None:
    rows, *_rest, mapper = _rows(PERF_DEFAULT, "perf")
    assert rows[0]["pid"] == rows[0]["tid"] == 27098 and rows[0]["ts_ns"] == 513_211_495_000
    assert rows[0]["item"] == "item6" and mapper.unnamed_items == {"tp:memcg:mod_memcg_lruvec_state"}


def test_trace_cmd_layout_has_no_system_names() -> None:
    assert detect_format(TRACECMD.splitlines()) == "ftrace"
    rows, _h, stats, _m = _rows(TRACECMD, "ftrace")
    assert [r["probe"] for r in rows] == ["tp:exceptions:page_fault_user", "tp:memcg:count_memcg_events",
                                         "tp:migrate:mm_migrate_pages"]
    assert rows[0]["tid"] == rows[0]["pid"] == 701 and rows[0]["comm"] == "workload"
    mig = rows[2]
    assert (mig["kind"], mig["item"], mig["value"], mig["ret"], mig["comm"]) == ("page_migration", "compaction", 3, 1,
                                                                               "<idle>")


def test_kprobe_events_with_named_args() -> None:
    text = ("  t 5/5 [000] 1.000000000: probe:__mem_cgroup_uncharge: (ffffffff8123) folio=0xffffea0001 memcg=42 nr_pages=1\n"
            "  t 5/5 [000] 1.000000100: probe:free_zone_device_folio: (ffffffff8124) folio=0xffffea0002 memcg=42 value=0\n")
    rows, *_ = _rows(text, "perf")
    assert [(r["kind"], r["probe"], r["folio"], r["memcg"]) for r in rows] == [
        ("uncharge", "kprobe:__mem_cgroup_uncharge", 0xFFFFEA0001, 42),
        ("device_free", "kprobe:free_zone_device_folio", 0xFFFFEA0002, 42)]


def test_convert_cli_writes_a_trace_with_provenance(tmp_path: Path) -> None:
    src, out = tmp_path / "perf.txt", tmp_path / "t.parquet"
    src.write_text(PERF)
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "convert", str(src), "-o", str(out),
                           "--memcg", "42", "--fresh", "--exited", "--settled", "force_empty", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events"] == 6 and summary["unmapped"] == {"kmem:mm_page_free": 1}
    trace = read_trace(out)
    meta = trace.meta
    assert meta.recorder == "perf (chargetrace convert)" and meta.kernel_release == "6.18.44-test"
    assert meta.provenance["converted_from"] == str(src) and meta.provenance["unmapped_tracepoints"]
    assert meta.scope.memcg == 42 and meta.scope.fresh and meta.scope.settled == "force_empty"
    # Another kernel's item numbering is unknown without its BTF: numbers, never this kernel's names.
    assert "recorded on 6.18.44-test" in meta.provenance["counter_items_from"]
    assert set(trace.table.column("item").cast("string").to_pylist()) >= {"item0", "item55"}
    assert meta.era.migrate is None and "recorded on 6.18.44-test" in meta.era.detected_by
    attached = {p["probe"] for p in meta.probes if p["probe"]}
    assert "tp:migrate:mm_migrate_pages" in attached  # enabled in the recording, though it never fired
    charge = next(p for p in meta.probes if p["kind"] == "charge")
    assert charge["probe"] is None and "perf recording" in charge["reason"]
    assert trace.table.column("seq").to_pylist() == list(range(6))
    # Counter items of another kernel stay numbers, so no rule can judge anything: unchecked, never balanced.
    report = replay(trace)
    assert report.verdict == "unchecked"


def test_convert_refuses_scope_flags_without_memcg(tmp_path: Path) -> None:
    src = tmp_path / "perf.txt"
    src.write_text(PERF)
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "convert", str(src), "-o", str(tmp_path / "o.parquet"),
                           "--fresh"], capture_output=True, text=True)
    assert proc.returncode == 2 and "give --memcg or --cgroup" in proc.stderr


def test_dropped_events_become_lost_rows_and_make_the_replay_inconclusive(tmp_path: Path) -> None:
    lost = "            perf 11332/11332 [001]  514.050000000: PERF_RECORD_LOST lost 8114\n"
    src, out = tmp_path / "perf.txt", tmp_path / "t.parquet"
    lines = PERF.splitlines(True)
    src.write_text("".join(lines[:8]) + lost + "".join(lines[8:]))
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "convert", str(src), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    trace = read_trace(out)
    assert trace.meta.drops == {"total": 8114, "per_cpu": {"1": 8114}}
    row = [r for r in trace.table.to_pylist() if r["kind"] == "lost"][0]
    # the window reaches back to the first event: nothing before the drop can be trusted
    assert (row["cpu"], row["value"], row["probe"]) == (1, 8114, "recorder")
    assert row["span_ns"] == 514_050_000_000 - 513_211_495_940
    assert replay(trace).verdict != "balanced"


def test_trace_cmd_lost_line() -> None:
    rows, *_ = _rows(TRACECMD + "CPU:1 [LOST 17 EVENTS]\n", "ftrace")
    assert rows[-1]["kind"] == "lost" and rows[-1]["value"] == 17 and rows[-1]["cpu"] == 1


def test_nothing_usable_is_an_error_not_an_empty_balanced_trace(tmp_path: Path) -> None:
    src = tmp_path / "perf.txt"
    src.write_text("# os release : 6.18\n  kworker 9/9 [000] 1.000000000: kmem:mm_page_free: page=0x1 pfn=0x2 order=0\n")
    out = tmp_path / "o.parquet"
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "convert", str(src), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no event that chargetrace can use" in proc.stderr
    assert "kmem:mm_page_free" in proc.stderr and not out.exists()
