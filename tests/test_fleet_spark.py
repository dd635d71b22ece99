"""Fleet replay on a local Spark cluster (replay/fleet_spark.py: PySpark applyInArrow
over Spark's own Parquet reader): the same per-trace results as the local pool,
whole and in folio buckets, traces of schema versions 1 and 3 together; without the extra,
one error line."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import pytest
from test_fleet import TRACES, make_tree

from chargetrace.traces import ChargetraceError, read_trace, write_table


def test_missing_extra_is_one_line(monkeypatch):
    from chargetrace.replay import fleet_spark

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if the 'fleet' extra were not installed
    with pytest.raises(ChargetraceError, match=r"needs the 'fleet' extra"):
        fleet_spark.spark_session()


def test_command_on_a_file_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "chargetrace.replay.fleet_spark", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a directory" in proc.stderr


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="the 'fleet' extra (pyspark) is not installed")
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: Spark needs a Java runtime (openjdk-17-jre-headless)")
    from chargetrace.replay.fleet_spark import spark_session

    session = spark_session("local[2]", "chargetrace-test")
    yield session
    session.stop()


def test_spark_fleet_matches_local_pool(tmp_path, spark):
    from chargetrace.replay.fleet import replay_fleet, worst_exit_code
    from chargetrace.replay.fleet_spark import replay_on_spark

    root = make_tree(tmp_path / "fleet")
    # A schema-3 trace (pgmap_ops) beside schema-1 ones: Spark merges the schemas, the older
    # traces get the column's default as the reader gives it.
    trace = read_trace(TRACES / "synthetic-hmm-lifecycle-5.18-6.6.parquet")
    (root / "host=d" / "boot=1").mkdir(parents=True)
    write_table(trace.table, root / "host=d" / "boot=1" / "v3.parquet", dataclasses.replace(trace.meta, schema_version=3))
    local = {t.path: t for t in replay_fleet(root, jobs=1).traces}
    assert not any(t.error for t in local.values() if "host=c" not in t.path)
    for buckets in (1, 2):
        results = replay_on_spark(spark, str(root), buckets=buckets)
        assert sorted(r["path"] for r in results) == sorted(local)  # the segment directory is one trace
        for row in results:
            mine = local[row["path"]]
            assert (row["verdict"], row["events"], row["violations"], row["exit_code"]) == \
                (mine.verdict, mine.events, mine.violations, mine.exit_code)
            assert (row["host"], row["boot"]) == (mine.partition["host"], mine.partition["boot"])
        assert worst_exit_code(r["exit_code"] for r in results) == 1
