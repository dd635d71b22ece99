"""Fleet replay on local cores (replay/fleet.py, `chargetrace replay DIR_OR_GLOB`):
a hive-partitioned tree with a segment directory, a glob, a bad trace among good
ones, the worst-first exit code, JSON, the engine each trace is replayed with, and one
trace in folio buckets from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from chargetrace.cli import main
from chargetrace.replay.fleet import (
    SEVERITY,
    find_traces,
    is_fleet,
    partition_of,
    replay_fleet,
    worst_exit_code,
)
from chargetrace.replay.mutate import Mutation, mutate
from chargetrace.traces import read_trace, write_table

TRACES = Path(__file__).resolve().parent.parent / "traces"


def make_tree(root: Path, broken: bool = True, bad: bool = False) -> Path:
    """host=a/boot=1, host=a/boot=2 (a segment directory: one recording), host=b/boot=1;
    host=b/boot=2 a mutated trace (R1), host=c an empty file (bad input)."""
    for host, boot, name in (("a", "1", "synthetic-hmm-lifecycle-6.7.parquet"),
                             ("b", "1", "workload-6.18-counters.parquet")):
        d = root / f"host={host}" / f"boot={boot}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(TRACES / name, d / name)
    seg = root / "host=a" / "boot=2" / "rec.parquet.partial"
    seg.mkdir(parents=True)
    shutil.copy(TRACES / "synthetic-hmm-lifecycle-5.18-6.6.parquet", seg / "seg-000000.parquet")
    if broken:
        table, meta = mutate(read_trace(TRACES / "synthetic-hmm-lifecycle-6.7.parquet"), [Mutation("double-charge", 1)])
        d = root / "host=b" / "boot=2"
        d.mkdir(parents=True)
        write_table(table, d / "broken.parquet", meta)
    if bad:
        (root / "host=c").mkdir()
        (root / "host=c" / "empty.parquet").write_bytes(b"")
    return root


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_tree_is_found_with_partitions_and_segment_dirs(tmp_path):
    root = make_tree(tmp_path)
    paths = find_traces(root)
    assert [p.name for p in paths] == ["synthetic-hmm-lifecycle-6.7.parquet", "rec.parquet.partial",
                                       "workload-6.18-counters.parquet", "broken.parquet"]
    assert partition_of(paths[1]) == {"host": "a", "boot": "2"}
    assert find_traces(str(tmp_path / "host=a" / "*" / "*.parquet")) == paths[:1]
    assert find_traces(str(tmp_path / "host=a" / "*")) == paths[:2]
    # A segment directory is one trace, not a fleet; a tree and a glob are fleets.
    assert not is_fleet(paths[1]) and not is_fleet(paths[0]) and is_fleet(root)
    assert is_fleet(str(tmp_path / "host=*"))


def test_fleet_report_totals_and_worst_exit(tmp_path):
    fleet = replay_fleet(make_tree(tmp_path), jobs=2)
    verdicts = {Path(t.path).name: t.verdict for t in fleet.traces}
    assert verdicts == {"synthetic-hmm-lifecycle-6.7.parquet": "balanced", "rec.parquet.partial": "balanced",
                        "workload-6.18-counters.parquet": "balanced", "broken.parquet": "violations"}
    assert fleet.exit_code == 1
    totals = fleet.totals()
    assert totals["traces"] == 4 and totals["verdicts"] == {"balanced": 3, "violations": 1}
    broken = next(t for t in fleet.traces if t.path.endswith("broken.parquet"))
    assert broken.partition == {"host": "b", "boot": "2"} and broken.rules == {"R1": 1}
    assert totals["violations"] == 1 and totals["events"] == sum(t.events for t in fleet.traces) > 0


def test_cli_fleet_json_with_a_bad_trace(tmp_path):
    root = make_tree(tmp_path, broken=False, bad=True)
    code, out, err = run("replay", "--json", "--jobs", "2", root)
    data = json.loads(out)
    assert code == 2, out  # one trace is bad input, the others balanced
    assert data["fleet_json_version"] == 1 and data["exit_code"] == 2 and data["severity"] == list(SEVERITY)
    assert data["totals"]["verdicts"] == {"error": 1, "balanced": 3}
    bad = next(t for t in data["traces"] if t["verdict"] == "error")
    assert bad["error"].endswith("empty file, not a trace") and bad["exit_code"] == 2
    assert err.count("\n") == 1 and "empty.parquet: empty file" in err  # one line for the bad trace


def test_cli_fleet_text(tmp_path):
    code, out, err = run("replay", make_tree(tmp_path), "--jobs", "1")
    assert code == 1, out + err
    lines = out.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("totals: 4 trace(s) (1 violations, 3 balanced)")
    assert any(line.startswith("violations") and "[host=b boot=2]" in line and "R1 1" in line for line in lines)


def test_cli_one_trace_in_buckets_matches_whole(tmp_path):
    path = TRACES / "synthetic-hmm-lifecycle-6.7.parquet"
    code, whole, _ = run("replay", "--json", path)
    code_b, parted, _ = run("replay", "--json", "--buckets", "3", "--jobs", "1", path)
    assert code == code_b == 0
    assert json.loads(whole) == json.loads(parted)


def test_worst_exit_code_order():
    assert worst_exit_code([0, 3, 1, 2]) == 1
    assert worst_exit_code([0, 4, 3]) == 3
    assert worst_exit_code([0, 2, 3]) == 2
    assert worst_exit_code([0, 4]) == 4
    assert worst_exit_code([]) == 0


def test_no_trace_is_one_error_line(tmp_path):
    code, out, err = run("replay", str(tmp_path / "nothing-*.parquet"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "no trace matches" in err
    (tmp_path / "empty-dir").mkdir()
    code, out, err = run("replay", tmp_path / "empty-dir")
    assert code == 2 and err.count("\n") == 1 and "holds no trace" in err


def test_fleet_traces_are_replayed_with_the_engine_asked_for(tmp_path, monkeypatch):
    """--engine reaches each trace's worker (replay.engine.replay_file): 'compiled' replays
    every trace with the compiled engine, 'reference' with none of them; the reports agree."""
    pytest.importorskip("numba", reason="the compiled engine needs numba (pip install numba)")
    import chargetrace.replay.compiled as compiled

    used: list[str] = []
    real = compiled.replay_compiled

    def spy(path, config=None):
        used.append(str(path))
        return real(path, config)

    monkeypatch.setattr(compiled, "replay_compiled", spy)
    root = make_tree(tmp_path / "fleet")
    out = {}
    for engine in ("compiled", "reference"):
        used.clear()
        code, text, err = run("replay", "--json", "--jobs", "1", "--engine", engine, root)
        assert code == 1 and "reference engine" not in err, err
        out[engine] = json.loads(text)
        assert len(used) == (4 if engine == "compiled" else 0), used
    assert out["compiled"] == out["reference"]


def test_buckets_say_they_replay_on_the_reference_model():
    path = TRACES / "synthetic-hmm-lifecycle-6.7.parquet"
    code, _, err = run("replay", "--json", "--buckets", "2", "--jobs", "1", "--engine", "compiled", path)
    assert code == 0 and "--buckets replays each bucket with the reference engine" in err, err
    code, _, err = run("replay", "--json", "--buckets", "2", "--jobs", "1", path)
    assert code == 0 and err == "", err
