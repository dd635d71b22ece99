"""query, the notebook API, the Perfetto export and convert's text parsing on the shipped traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chargetrace import look
from chargetrace.replay import replay
from chargetrace.traces import ChargetraceError, read_trace

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "traces"
COUNTERS = TRACES / "workload-6.18-counters.parquet"
SYNTH = TRACES / "synthetic-hmm-lifecycle-6.7.parquet"
SHIPPED = sorted(TRACES.glob("*.parquet"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chargetrace.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def mutated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mut") / "mut.parquet"
    proc = cli("mutate", str(SYNTH), str(out), "--drop-device-free-uncharge", "1")
    assert proc.returncode == 0, proc.stderr
    return out


# -- query ---------------------------------------------------------------------------


def test_query_counts_match_the_trace() -> None:
    res = look.query(COUNTERS, "SELECT kind, count(*) AS n FROM events GROUP BY kind")
    got = dict(res.rows)
    table = read_trace(COUNTERS).table
    kinds = table.column("kind").cast("string").to_pylist()
    assert got == {k: kinds.count(k) for k in set(kinds)}


def test_query_findings_and_ledger_over_two_traces(mutated: Path) -> None:
    res = look.query([SYNTH, mutated], "SELECT trace, rule, status FROM findings")
    assert res.rows == [(str(mutated), "R6", "violation")]
    ledger = look.query([SYNTH, mutated], "SELECT trace, memcg, charged, live FROM ledger ORDER BY trace")
    rep = replay(read_trace(SYNTH))
    assert (str(SYNTH), rep.memcgs[0].memcg, rep.memcgs[0].charged, rep.memcgs[0].live) in ledger.rows
    assert len(ledger.rows) == 2


def test_notebook_api_dataframes(mutated: Path) -> None:
    ev = look.events([COUNTERS])
    assert len(ev) == read_trace(COUNTERS).num_events and "trace" in ev.columns and "kind" in ev.columns
    f = look.findings(mutated)
    assert list(f.rule) == ["R6"] and f.iloc[0].memcg == 4242
    led = look.ledger(COUNTERS)
    assert int(led.iloc[0].pgpgin) == 2076 and int(led.iloc[0].pgpgout) == 2076
    df = look.query_df(COUNTERS, "SELECT sum(value) AS v FROM events WHERE item = 'PGPGIN'")
    assert int(df.v[0]) == 2076


def test_query_cli_formats() -> None:
    sql = "SELECT item, sum(value) AS v FROM events WHERE kind = 'memcg_stat' AND item LIKE 'PGPG%' GROUP BY item ORDER BY item"
    j = cli("query", str(COUNTERS), sql, "--json")
    assert j.returncode == 0, j.stderr
    assert json.loads(j.stdout) == [{"item": "PGPGIN", "v": 2076}, {"item": "PGPGOUT", "v": 2076}]
    c = cli("query", str(COUNTERS), sql, "--format", "csv")
    assert c.stdout.splitlines() == ["item,v", "PGPGIN,2076", "PGPGOUT,2076"]
    t = cli("query", str(COUNTERS), sql)
    assert t.returncode == 0 and "PGPGIN" in t.stdout


@pytest.mark.parametrize("args, needle", [
    (("query", "traces/none.parquet", "SELECT 1"), "no such file"),
    (("query", str(COUNTERS), "SELEC 1"), "query: Parser Error"),
    (("query", str(COUNTERS)), "needs at least one TRACE"),
    (("report", "traces/none.parquet", "-o", "/tmp/x.html"), "no such file"),
    (("export", str(COUNTERS) + ".nope", "--perfetto", "/tmp/x.pftrace"), "no such file"),
    (("convert", "/nonexistent.txt", "-o", "/tmp/x.parquet"), "no such file"),
])
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], needle: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("command, flag", [("report", "-o"), ("export", "--perfetto")])
def test_existing_output_is_kept_without_force(tmp_path: Path, command: str, flag: str) -> None:
    out = tmp_path / "out"
    out.write_text("keep me")
    proc = cli(command, str(COUNTERS), flag, str(out))
    assert proc.returncode == 2 and "already exists (use --force" in proc.stderr, proc.stderr
    assert out.read_text() == "keep me" and list(tmp_path.iterdir()) == [out]
    proc = cli(command, str(COUNTERS), flag, str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(errors="replace") != "keep me" and list(tmp_path.iterdir()) == [out]


# -- Perfetto export --------------------------------------------------------------


def _read_perfetto(path: Path):
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace

    t = Trace()
    t.ParseFromString(path.read_bytes())
    return t


@pytest.mark.parametrize("trace", SHIPPED, ids=lambda p: p.name)
def test_perfetto_counters_round_trip(tmp_path: Path, trace: Path) -> None:
    from chargetrace.look.perfetto import counter_track_name
    from chargetrace.look.series import model_series

    out = tmp_path / "t.pftrace"
    summary = look.export_perfetto(trace, out)
    parsed = _read_perfetto(out)
    assert len(parsed.packet) == summary["packets"]
    names = {p.track_descriptor.uuid: p.track_descriptor.name for p in parsed.packet if p.HasField("track_descriptor")}
    got: dict[str, list[tuple[int, int]]] = {}
    begins = ends = 0
    for p in parsed.packet:
        if not p.HasField("track_event"):
            continue
        ev = p.track_event
        if ev.type == ev.TYPE_COUNTER:
            got.setdefault(names[ev.track_uuid], []).append((p.timestamp, int(ev.counter_value)))
        begins += ev.type == ev.TYPE_SLICE_BEGIN
        ends += ev.type == ev.TYPE_SLICE_END
    assert begins == ends == summary["slices"]
    want: dict[str, list[tuple[int, int]]] = {}
    for memcg, s in model_series(read_trace(trace)).items():
        if any(s.live):
            want[counter_track_name(memcg, "live")] = list(zip(s.ts_ns, s.live))
        if any(s.pgpg_net):
            want[counter_track_name(memcg, "pgpg_net")] = list(zip(s.ts_ns, s.pgpg_net))
        if s.usage:
            want[counter_track_name(memcg, "usage")] = [(t, v) for t, v, _ in s.usage]
    assert got == want and want


def test_perfetto_violations_are_instants(tmp_path: Path, mutated: Path) -> None:
    out = tmp_path / "m.pftrace"
    proc = cli("export", str(mutated), "--perfetto", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["violations"] == 1
    parsed = _read_perfetto(out)
    instants = [p.track_event for p in parsed.packet
                if p.HasField("track_event") and p.track_event.type == p.track_event.TYPE_INSTANT
                and p.track_event.name.startswith("R6")]
    assert len(instants) == 1
    notes = {a.name: a.string_value or a.int_value for a in instants[0].debug_annotations}
    assert notes["rule"] == "R6" and notes["memcg"] == 4242


def test_perfetto_trace_processor_when_present(tmp_path: Path) -> None:
    import shutil

    shell = shutil.which("trace_processor_shell") or shutil.which("trace_processor")
    if shell is None:
        pytest.skip("Perfetto's trace_processor binary is not installed (it is downloaded at run time)")
    out = tmp_path / "s.pftrace"
    look.export_perfetto(SYNTH, out)
    proc = subprocess.run([shell, "-q", "/dev/stdin", str(out)], input="select count(*) from counter;",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_missing_extra_is_one_line(monkeypatch) -> None:
    from chargetrace.look._deps import need

    with pytest.raises(ChargetraceError, match=r"pip install 'chargetrace\[look\]'"):
        need("chargetrace_no_such_module", "chargetrace test")


def test_progress_is_reported_per_trace() -> None:
    steps: list[tuple[str, int, int]] = []
    look.query([COUNTERS, SYNTH], "SELECT count(*) FROM ledger", progress=lambda *a: steps.append(a))
    assert [s[0] for s in steps] == [f"read {COUNTERS}", f"replay {COUNTERS}", f"read {SYNTH}", f"replay {SYNTH}",
                                     "done"]
    assert steps[-1][1:] == (4, 4)


def _external_refs(text: str) -> list[str]:
    """src/href attributes of the document's own tags (not strings inside scripts)."""
    from html.parser import HTMLParser

    refs: list[str] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            refs.extend(v for k, v in attrs if k in ("src", "href") and v and not v.startswith(("#", "data:")))

    Refs().feed(text)
    return refs


@pytest.mark.parametrize("trace", SHIPPED, ids=lambda p: p.name)
def test_report_on_shipped_traces(tmp_path: Path, trace: Path) -> None:
    out = tmp_path / "r.html"
    summary = look.write_report(trace, out)
    text = out.read_text()
    rep = replay(read_trace(trace))
    assert summary["verdict"] == rep.verdict and f">{rep.verdict}</span>" in text
    assert summary["charts"] >= 2 and text.count('class="chart"') + text.count('class="violation-timeline chart"') \
        == summary["charts"]
    assert _external_refs(text) == []  # everything inline: works offline
    for row in rep.rules:
        assert f"<td>{row.rule}</td>" in text
