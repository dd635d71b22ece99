"""chargetrace command line: parse, call, print.

Exit codes: 0 balanced (or success), 1 violations, 2 bad input or usage (one line on stderr),
3 inconclusive (events were lost where a finding depends on them, or the
recording could not see all of its scope), 4 unchecked (no rule checked
anything of substance: see README "Verdicts and exit codes");
`record -- CMD` exits with CMD's status (128+N for signal N).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console

from chargetrace.traces import ChargetraceError, read_trace, write_table

EXIT_BAD_INPUT = 2
#: Traces with at least this many rows get progress lines while they load.
_PROGRESS_ROWS = 1_000_000


class _Console(Console):
    """rich ends the process with exit 1 on a closed pipe; the commands decide their exit code."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _console(stderr: bool = False) -> Console:
    """A console that is wide enough for the tables when output is not a terminal.

    Markup, emoji codes and highlighting are off: the text printed comes from
    trace files (host, kind, command, comm), and ``[/x]`` in a host name must
    print as itself, never style or hide anything.
    """
    plain = {"markup": False, "emoji": False, "highlight": False}
    probe = _Console(stderr=stderr, **plain)
    return probe if probe.is_terminal else _Console(stderr=stderr, width=160, **plain)


def _one_line(message: str) -> str:
    """Exactly one line: control characters (newlines, terminal escapes) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message.strip())


def _fail(message: str) -> None:
    click.echo(f"chargetrace: error: {_one_line(message)}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _quiet_stdout() -> None:
    """The reader of our output went away (``| head``): drop what is left."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def user_errors(func):
    """Turn every failure into one line on stderr and exit 2 (traceback with --debug)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except ChargetraceError as exc:
            if debug:
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted")
        except BrokenPipeError:
            # Not an error of ours; commands with a verdict handle it themselves.
            _quiet_stdout()
            sys.exit(0)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
            if debug:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")

    return wrapper


class _OneLineGroup(click.Group):
    """click's usage errors as one line too (click prints usage, a hint and the error: four lines)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(f"{exc.format_message()}{where}")
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.exceptions.Abort:
            _fail("interrupted")
        sys.exit(code if isinstance(code, int) else 0)


def _load(trace: Path):
    """read_trace with progress lines on stderr for large traces."""
    last = [0]

    def progress(done: int, total: int) -> None:
        if total < _PROGRESS_ROWS:
            return
        step = done * 10 // total
        if step > last[0]:
            last[0] = step
            click.echo(f"chargetrace: reading {trace}: {done * 100 // total}% ({done} of {total} events)", err=True)

    return read_trace(trace, progress=progress)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="chargetrace")
def main(debug: bool) -> None:
    """Record, store and replay memory-cgroup charge events; report where charges do not balance."""


# ---------------------------------------------------------------------------- replay


@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--era", type=click.Choice(["4.14-5.17", "5.18-6.6", "6.7+"]), default=None,
              help="Accounting era profile (default: from the trace's metadata).")
@click.option("--engine", type=click.Choice(["auto", "compiled", "reference"]), default="auto", show_default=True,
              help="compiled: numba, streams the trace; reference: the readable model; auto: compiled from "
                   "200,000 events on. Per trace in a fleet too; with --buckets > 1 every bucket replays on the "
                   "reference model.")
