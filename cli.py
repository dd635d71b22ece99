"""chargetrace command line: ``record``, ``probes`` (tracer) and the lead's
``replay``, ``info``, ``mutate``. Every :class:`ChargetraceError` is printed
as one line and exits 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chargetrace.traces import ChargetraceError


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChargetraceError as exc:
            click.echo(f"chargetrace: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
def main() -> None:
    """Record, store and replay memory-cgroup charge events."""


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
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_one_line_errors
def record(output: Path, pid: int | None, cgroup: str | None, duration: float | None, ringbuf_mb: float,
           transport: str, events: str | None, quiet: bool, command: tuple[str, ...]) -> None:
    """Record charge events: `record -o T -- CMD ARGS`, `-p PID`, `--cgroup PATH`, or system-wide."""
    from chargetrace.tracer.recorder import RecordConfig, Recording

    config = RecordConfig(
        output=output, command=list(command), pid=pid, cgroup=cgroup, duration=duration,
        ringbuf_mb=ringbuf_mb, transport=transport, status=not quiet,
        events=set(events.split(",")) if events else None, argv=["chargetrace", *sys.argv[1:]],
    )
    if config.scope_kind == "system" and duration is None:
        click.echo("chargetrace: recording system-wide until Ctrl-C", err=True)
    with Recording(config) as rec:
        for p in rec.meta.probes:
            if p["probe"] is None:
                click.echo(f"chargetrace: no probe for {p['event']}: {p['reason']}", err=True)
        result = rec.run()
    if not quiet and sys.stderr.isatty():
        click.echo("", err=True)
    status = "" if result.exit_status is None else f", command exit status {result.exit_status}"
    click.echo(f"{result.path}: {result.events} events, {result.drops} dropped{status}", err=True)


@main.command()
@_one_line_errors
def probes() -> None:
    """Show, per logical event, the probe that attaches on this kernel or why none does."""
    from chargetrace.tracer.kernel import detect_era
    from chargetrace.tracer.recorder import probe_table

    kernel, choices = probe_table()
    era = detect_era(kernel)
    click.echo(f"kernel {kernel.release}  headers: {kernel.headers.kind}  BTF: {'yes' if kernel.btf else 'no'}")
    click.echo(f"era: migrate={era.migrate} device_free_refcount={era.device_free_refcount} ({era.detected_by})")
    width = max(len(c.event) for c in choices)
    for c in choices:
        if c.variant is not None:
            click.echo(f"{c.event:<{width}}  {c.variant.probe}  [{c.variant.how}]")
        else:
            click.echo(f"{c.event:<{width}}  none: {'; '.join(c.reasons)}")


# ==== end of tracer commands ================================================


if __name__ == "__main__":
    main()
