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


# ---------------------------------------------------------------------------- issue 8: one line, always


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "chargetrace.cli", *map(str, args)],
                          capture_output=True, text=True, **kwargs)


def assert_one_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chargetrace: error: "), proc.stderr
    assert "internal error" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args,needle", [
    (["replay", "--era", "7.0", "x.parquet"], "'--era'"),
    (["replay"], "Missing argument 'TRACE'"),
    (["replay", "--context", "100000000", "x.parquet"], "'--context'"),
    (["info", "/nonexistent/t.parquet"], "no such file"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_are_one_line(args, needle):
    assert_one_line(cli(*args), needle)


def test_corrupt_footer_message_is_one_line(clean_trace, tmp_path):
    data = bytearray(clean_trace.read_bytes())
    data[-8:-4] = (10**6).to_bytes(4, "little")  # footer length beyond the file: pyarrow's text ends in "\n"
    bad = tmp_path / "footer.parquet"
    bad.write_bytes(bytes(data))
    assert_one_line(cli("replay", bad), str(bad))


def test_trace_text_is_never_markup(tmp_path):
    from chargetrace.traces import TraceMeta, TraceWriter

    path = tmp_path / "m.parquet"
    meta = TraceMeta(host="[/x]host[bold]", kernel_release=":smile:")
    meta.scope.command = ["python3", "-c", "print([1, 2][0])"]
    with TraceWriter(path, meta) as w:
        w.append_rows([{"kind": "fault", "comm": "[red]c[/red]"}])
    proc = cli("info", path)
    assert proc.returncode == 0, proc.stderr
    assert "[/x]host[bold]" in proc.stdout and ":smile:" in proc.stdout
    assert "print([1, 2][0])" in proc.stdout


def test_replay_through_a_closed_pipe_keeps_the_verdict(clean_trace):
    proc = subprocess.run(f"{sys.executable} -m chargetrace.cli replay {clean_trace} | true; "
                          "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# ---------------------------------------------------------------------------- issue 8: writes


def test_outputs_are_never_overwritten_without_force(clean_trace, tmp_path):
    out = tmp_path / "a.parquet"
    out.write_bytes(b"keep")
    for args in (["anonymize", clean_trace, out], ["mutate", clean_trace, out, "--double-charge", 1]):
        code, text = run(*args)
        assert code == 2 and "already exists" in text and out.read_bytes() == b"keep"
    code, text = run("anonymize", clean_trace, out, "--force")
    assert code == 0, text
    assert out.stat().st_mode & 0o777 == 0o600


def test_input_is_never_the_output_without_force(clean_trace, tmp_path):
    copy = tmp_path / "in.parquet"
    copy.write_bytes(clean_trace.read_bytes())
    code, text = run("anonymize", copy, copy)
    assert code == 2 and "is the input trace" in text
    # A temporary-looking input name is no longer the writer's own temp file.
    tmp_named = tmp_path / "x.parquet.tmp"
    tmp_named.write_bytes(clean_trace.read_bytes())
    code, text = run("anonymize", tmp_named, tmp_path / "x.parquet")
    assert code == 0, text
    assert tmp_named.read_bytes() == clean_trace.read_bytes()


def test_sigterm_during_a_write_leaves_nothing(clean_trace, tmp_path, monkeypatch):
    import os
    import signal

    import chargetrace.traces.writer as writer_mod

    real = writer_mod.pq.write_table

    def write_then_terminated(table, where, **kwargs):
        real(table, where, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the temp file exists

    monkeypatch.setattr(writer_mod.pq, "write_table", write_then_terminated)
    out = tmp_path / "o.parquet"
    code, text = run("anonymize", clean_trace, out)
    assert code == 2 and "interrupted" in text
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_mutate_refuses_a_damaged_trace(clean_trace, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(clean_trace)
    cut = tmp_path / "cut.parquet"
    pq.write_table(table.take(list(range(0, 50)) + list(range(60, table.num_rows))), cut)  # 10 rows removed
    code, text = run("mutate", cut, tmp_path / "m.parquet", "--double-charge", 1)
    assert code == 2 and "not an intact trace" in text and "missing" in text