@click.option("--context", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Events shown around each violation (0-1000).")
@click.option("--limit", type=click.IntRange(0, 100_000), default=20, show_default=True,
              help="Violations printed in full.")
@click.option("--jobs", type=click.IntRange(0, 1024), default=0,
              help="Local processes for many traces or buckets (0: one per core).")
@click.option("--buckets", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="Replay each trace in this many folio buckets on the reference model (exact; for traces "
                   "too large for one worker).")
@user_errors
def replay(trace: Path, as_json: bool, era: str | None, engine: str, context: int, limit: int, jobs: int,
           buckets: int) -> None:
    """Replay TRACE against the reference accounting model.

    TRACE may also be a directory tree or a glob of many traces (fleet replay:
    one line per trace, totals, the worst exit code: 1 > 2 > 3 > 4 > 0).

    Exit 0 balanced, 1 violations, 2 bad input, 3 inconclusive, 4 unchecked
    (no rule checked anything of substance: no charge/uncharge/transfer/device
    event and no non-zero counter check).
    """
    from chargetrace.replay import ReplayConfig
    from chargetrace.replay.fleet import is_fleet

    jobs = jobs or os.cpu_count() or 1
    if is_fleet(trace):
        # Each trace's worker builds its ReplayConfig from these options (replay/fleet.py).
        _replay_fleet(str(trace), {"era": era, "engine": engine}, as_json, jobs, buckets)
    config = ReplayConfig(era=era, engine=engine, notice=lambda line: click.echo(f"chargetrace: {line}", err=True))
    err = Console(stderr=True)
    if buckets > 1:
        from chargetrace.replay.fleet_partition import replay_partitioned

        if engine == "compiled":
            config.notice("--buckets replays each bucket with the reference engine (the compiled engine replays "
                          "whole traces)")
        loaded = _load(trace)
        report = replay_partitioned(loaded, buckets, config, jobs=jobs)
    else:
        report, loaded = _replay_one(trace, config, show_progress=not as_json and err.is_terminal)
    if loaded is None and not as_json and (report.violations or report.inconclusive) \
            and report.events < 5_000_000:
        loaded = read_trace(trace)  # the events around each finding (the compiled engine streamed)
    try:
        if as_json:
            click.echo(json.dumps(report.to_json(), indent=2))
        else:
            from chargetrace.replay.render import render_report

            render_report(_console(), report, loaded, context=context, limit=limit)
        sys.stdout.flush()
    except BrokenPipeError:
        # `replay t | head`: the verdict stands, whoever stopped reading.
        _quiet_stdout()
    sys.exit(report.exit_code)


def _replay_one(trace: Path, config, *, show_progress: bool):
    """One whole trace with the engine ``config`` asks for (replay.engine.replay_file):
    the report and the trace when the engine loaded it (None: it streamed)."""
    from chargetrace.replay.engine import replay_file
    from chargetrace.traces import stream_trace

    rows = stream_trace(trace).num_rows
    if not show_progress or rows < 200_000:
        return replay_file(trace, config, _load)
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("replaying", total=rows)
        config.progress = lambda n: progress.advance(task, n)
        return replay_file(trace, config, _load)


def _replay_fleet(spec: str, options: dict, as_json: bool, jobs: int, buckets: int) -> None:
    """Many traces: one line each, totals, the worst exit code (replay/fleet.py)."""
    from chargetrace.replay.fleet import replay_fleet

    fleet = replay_fleet(spec, options, jobs=jobs, buckets=buckets)
    for t in fleet.traces:
        if t.error:  # bad input: its one line on stderr too; the other traces stand
            click.echo(f"chargetrace: error: {_one_line(t.error)}", err=True)
    try:
        if as_json:
            click.echo(json.dumps(fleet.to_json(), indent=2))
        else:
            for line in fleet.lines():
                click.echo(_one_line(line))
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    sys.exit(fleet.exit_code)


@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@user_errors
def info(trace: Path, as_json: bool) -> None:
    """Print TRACE's metadata, event counts by kind and probe, and drops."""
    from chargetrace.replay.render import describe, render_info

    loaded = _load(trace)
    summary = describe(loaded)
    summary["integrity"] = list(loaded.integrity.problems)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        console = _console()
        render_info(console, summary)
        for problem in loaded.integrity.problems:
            console.print(f"integrity: {problem}")


def _fault_options(func):
    from chargetrace.replay.mutate import FAULTS

    for fault in reversed(FAULTS):
        func = click.option(f"--{fault}", f"fault_{fault.replace('-', '_')}", multiple=True, type=int,
                            callback=functools.partial(_collect_fault, fault), expose_value=False,
                            metavar="N", help=f"Inject '{fault}' at the N-th eligible event.")(func)
    return func


def _collect_fault(fault, ctx, param, values):
    ctx.ensure_object(list).extend((fault, n) for n in values)


_FORCE_OPT = click.option("--force", is_flag=True, help="Overwrite OUT if it exists (even when it is TRACE).")


def _check_output(trace: Path, out: Path, force: bool) -> None:
    """Refuse to overwrite the input, or any existing OUT, without --force."""
    with contextlib.suppress(OSError):
        if not force and out.exists() and trace.exists() and os.path.samefile(trace, out):
            raise ChargetraceError(f"{out}: is the input trace (use --force to replace it)")


@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_fault_options
@_FORCE_OPT
@user_errors
def mutate(trace: Path, out: Path, force: bool) -> None:
    """Write OUT: TRACE with accounting faults injected (to check the checker)."""
    from chargetrace.replay.mutate import Mutation
    from chargetrace.replay.mutate import mutate as run_mutate

    faults = click.get_current_context().obj or []
    _check_output(trace, out, force)
    loaded = _load(trace)
    if not loaded.integrity.clean:
        # mutate renumbers seq: it would hide the gaps that make this trace unfit.
        raise ChargetraceError(f"{trace}: not an intact trace ({loaded.integrity.problems[0]}); mutate needs one")
    table, meta = run_mutate(loaded, [Mutation(f, n) for f, n in faults])
    write_table(table, out, meta, overwrite=force)
    for m in meta.mutations[-len(faults):]:
        click.echo(f"injected {m['fault']} #{m['n']} at input seq {m['input_seq']} "
                   f"(folio {m['folio']:#x}, memcg {m['memcg']}): expect {m['expect']}")
    click.echo(f"wrote {out} ({table.num_rows} events)")

@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_FORCE_OPT
@user_errors
def anonymize(trace: Path, out: Path, force: bool) -> None:
    """Write OUT: TRACE with kernel pointers replaced by stable opaque ids (for traces recorded raw)."""
    from chargetrace.traces.anonymize import anonymize as run_anonymize

    _check_output(trace, out, force)
    table, meta = run_anonymize(_load(trace))
    write_table(table, out, meta, overwrite=force)
    click.echo(f"wrote {out} ({table.num_rows} events, folio ids anonymized)")


# ==== tracer commands (owner: tracer branch) ================================
# This block only parses arguments, calls chargetrace.tracer and prints.


@main.command(context_settings={"ignore_unknown_options": False})
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Trace to write (*.parquet = one file; otherwise a segment directory).")
@click.option("-p", "--pid", type=int, default=None, help="Record this process (and its children).")
@click.option("--cgroup", default=None, help="Record this memory cgroup (path).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--ringbuf-mb", type=float, default=32.0, show_default=True, help="BPF ring buffer size (MiB).")
@click.option("--transport", type=click.Choice(["auto", "ringbuf", "perf"]), default="auto", show_default=True)
@click.option("--events", default=None, help="Comma-separated logical events to record (default: all).")
@click.option("--quiet", is_flag=True, help="No status line.")
@click.option("--raw-pointers", is_flag=True,
              help="Keep raw kernel folio addresses in the trace. They expose the kernel's address layout "
                   "(KASLR); by default they are replaced by stable opaque ids.")
@click.option("--exit-wait", type=float, default=2.0, show_default=True,
              help="Seconds to wait, after CMD exits, for the rest of the scope's tasks.")
@click.option("--aggregate-counters", is_flag=True,
              help="Sum memcg counter events in BPF; write one row per memcg and counter every 0.25 s.")
@click.option("--skip-how", multiple=True, type=click.Choice(["tracepoint", "raw_tp", "fentry", "kprobe"]),
              hidden=True, help="Do not use this attach kind (tests the fallbacks).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@user_errors
def record(output: Path, pid: int | None, cgroup: str | None, duration: float | None, ringbuf_mb: float,
           transport: str, events: str | None, quiet: bool, raw_pointers: bool, exit_wait: float,
           aggregate_counters: bool, skip_how: tuple[str, ...], command: tuple[str, ...]) -> None:
    """Record charge events: `record -o T -- CMD ARGS`, `-p PID`, `--cgroup PATH`, or system-wide.

    With CMD, exits with CMD's status (128+N for signal N); a signal before
    CMD ran leaves no trace and exits 2."""
    from chargetrace.tracer.recorder import RecordConfig, Recording

    config = RecordConfig(
        output=output, command=list(command), pid=pid, cgroup=cgroup, duration=duration,
        ringbuf_mb=ringbuf_mb, transport=transport, status=not quiet,
        events=set(events.split(",")) if events else None, skip_how=frozenset(skip_how),
        raw_pointers=raw_pointers, exit_wait=exit_wait, aggregate_counters=aggregate_counters,
        argv=["chargetrace", *sys.argv[1:]],
    )
    config.validate()
    if config.scope_kind == "system" and duration is None:
        click.echo("chargetrace: recording system-wide until Ctrl-C", err=True)
    with Recording(config) as rec:
        missing = [p["event"] for p in rec.meta.probes if p["probe"] is None]
        if missing:
            click.echo(f"chargetrace: no probe on this kernel for {', '.join(missing)} "
                       f"(why: `chargetrace probes`; also in the trace's metadata)", err=True)
        result = rec.run()
    if not quiet and sys.stderr.isatty():
        click.echo("", err=True)
    scope = result.meta.scope
    status = "" if result.exit_status is None else f", command exit status {result.exit_status}"
    if scope.oom_kills:
        status += f", OOM killed {scope.oom_kills} task(s) in the scope"
    if scope.tasks_left:
        status += f", {len(scope.tasks_left)} task(s) outlived the command ({', '.join(t['comm'] for t in scope.tasks_left)})"
    click.echo(f"{result.path}: {result.events} events, {result.drops} dropped{status}", err=True)
    if result.exit_status:
        sys.exit(result.exit_status)


@main.command()
@user_errors
def probes() -> None:
    """Show, per logical event, the probe that attaches on this kernel or why none does."""
    from chargetrace.tracer.kernel import detect_era
    from chargetrace.tracer.recorder import probe_table

    kernel, choices = probe_table()
    era = detect_era(kernel)
    click.echo(f"kernel {kernel.release}  headers: {kernel.headers.kind}  BTF: {'yes' if kernel.btf else 'no'}")
    click.echo(f"era: migrate={era.migrate} device_free_refcount={era.device_free_refcount} ({era.detected_by})")
    click.echo(f"folio memcg: memcg_data -> {'obj_cgroup -> memcg (lru_reparent_memcg)' if kernel.memcg_data_objcg else 'memcg'}"
               f"; device-private THP: {'yes (do_huge_pmd_device_private)' if kernel.device_thp else 'no'}")
    width = max(len(c.event) for c in choices)
    for c in choices:
        if c.variant is not None:
            click.echo(f"{c.event:<{width}}  {c.variant.probe}  [{c.variant.how}]")
            if c.explanation():
                click.echo(f"{'':<{width}}    why: {c.explanation()}")
        else:
            click.echo(f"{c.event:<{width}}  none: {c.as_meta()['reason']}")


# ==== end of tracer commands ================================================


# ==== lab commands (owner: lab branch) ======================================
# Parses arguments, calls chargetrace.lab, prints. No logic here.

_KERNEL_OPT = click.option("--kernel", "kernel", default="6.1", show_default=True,
                           help="Kernel series: Debian linux-source-<series> (5.10, 6.1, 6.12, 7.2).")
_CACHE_OPT = click.option("--cache-dir", type=click.Path(), default=None,
                          help="Cache root (default /var/cache/chargetrace-lab or $CHARGETRACE_LAB_CACHE).")
_BUG_OPT = click.option("--bug", default=None, metavar="NAME",
                        help="A kernel bug variant (lab/bugs.py), built incrementally on the clean kernel.")
_DEBUG_VM_OPT = click.option("--debug-vm", is_flag=True, default=None,
                             help="A kernel with CONFIG_DEBUG_VM (lab/debug-vm.config; a full build, own cache key).")


def _lab_config(**kw):  # -> chargetrace.lab.LabConfig
    from chargetrace.lab import LabConfig

    return LabConfig(**{k: v for k, v in kw.items() if v is not None})


@main.group()
def lab() -> None:
    """Device-private memory lab: custom kernel + test_hmm under QEMU."""


@lab.command("run")
@_KERNEL_OPT
@_CACHE_OPT
@click.option("--out-dir", type=click.Path(), default=None, help="Share/results dir (default <cache>/runs/<kernel>).")
@click.option("--accel", type=click.Choice(["auto", "tcg", "kvm"]), default="auto", show_default=True)
@click.option("--record/--no-record", default=True, show_default=True,
              help="Run hmm-tests under 'chargetrace record' in the guest.")
@click.option("--ringbuf-mb", type=int, default=64, show_default=True)
@click.option("--timeout", "timeout_s", type=int, default=1200, show_default=True, help="QEMU hard limit, s.")
@click.option("--jobs", "-j", type=int, default=None, help="make -j for the kernel build.")
@_BUG_OPT
@_DEBUG_VM_OPT
@click.option("--workload", default=None, metavar="CMD",
              help="Run this shell command (recorded) in the guest instead of hmm-tests, in /lab/work.")
@click.option("--workload-file", "workload_files", multiple=True, type=click.Path(dir_okay=False),
              help="A file copied into the guest's /lab/work (repeatable).")
@click.option("--memory-max", type=int, default=None, metavar="BYTES",
              help="memory.max of the recorded memcg, set before the command starts.")
@user_errors
def lab_run(kernel, cache_dir, out_dir, accel, record, ringbuf_mb, timeout_s, jobs, bug, debug_vm, workload,
            workload_files, memory_max) -> None:
    """Build (or reuse) the lab, boot it and run hmm-tests; exit 1 if the run is not clean
    (with --bug: if the replay does not name the variant's expected rule)."""
    from chargetrace.lab import run_lab

    cfg = _lab_config(kernel=kernel, cache_dir=cache_dir, out_dir=out_dir, accel=accel, record=record,
                      ringbuf_mb=ringbuf_mb, timeout_s=timeout_s, jobs=jobs, bug=bug, debug_vm=debug_vm,
                      workload=workload, workload_files=tuple(workload_files) or None, memory_max=memory_max)
    res = run_lab(cfg)
    dp = res.hmm.device_private
    click.echo(f"kernel {res.release} (linux-source {res.source_version}, key {res.kernel_key}, "
               f"config {res.config_sha256}), accel {res.accel}")
    click.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
    if res.workload_rc is not None:
        click.echo(f"workload: rc {res.workload_rc}; OOM reports in dmesg: {res.oom_reports}")
        for line in res.workload_output:
            click.echo(f"  | {line}")
    else:
        click.echo(f"hmm-tests: rc {res.hmm_rc}, {res.hmm.summary}, totals {res.hmm.totals}, "
                   f"device_private pass {dp['pass']} fail {dp['fail']} skip {dp['skip']}")
    if res.summary is not None:
        click.echo(f"trace: {res.trace}: {res.summary.events} events, drops {res.summary.drops}, "
                   f"era {res.summary.era.get('migrate')}")
        click.echo("kinds: " + ", ".join(f"{k} {n}" for k, n in res.summary.kinds.items()))
    if res.replay is not None:
        click.echo(f"replay: {res.replay['verdict']} ({res.replay['seconds']}s; "
                   f"{len(res.replay['violations'])} violations, {len(res.replay['inconclusive'])} inconclusive)")
    if res.bug is not None:
        click.echo(f"bug {res.bug}: expected rule {'reported' if res.expected_rule_found else 'NOT reported'}")
        for said in res.kernel_noticed or ["the kernel said nothing (hmm-tests passed, no WARN/BUG)"]:
            click.echo(f"kernel: {said}")
    click.echo(f"results: {res.run_dir / 'result.json'}")
    for p in res.problems:
        click.echo(f"problem: {p}", err=True)
    sys.exit(0 if res.ok else 1)


@lab.command("build")
@_KERNEL_OPT
@_CACHE_OPT
@click.option("--jobs", "-j", type=int, default=None, help="make -j for the kernel build.")
@_BUG_OPT
@_DEBUG_VM_OPT
@user_errors
def lab_build(kernel, cache_dir, jobs, bug, debug_vm) -> None:
    """Build (or reuse) kernel, test_hmm.ko, hmm-tests and rootfs without booting."""
    from chargetrace.lab import build_all

    kb, rootfs, timings, cached = build_all(_lab_config(kernel=kernel, cache_dir=cache_dir, jobs=jobs, bug=bug,
                                                        debug_vm=debug_vm))
    click.echo(f"kernel {kb.release}: {kb.directory} ({'cached' if kb.cached else 'built'})")
    click.echo(f"rootfs: {rootfs} ({'cached' if cached['rootfs'] else 'built'})")
    click.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


@lab.command("clean")
@_KERNEL_OPT
@_CACHE_OPT
@click.option("--rootfs/--no-rootfs", default=False, show_default=True, help="Also delete the cached rootfs.")
@user_errors
def lab_clean(kernel, cache_dir, rootfs) -> None:
    """Delete the cached kernel builds of a series and its run dir (and the rootfs)."""
    from chargetrace.lab import clean_cache

    for path in clean_cache(_lab_config(kernel=kernel, cache_dir=cache_dir), rootfs=rootfs):
        click.echo(f"removed {path}")


# ==== end of lab commands ==================================================


# ==== look commands (owner: look branch) ====================================
# query / report / export / convert: parse, call chargetrace.look or
# chargetrace.convert, print. Long work reports progress on stderr (a terminal).


def _progress_bar():
    """A context manager yielding a progress(step, done, total) callback (None
    when stderr is not a terminal: scripts get no control characters)."""
    import contextlib

    err = Console(stderr=True)
    if not err.is_terminal:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import Progress

        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("working", total=None)

            def update(step: str, done: int, total: int) -> None:
                progress.update(task, description=step, completed=done, total=total or None)

            yield update

    return bar()


@main.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@user_errors
def query(args: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """SQL over traces: `query TRACE... "SQL"` (DuckDB; tables events, findings, ledger)."""
    from chargetrace.look.query import query as run_query

    if len(args) < 2:
        raise ChargetraceError('query needs at least one TRACE and the SQL: query TRACE... "SELECT ..."')
    with _progress_bar() as progress:
        result = run_query(list(args[:-1]), args[-1], progress=progress)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        click.echo(result.to_json())
    elif fmt == "csv":
        click.echo(result.to_csv(), nl=False)
    else:
        from rich.table import Table

        table = Table(*result.columns, show_lines=False)
        for row in result.rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        _console().print(table)
        click.echo(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})", err=True)


@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="HTML file to write.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of what was written.")
@_FORCE_OPT
@user_errors
def report(trace: Path, output: Path, as_json: bool, force: bool) -> None:
    """Write a self-contained HTML report (verdict, charts, violation timelines; works offline)."""
    from chargetrace.look.report import write_report

    _check_output(trace, output, force)
    _write_with_summary(write_report, trace, output, as_json, force,
                        "wrote {out} ({verdict}, {charts} charts, {timelines} violation timelines, {bytes} bytes)")


@main.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--perfetto", "out", required=True, type=click.Path(path_type=Path),
              help="Perfetto trace (protobuf) to write; open it in the Perfetto UI.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of what was written.")
