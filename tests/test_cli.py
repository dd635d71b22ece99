"""The command line as a user runs it: exit codes, JSON shape, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from chargetrace.cli import main
from chargetrace.replay.mutate import FAULTS
from synthetic import hmm_workload, synthetic_meta, write_rows


@pytest.fixture(scope="module")
def clean_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "synthetic-hmm.parquet"
    write_rows(hmm_workload("6.7+", seed=3).rows, path, synthetic_meta("6.7+", 4242))
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_replay_clean_is_balanced(clean_trace):
    code, out = run("replay", clean_trace)
    assert code == 0, out
    assert "verdict: balanced" in out and "R6" in out


def test_replay_json_shape(clean_trace):
    code, out = run("replay", "--json", clean_trace)
    data = json.loads(out)
    assert code == 0
    assert {"verdict", "events", "violations", "inconclusive", "memcgs"} <= data.keys()
    assert data["verdict"] == "balanced" and data["events"] > 1000
    assert data["memcgs"][0]["memcg"] == 4242 and data["memcgs"][0]["live"] == 0
    checked = {r["rule"]: r["checked"] for r in data["rules"]}
    assert all(checked[r] > 0 for r in ("R1", "R3", "R4", "R5", "R6", "R7", "R8", "R9"))


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "lose-charge"])
def test_each_mutation_is_caught(clean_trace, tmp_path, fault):
    out = tmp_path / "m.parquet"
    code, text = run("mutate", clean_trace, out, f"--{fault}", 2)
    assert code == 0, text
    expect = text.split("expect ")[1].split("\n")[0]
    code, report = run("replay", "--json", out)
    assert code == 1
    rules = {v["rule"] for v in json.loads(report)["violations"]}
    assert rules & set(expect.replace(",", " ").replace(" or ", " ").split()), (expect, rules)


def test_lost_window_is_inconclusive(clean_trace, tmp_path):
    out = tmp_path / "lost.parquet"
    assert run("mutate", clean_trace, out, "--lose-charge", 5)[0] == 0
    code, report = run("replay", "--json", out)
    data = json.loads(report)
    assert code == 3 and data["verdict"] == "inconclusive"
    assert data["violations"] == [] and data["inconclusive"]


def test_era_override(clean_trace):
    code, out = run("replay", "--era", "5.18-6.6", "--json", clean_trace)
    assert code == 1 and "R4" in {v["rule"] for v in json.loads(out)["violations"]}


def test_info(clean_trace):
    code, out = run("info", clean_trace)
    assert code == 0 and "synthetic" in out and "device_free" in out
    code, out = run("info", "--json", clean_trace)
    assert json.loads(out)["kinds"]["charge"] > 0


@pytest.mark.parametrize("content", [b"", b"a,b\n1,2\n", b"PAR1garbage"])
def test_bad_input_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    for command in ("replay", "info"):
        proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", command, str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert str(path) in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2(clean_trace, tmp_path):
    assert run("mutate", clean_trace, tmp_path / "x.parquet")[0] == 2  # no fault given
    assert run("mutate", clean_trace, tmp_path / "x.parquet", "--skip-transfer", 10**6)[0] == 2
    assert run("replay", "--era", "9.9", clean_trace)[0] == 2
