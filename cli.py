"""chargetrace command line."""

from __future__ import annotations

import sys

import click

from chargetrace.traces.errors import ChargetraceError


class _Group(click.Group):
    # ChargetraceError -> one line on stderr, exit 2 (traces/errors.py).
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ChargetraceError as exc:
            click.echo(f"chargetrace: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """Record, store and replay memory-cgroup charge events."""


# ---- lab (owner: lab branch) ------------------------------------------------
# Parses arguments, calls chargetrace.lab, prints. No logic here.

_KERNEL_OPT = click.option("--kernel", "kernel", default="6.1", show_default=True,
                           help="Kernel series: Debian linux-source-<series> (6.1, 6.12).")
_CACHE_OPT = click.option("--cache-dir", type=click.Path(), default=None,
                          help="Cache root (default /var/cache/chargetrace-lab or $CHARGETRACE_LAB_CACHE).")


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
def lab_run(kernel, cache_dir, out_dir, accel, record, ringbuf_mb, timeout_s, jobs) -> None:
    """Build (or reuse) the lab, boot it and run hmm-tests; exit 1 if the run is not clean."""
    from chargetrace.lab import run_lab

    cfg = _lab_config(kernel=kernel, cache_dir=cache_dir, out_dir=out_dir, accel=accel, record=record,
                      ringbuf_mb=ringbuf_mb, timeout_s=timeout_s, jobs=jobs)
    res = run_lab(cfg)
    dp = res.hmm.device_private
    click.echo(f"kernel {res.release} (linux-source {res.source_version}, key {res.kernel_key}, "
               f"config {res.config_sha256}), accel {res.accel}")
    click.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
    click.echo(f"hmm-tests: rc {res.hmm_rc}, {res.hmm.summary}, totals {res.hmm.totals}, "
               f"device_private pass {dp['pass']} fail {dp['fail']} skip {dp['skip']}")
    if res.trace is not None:
        click.echo(f"trace: {res.trace}")
    click.echo(f"results: {res.run_dir / 'result.json'}")
    for p in res.problems:
        click.echo(f"problem: {p}", err=True)
    sys.exit(0 if res.ok else 1)


@lab.command("build")
@_KERNEL_OPT
@_CACHE_OPT
@click.option("--jobs", "-j", type=int, default=None, help="make -j for the kernel build.")
def lab_build(kernel, cache_dir, jobs) -> None:
    """Build (or reuse) kernel, test_hmm.ko, hmm-tests and rootfs without booting."""
    from chargetrace.lab import build_all

    kb, rootfs, timings, cached = build_all(_lab_config(kernel=kernel, cache_dir=cache_dir, jobs=jobs))
    click.echo(f"kernel {kb.release}: {kb.directory} ({'cached' if kb.cached else 'built'})")
    click.echo(f"rootfs: {rootfs} ({'cached' if cached['rootfs'] else 'built'})")
    click.echo("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


@lab.command("clean")
@_KERNEL_OPT
@_CACHE_OPT
@click.option("--rootfs/--no-rootfs", default=False, show_default=True, help="Also delete the cached rootfs.")
def lab_clean(kernel, cache_dir, rootfs) -> None:
    """Delete the cached kernel builds of a series and its run dir (and the rootfs)."""
    from chargetrace.lab import clean_cache

    for path in clean_cache(_lab_config(kernel=kernel, cache_dir=cache_dir), rootfs=rootfs):
        click.echo(f"removed {path}")


# ---- end lab ------------------------------------------------------------------