@_FORCE_OPT
@user_errors
def export(trace: Path, out: Path, as_json: bool, force: bool) -> None:
    """Export TRACE for the Perfetto UI: memcg counters, slices per thread, violations."""
    from chargetrace.look.perfetto import export_perfetto

    _check_output(trace, out, force)
    _write_with_summary(export_perfetto, trace, out, as_json, force,
                        "wrote {out} ({packets} packets: {counter_tracks} counter tracks, {slices} slices, "
                        "{instants} instants)")


def _write_with_summary(write, trace: Path, out: Path, as_json: bool, force: bool, line: str) -> None:
    """Run a look writer with a progress bar (an existing OUT only with --force);
    print its summary as JSON or as ``line``."""
    with _progress_bar() as progress:
        summary = write(trace, out, progress=progress, overwrite=force)
    click.echo(json.dumps(summary, indent=2) if as_json else line.format(out=out, **summary))


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Trace to write.")
@click.option("--from", "fmt", type=click.Choice(["auto", "perf", "trace-cmd", "ftrace"]), default="auto",
              show_default=True, help="Input: perf script / trace-cmd report / tracefs text, or perf.data / trace.dat.")
@click.option("--btf", type=click.Path(path_type=Path), default=None,
              help="BTF of the recorded kernel, to name memcg counter items (default: this kernel's).")
