"""Fleet replay on Apache Spark: replay/fleet.py's per-trace function run by
PySpark's ``groupBy(...).applyInArrow`` over Parquet that Spark reads itself.

    python -m chargetrace.replay.fleet_spark ROOT [--master local[2]] [--json]
    spark-submit --master yarn ... -m chargetrace.replay.fleet_spark ROOT

Spark lists the files under ROOT (hive partitions ``host=``/``boot=`` become
columns), reads their rows and hands the rows of each trace — every file of
one trace, a segment directory's ``seg-*`` files together — to a Python
worker as one Arrow table (no pandas in between). The worker casts the
columns back to the trace schema (Spark has no unsigned types: it reads
uint64 as decimal(20,0) and uint32 as bigint), sorts by ``seq``, takes the
metadata and integrity checks of the trace's own footer
(traces/reader.py, on the worker), and replays it with the reference model;
with ``buckets`` > 1 one trace is split into folio buckets on the worker
(replay/fleet_partition.py). One result row per trace comes back; the exit
code is replay/fleet.py's worst-first order.

Why Spark rather than Ray Data (measured on this 2-core machine, BENCHMARKS.md
"Fleet replay"): Spark's own Parquet reader discovers hive partitions and
``applyInArrow`` hands each group over as Arrow; a local cluster is one
``pip install pyspark`` plus a Java 17 runtime (Debian's
openjdk-17-jre-headless), and the same code runs on YARN or Kubernetes. Ray
Data's ``groupby().map_groups`` shuffles through its object store, and a
local Ray cluster starts a raylet, GCS and dashboard processes of its own.

Imported lazily: without the ``fleet`` extra (pyspark) or without Java, the
command says so in one line (exit 2).

Limits: a trace file Spark cannot read (empty, truncated) fails Spark's scan
of the whole fleet — the local pool (``chargetrace replay DIR``) reports it
as one bad trace among good ones instead; checking the files first with
``find_traces`` + ``read_meta`` is left to the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from chargetrace.traces import ChargetraceError

__all__ = ["replay_on_spark", "spark_session", "RESULT_SCHEMA", "trace_of_file"]

#: One row per trace (Spark DDL); ``rules`` is a JSON object (violations per rule).
RESULT_SCHEMA = ("path string, host string, boot string, verdict string, exit_code int, events long, "
                 "violations long, inconclusive long, candidates long, rules string, error string")


def trace_of_file(uri: str) -> str:
    """The trace path of Spark's ``_trace`` column: the file URI with a segment
    file's name cut off (its directory is the trace), as a local path."""
    return unquote(urlparse(uri).path)


def _result_row(result) -> dict[str, Any]:
    return {"path": result.path, "host": result.partition.get("host", ""), "boot": result.partition.get("boot", ""),
            "verdict": result.verdict, "exit_code": result.exit_code, "events": result.events,
            "violations": result.violations, "inconclusive": result.inconclusive, "candidates": result.candidates,
            "rules": json.dumps(result.rules, sort_keys=True), "error": result.error}


