"""Text rendering of reports and trace summaries (rich), for the CLI to print."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from chargetrace.traces import Trace

from .findings import Finding
from .report import BALANCED, UNCHECKED, VIOLATIONS, Report, kind_counts

__all__ = ["render_report", "render_info", "describe"]

_VERDICT_STYLE = {BALANCED: "bold green", VIOLATIONS: "bold red", UNCHECKED: "bold magenta"}
_EVENT_COLUMNS = ["seq", "ts_ns", "tid", "comm", "kind", "probe", "folio", "folio_new", "nr_pages",
                  "memcg", "memcg_new", "ret", "item", "value"]


def _hex(v: int) -> str:
    return f"{v:#x}" if v else "-"


def _events_table(trace: Trace, seqs: Iterable[int], mark: int, t0: int) -> Table:
    wanted = sorted(s for s in set(seqs) if s < 1 << 64)  # context past the last uint64 seq
    import pyarrow.compute as pc  # only where events are shown: slow to import

    rows = trace.table.filter(pc.is_in(trace.table.column("seq"), pa.array(wanted, pa.uint64())))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="dim")
    for name in ("", "seq", "t (ms)", "tid", "kind", "folio", "-> folio", "nr", "memcg", "-> memcg", "ret", "item/value"):
        table.add_column(name, no_wrap=True)
    for r in rows.select(_EVENT_COLUMNS).to_pylist():
        item = f"{r['item']}={r['value']}" if r["item"] else (str(r["value"]) if r["value"] else "")
        table.add_row(
            ">" if r["seq"] == mark else "",
            str(r["seq"]),
            f"{(r['ts_ns'] - t0) / 1e6:.3f}",
            f"{r['tid']} {r['comm']}".strip(),
            r["kind"],
            _hex(r["folio"]),
            _hex(r["folio_new"]),
            str(r["nr_pages"] or ""),
            str(r["memcg"] or "-"),
            str(r["memcg_new"] or ""),
            str(r["ret"] or ""),
            item,
        )
    return table


def _finding_block(trace: Trace | None, f: Finding, context: int, t0: int) -> Group:
    head = Text.assemble(
        (f"[{f.rule}] ", "bold red" if not f.inconclusive else "bold yellow"),
        (f"seq {f.seq}", "bold"),
        f"  t={(f.ts_ns - t0) / 1e6:.3f} ms  folio {_hex(f.folio)}  memcg {f.memcg or '-'}\n",
        ("    " + f.message, ""),
    )
    if trace is None:
        return Group(head, Text(""))
    seqs = list(range(max(0, f.seq - context), f.seq + context + 1)) + list(f.related_seqs)
    return Group(head, _events_table(trace, seqs, f.seq, t0), Text(""))


def _memcg_table(report: Report) -> Table:
    table = Table(title="per-memcg charges (pages)", title_justify="left")
    for name in ("memcg", "charged", "forced", "uncharged", "pre-trace unch.", "xfer in/out", "live (model)",
                 "PGPGIN (folios)", "PGPGOUT (folios)", "ANON_MAPPED", "kernel", "diff (tol)", "reconcile"):
        table.add_column(name, justify="right")
    for m in report.memcgs:
        table.add_row(
            str(m.memcg), str(m.charged), str(m.force_charged), str(m.uncharged), str(m.pre_trace_uncharged),
            f"{m.transferred_in}/{m.transferred_out}",
            Text(str(m.live), style="red" if m.live < 0 else ""),
            str(m.pgpgin), f"{m.pgpgout}" + (f" ({m.split_extra} split)" if m.split_extra else ""),
            str(m.anon_mapped),
            "-" if m.kernel_pages is None else str(m.kernel_pages),
            "-" if m.difference is None else f"{m.difference:+d} ({m.tolerance})",
            Text(m.reconcile or "-", style="red" if m.reconcile == "mismatch" else ""),
        )
    return table


def _rules_table(report: Report) -> Table:
    table = Table(title="rules: what each checked (coverage)", title_justify="left")
    for name, justify in (("rule", "left"), ("checked", "right"), ("of substance", "right"), ("pages", "right"),
                          ("violations", "right"), ("what", "left")):
        table.add_column(name, justify=justify)
    for r in report.rules:
        checked = f"{r.checked} {r.unit}" if r.applies else "n/a (kind not recorded)"
        table.add_row(r.rule, checked, str(r.substance) if r.applies else "", str(r.pages or "") if r.applies else "",
                      Text(str(r.violations), style="red" if r.violations else ""), r.title)
    return table


def _drivers_table(report: Report) -> Table:
    table = Table(title="device memory by driver (pages; replay/drivers.py)", title_justify="left")
    for name, justify in (("driver", "left"), ("symbol [module]", "left"), ("device faults", "right"),
                          ("to device", "right"), ("from device", "right"), ("freed", "right"),
                          ("charged at end", "right")):
        table.add_column(name, justify=justify)
    for d in report.drivers:
        table.add_row(d.driver, f"{d.symbol} [{d.module}]" if d.module else (d.symbol or "-"), str(d.device_faults),
                      str(d.migrated_to_device), str(d.migrated_from_device), str(d.freed), str(d.charged_at_end))
    return table


def render_report(console: Console, report: Report, trace: Trace | None, *, context: int = 2,
                  limit: int = 20) -> None:
    """``trace``: where the events around each finding come from (None: not shown)."""
    from chargetrace.traces.arrays import numpy_of

    t0 = int(numpy_of(trace.table.column("ts_ns")).min()) if trace is not None and trace.num_events else 0
    style = _VERDICT_STYLE.get(report.verdict, "bold yellow")
    console.print(Text.assemble(("verdict: ", "bold"), (report.verdict, style),
                                f"   {report.path}: {report.events} events, era {report.era} ({report.era_source})"))
    if report.lost_events:
        console.print(f"lost events: {report.lost_events} in {report.lost_windows} window(s)")
    for note in report.notes:
        console.print(f"note: {note}")
    if report.memcgs:
        console.print(_memcg_table(report))
    else:
        console.print("no memcg activity in this trace")
    console.print(_rules_table(report))
    if report.drivers:
        console.print(_drivers_table(report))
    for row in report.held:
        console.print(f"memcg {row.memcg}: {row.text}")
    for title, findings in (("violations", report.violations), ("inconclusive (events were lost around them)",
                                                                 report.inconclusive)):
        if not findings:
            continue
        console.print(Text(f"{title}: {len(findings)}", style="bold"))
        for f in findings[:limit]:
            console.print(_finding_block(trace, f, context, t0))
        if len(findings) > limit:
            console.print(f"... and {len(findings) - limit} more (--limit, or --json for all)")
    if report.candidates:
        console.print(Text(f"leak candidates (not violations): {len(report.candidates)}", style="bold"))
        for f in report.candidates[:limit]:
            console.print(f"  [{f.rule}] seq {f.seq} folio {_hex(f.folio)} memcg {f.memcg}: {f.message}")


def describe(trace: Trace) -> dict:
    import pyarrow.compute as pc

    meta = trace.meta
    table = trace.table
    span = 0
    if trace.num_events:
        span = int(pc.max(table.column("ts_ns")).as_py()) - int(pc.min(table.column("ts_ns")).as_py())
    probes = pc.value_counts(table.column("probe").cast(pa.string())).to_pylist()
    return {
        "path": str(trace.path),
        "events": trace.num_events,
        "duration_s": span / 1e9,
        "kinds": kind_counts(table),
        "probes": {p["values"]: p["counts"] for p in sorted(probes, key=lambda p: -p["counts"])},
        "metadata": _plain(meta),
    }


def _plain(meta) -> dict:
    import dataclasses

    data = dataclasses.asdict(meta)
    data.update(data.pop("extra"))
    return data


def render_info(console: Console, info: dict) -> None:
    meta = info["metadata"]
    console.print(Text(info["path"], style="bold"))
    lines = [
        ("schema version", meta["schema_version"]),
        ("recorder", meta["recorder"]),
        ("synthetic", "yes" if meta["synthetic"] else "no"),
        ("kernel", meta["kernel_release"]),
        ("host", meta["host"]),
        ("era", f"migrate={meta['era']['migrate']} device-free refcount={meta['era']['device_free_refcount']}"
                f" ({meta['era']['detected_by'] or 'not detected'})"),
        ("time", f"{meta['started_at']} .. {meta['ended_at']} ({info['duration_s']:.3f} s of events)"),
        ("scope", ", ".join(f"{k}={v}" for k, v in meta["scope"].items() if v not in ("", 0, [], False, None))),
        ("cpus / page", f"{meta['ncpus']} / {meta['page_size']}"),
        ("drops", f"{meta['drops'].get('total', 0)} {meta['drops'].get('per_cpu') or ''}".strip()),
        ("anonymized", "yes" if meta["anonymized"] else "no"),
        ("armed at", "-" if meta.get("armed_ns") is None else f"{meta['armed_ns']} ns (CLOCK_MONOTONIC)"),
    ]
    for key, value in lines:
        console.print(f"  {key:<15} {value}")
    for key in ("provenance", "mutations"):
        if meta[key]:
            console.print(f"  {key:<15} {meta[key]}")
    for entry in meta.get("pgmaps") or ():  # schema 3: the drivers of the device pages
        where = f"{entry.get('symbol') or '?'} [{entry.get('module')}]" if entry.get("module") else entry.get("symbol")
        console.print(f"  {'pgmap_ops ' + str(entry['id']):<15} {entry['driver']} ({where or 'no symbol'})")
    if meta["probes"]:
        table = Table(title="probes", title_justify="left")
        for name in ("event", "probe", "how", "note"):
            table.add_column(name)
        for p in meta["probes"]:
            table.add_row(str(p.get("event", "")), str(p.get("probe") or "-"), str(p.get("how") or ""),
                          str(p.get("reason") or ""))
        console.print(table)
    counts = Table(title=f"{info['events']} events", title_justify="left")
    counts.add_column("kind")
    counts.add_column("events", justify="right")
    for kind, n in info["kinds"].items():
        counts.add_row(kind, str(n))
    console.print(counts)
    if info["probes"]:
        by_probe = Table(title="by probe", title_justify="left")
        by_probe.add_column("probe")
        by_probe.add_column("events", justify="right")
        for probe, n in info["probes"].items():
            by_probe.add_row(probe or "-", str(n))
        console.print(by_probe)