@click.option("--memcg", "memcg", type=int, default=None, help="Scope: the recorded workload's memcg id.")
@click.option("--cgroup", "cgroup", type=click.Path(path_type=Path), default=None,
              help="Scope: the workload's cgroup directory (its inode is the memcg id).")
@click.option("--fresh", is_flag=True, help="Scope memcg was created after recording started.")
@click.option("--exited", is_flag=True, help="Scope's tasks had exited before recording stopped.")
@click.option("--settled", default="", help="How the scope memcg was drained after exit (e.g. force_empty).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@user_errors
def convert(source: Path, output: Path, fmt: str, btf: Path | None, memcg: int | None, cgroup: Path | None,
            fresh: bool, exited: bool, settled: str, as_json: bool) -> None:
    """Convert a perf / trace-cmd / tracefs recording of tracepoints into a chargetrace trace."""
    from chargetrace.convert import ConvertConfig, convert_file

    config = ConvertConfig(source=source, output=output, fmt=fmt, btf=btf, memcg=memcg, cgroup=cgroup,
                           fresh=fresh, exited=exited, settled=settled, argv=["chargetrace", *sys.argv[1:]])
    with _progress_bar() as progress:
        result = convert_file(config, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(f"wrote {result.path}: {result.events} events from {result.lines} lines ({result.fmt})")
        if result.unmapped:
            click.echo("not mapped (no chargetrace kind): "
                       + ", ".join(f"{k} {n}" for k, n in sorted(result.unmapped.items())), err=True)


# ==== end of look commands =================================================


if __name__ == "__main__":
    main()