def _replay_group(table, options: dict[str, Any], buckets: int):
    """applyInArrow: the rows of one trace -> one result row."""
    import pyarrow as pa

    from chargetrace.replay.fleet import EXIT_BAD_INPUT, TraceResult, partition_of, result_of
    from chargetrace.traces import read_meta
    from chargetrace.traces.integrity import check_rows
    from chargetrace.traces.reader import Trace
    from chargetrace.traces.arrays import constant_array
    from chargetrace.traces.schema import ARROW_SCHEMA, COLUMN_DEFAULTS, COLUMN_SINCE

    from . import ReplayConfig, replay

    path = trace_of_file(table.column("_trace")[0].as_py())
    part = partition_of(path)
    try:
        meta = read_meta(path)
        arrays, names = [], []
        for fld in ARROW_SCHEMA:
            if meta.schema_version < COLUMN_SINCE.get(fld.name, 0):
                # Older than the column (pgmap_ops before schema 3): absent from its files, all
                # null where Spark merged its schema with newer files'; the reader's default.
                arrays.append(constant_array(COLUMN_DEFAULTS[fld.name], fld.type, table.num_rows))
                names.append(fld.name)
            elif fld.name in table.column_names:
                arrays.append(table.column(fld.name).cast(fld.type))
                names.append(fld.name)
        rows = pa.Table.from_arrays(arrays, names=names).sort_by("seq")
        missing = [f.name for f in ARROW_SCHEMA if f.name not in names]
        if missing:
            raise ChargetraceError(f"{path}: not a chargetrace trace (missing column(s) {', '.join(missing)})")
        trace = Trace(Path(path), rows, meta, check_rows(rows, meta, path, missing_columns=[]))
        config = ReplayConfig(**options)
        if buckets > 1:
            from .fleet_partition import replay_partitioned

            report = replay_partitioned(trace, buckets, config)
        else:
            report = replay(trace, config)
        result = result_of(path, part, report)
    except ChargetraceError as exc:
        result = TraceResult(path, part, "error", EXIT_BAD_INPUT, error=str(exc))
    schema = pa.schema([("path", pa.string()), ("host", pa.string()), ("boot", pa.string()),
                        ("verdict", pa.string()), ("exit_code", pa.int32()), ("events", pa.int64()),
                        ("violations", pa.int64()), ("inconclusive", pa.int64()), ("candidates", pa.int64()),
                        ("rules", pa.string()), ("error", pa.string())])
    return pa.Table.from_pylist([_result_row(result)], schema=schema)


def spark_session(master: str = "local[2]", app: str = "chargetrace-fleet"):
    """A Spark session whose Python workers run this interpreter; one error line without pyspark or Java."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ChargetraceError("fleet replay on Spark needs the 'fleet' extra: pip install 'chargetrace[fleet]'") \
            from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ChargetraceError("Spark needs a Java runtime (Debian: apt-get install openjdk-17-jre-headless)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (SparkSession.builder.master(master).appName(app)
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(max(2, os.cpu_count() or 2)))
            .config("spark.pyspark.python", sys.executable)
            .getOrCreate())


def replay_on_spark(spark, root: str, options: dict[str, Any] | None = None, buckets: int = 1) -> list[dict]:
    """Replay every trace under ``root`` on ``spark``; one dict per trace, sorted by path."""
    from pyspark.sql import functions as F

    options = dict(options or {})
    root = str(Path(root).resolve())
    # mergeSchema: traces of several schema versions in one fleet keep every column (a schema-2
    # file's rows get nulls for pgmap_ops, which _replay_group fills as the reader does).
    frame = (spark.read.option("basePath", root).option("pathGlobFilter", "*.parquet")
             .option("recursiveFileLookup", "true").option("mergeSchema", "true").parquet(root))
    # Segments of one recording are one trace: group by their directory (in the JVM, no Python UDF).
    frame = frame.withColumn("_trace", F.regexp_replace(F.input_file_name(), "/seg-[^/]*[.]parquet$", ""))
    rows = frame.groupBy("_trace").applyInArrow(lambda t: _replay_group(t, options, buckets), RESULT_SCHEMA).collect()
    return sorted((row.asDict() for row in rows), key=lambda r: r["path"])


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .fleet import FleetReport, TraceResult, partition_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--buckets", type=int, default=1)
    parser.add_argument("--era", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not Path(args.root).is_dir():
            raise ChargetraceError(f"{args.root}: not a directory")
        spark = spark_session(args.master)
        try:
            results = replay_on_spark(spark, args.root, {"era": args.era}, args.buckets)
        finally:
            spark.stop()
    except ChargetraceError as exc:
        print(f"chargetrace: error: {exc}", file=sys.stderr)
        return 2
    fleet = FleetReport(args.root, [
        TraceResult(r["path"], partition_of(r["path"]), r["verdict"], r["exit_code"], r["events"], r["violations"],
                    r["inconclusive"], r["candidates"], json.loads(r["rules"]), r["error"]) for r in results])
    code = fleet.exit_code
    if args.json:
        print(json.dumps(fleet.to_json(), indent=2))
    else:
        print("\n".join(fleet.lines()))
    return code


if __name__ == "__main__":
    sys.exit(main())
