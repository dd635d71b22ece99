"""The self-contained HTML report of one trace (works offline: no CDN, no fetch).

Sections: the verdict, era, lost events and notes; coverage (each rule, the
events it checked and its violations; the report's ``coverage`` field too when
the replay provides one); each memcg's charged pages over time (the replay
model's figures, ``series.py``, beside the kernel's usage samples); event
rates per kind; and, for each violation, the folio's life as a timeline with
the rule's title, the kernel source it encodes and the finding's message.

Charts are plotly figures; plotly.js is embedded once, inline, so the file
opens without a network. Element ids/classes used by tests and scripts:
``#verdict``, ``#coverage``, ``.chart``, ``#violations``, ``.violation-timeline``.
Limits: at most ``max_timelines`` violations get a timeline (the rest are
listed); a timeline shows at most ``_TIMELINE_ROWS`` events.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from chargetrace.replay import Report, replay
from chargetrace.replay.report import SUBSTANCE
from chargetrace.traces import Trace, read_trace
from chargetrace.traces.writer import atomic_output

from ._deps import need
from .frames import Progress
from .series import MemcgSeries, model_series

__all__ = ["write_report", "render_report"]

_TIMELINE_ROWS = 400
_RATE_BINS = 200
_MAX_MEMCG_CHARTS = 12
_VERDICT_COLOURS = {"balanced": "#1a7f37", "violations": "#cf222e", "inconclusive": "#9a6700"}
_CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:2em;color:#1f2328;max-width:1200px}
h1{font-size:1.5em} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left}
th{background:#f6f8fa} .verdict{color:#fff;padding:.2em .6em;border-radius:4px;font-weight:600}
.muted{color:#57606a} .finding{border-left:4px solid #cf222e;padding-left:1em;margin:1.2em 0}
code{background:#f6f8fa;padding:0 .3em} .wide{overflow-x:auto;max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(columns: list[str], rows: Iterable[Iterable[Any]], id_: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e('' if v is None else v)}</td>" for v in row) + "</tr>" for row in rows)
    ident = f' id="{id_}"' if id_ else ""
    # Wide tables (the per-memcg ledger has many columns) scroll inside the page, not widen it.
    return f'<div class="wide"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


class _Figures:
    """Renders plotly figures to <div>s that share the one inline plotly.js."""

    def __init__(self) -> None:
        self.go = need("plotly.graph_objects", "chargetrace report")
        self.pio = need("plotly.io", "chargetrace report")
        self.count = 0

    def div(self, fig: Any, css_class: str = "chart", attrs: str = "") -> str:
        self.count += 1
        fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=360)
        inner = self.pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                 config={"displaylogo": False, "responsive": True})
        return f'<div class="{css_class}" {attrs}>{inner}</div>'


def _seconds(ts: Iterable[int], t0: int) -> list[float]:
    return [(t - t0) / 1e9 for t in ts]


def _memcg_charts(figs: _Figures, series: dict[int, MemcgSeries], t0: int) -> list[str]:
    go = figs.go
    ranked = sorted(series.values(), key=lambda s: -len(s.ts_ns))[:_MAX_MEMCG_CHARTS]
    out = []
    for s in sorted(ranked, key=lambda s: s.memcg):
        fig = go.Figure()
        x = _seconds(s.ts_ns, t0)
        if s.has_live:
            fig.add_trace(go.Scatter(x=x, y=s.live, mode="lines", line_shape="hv",
                                     name="model: pages charged in the trace (live)"))
        if s.has_pgpg:
            fig.add_trace(go.Scatter(x=x, y=s.pgpg_net, mode="lines", line_shape="hv",
                                     name="model: PGPGIN − PGPGOUT"))
        if s.usage:
            fig.add_trace(go.Scatter(x=_seconds((u[0] for u in s.usage), t0), y=[u[1] for u in s.usage],
                                     mode="markers", marker=dict(size=10, symbol="diamond"),
                                     name="kernel: " + ", ".join(sorted({u[2] for u in s.usage}))))
        if not fig.data:
            continue
        fig.update_layout(title=f"memcg {s.memcg}: charged pages over time", xaxis_title="seconds from trace start",
                          yaxis_title="pages", legend=dict(orientation="h", y=-0.25))
        out.append(figs.div(fig, attrs=f'data-memcg="{s.memcg}"'))
    return out


def _rates_chart(figs: _Figures, table: pa.Table, t0: int, t1: int) -> str:
    go = figs.go
    np = need("numpy", "chargetrace report")
    span = max(t1 - t0, 1)
    width = span / _RATE_BINS
    ts = table.column("ts_ns").to_numpy()
    kinds = table.column("kind").cast(pa.string())
    fig = go.Figure()
    edges = np.linspace(t0, t0 + span, _RATE_BINS + 1)
    for kind in sorted(set(kinds.unique().to_pylist())):
        mask = pc.equal(kinds, kind).to_numpy(zero_copy_only=False)
        hist, _ = np.histogram(ts[mask], bins=edges)
        fig.add_trace(go.Scatter(x=((edges[:-1] - t0) / 1e9).tolist(), y=(hist / (width / 1e9)).tolist(),
                                 mode="lines", name=kind))
    fig.update_layout(title="event rate per kind", xaxis_title="seconds from trace start",
                      yaxis_title="events per second", yaxis_type="log")
    return figs.div(fig)


def _life_rows(table: pa.Table, finding: Any) -> pa.Table:
    """The events a finding is about: its folio's life (as old or new folio of a
    transfer), its related events and its own; for a folio-less (counter)
    finding, the memcg's events up to it."""
    seq = table.column("seq")
    keep = pc.is_in(seq, pa.array([finding.seq, *finding.related_seqs], pa.uint64()))
    if finding.folio:
        f = pa.scalar(finding.folio, pa.uint64())
        keep = pc.or_(keep, pc.or_(pc.equal(table.column("folio"), f), pc.equal(table.column("folio_new"), f)))
    elif finding.memcg:
        m = pa.scalar(finding.memcg, pa.uint64())
        mine = pc.and_(pc.or_(pc.equal(table.column("memcg"), m), pc.equal(table.column("memcg_new"), m)),
                       pc.less_equal(seq, pa.scalar(finding.seq, pa.uint64())))
        keep = pc.or_(keep, mine)
    rows = table.filter(keep)
    if rows.num_rows > _TIMELINE_ROWS:
        # Keep the end of the life: the finding is at (or near) its last event.
        rows = rows.slice(rows.num_rows - _TIMELINE_ROWS)
    return rows


def _timeline(figs: _Figures, table: pa.Table, finding: Any, t0: int, index: int) -> str:
    go = figs.go
    rows = _life_rows(table, finding).to_pylist()
    fig = go.Figure()
    hover = [
        f"seq {r['seq']}<br>{r['kind']} ({r['probe']})<br>folio {r['folio']:#x} → {r['folio_new']:#x}<br>"
        f"memcg {r['memcg']} → {r['memcg_new']}<br>nr_pages {r['nr_pages']} ret {r['ret']} value {r['value']}"
        f"<br>{r['item']}<br>pid {r['pid']} tid {r['tid']} {r['comm']}" for r in rows
    ]
    fig.add_trace(go.Scatter(x=_seconds((r["ts_ns"] for r in rows), t0), y=[r["kind"] for r in rows],
                             mode="lines+markers", marker=dict(size=9), line=dict(color="#8c959f", width=1),
                             text=hover, hoverinfo="text", name="events"))
    fig.add_trace(go.Scatter(x=[(finding.ts_ns - t0) / 1e9],
                             y=[next((r["kind"] for r in rows if r["seq"] == finding.seq), rows[-1]["kind"])
                                if rows else "finding"],
                             mode="markers", marker=dict(size=18, symbol="x", color="#cf222e"),
                             name=f"{finding.rule} fires (seq {finding.seq})"))
    what = f"folio {finding.folio:#x}" if finding.folio else f"memcg {finding.memcg}"
    fig.update_layout(title=f"{finding.rule}: life of {what}", xaxis_title="seconds from trace start",
                      yaxis_type="category", showlegend=True, legend=dict(orientation="h", y=-0.25))
    return figs.div(fig, "violation-timeline chart", f'data-rule="{_e(finding.rule)}" data-index="{index}"')


def render_report(trace: Trace, report: Report, *, max_timelines: int = 30,
                  progress: Progress | None = None) -> tuple[str, dict[str, Any]]:
    """The report's HTML text and a summary (charts, timelines)."""
    figs = _Figures()
    plotly_offline = need("plotly.offline", "chargetrace report")
    table = trace.table
    ts = table.column("ts_ns")
    t0 = int(pc.min(ts).as_py() or 0) if table.num_rows else 0
    t1 = int(pc.max(ts).as_py() or 0) if table.num_rows else 0
    meta = trace.meta
    colour = _VERDICT_COLOURS.get(report.verdict, "#57606a")
    parts = [
        f"<h1>chargetrace report: {_e(Path(report.path).name)}</h1>",
        f'<p id="verdict">verdict <span class="verdict" style="background:{colour}">{_e(report.verdict)}</span> '
        f"— {report.events} events, {len(report.violations)} violations, {len(report.inconclusive)} inconclusive, "
        f"{len(report.candidates)} candidates; era {_e(report.era)} ({_e(report.era_source)}); "
        f"{report.lost_events} events lost in {report.lost_windows} windows</p>",
        f'<p class="muted">recorder {_e(meta.recorder)}; kernel {_e(meta.kernel_release or "?")}; '
        f"scope {_e(meta.scope.kind)} memcg {meta.scope.memcg}; {'synthetic' if meta.synthetic else 'recorded'}"
        f"{'; mutated: ' + _e(', '.join(m.get('fault', '?') for m in meta.mutations)) if meta.mutations else ''}</p>",
    ]
    parts += [f'<p class="muted">note: {_e(n)}</p>' for n in report.notes]
    parts.append("<h2>Coverage</h2>")
    parts.append(f'<p class="muted">of substance: {"yes" if report.of_substance else "no"} — {_e(SUBSTANCE)}</p>')
    parts.append(_table(["rule", "title", "kernel source", "events checked", "of substance", "pages", "unit",
                         "violations", "applies"],
                        ([r.rule, r.title, r.source, r.checked, "yes" if r.substance else "no", r.pages, r.unit,
                          r.violations, "yes" if r.applies else "no"] for r in report.rules), "coverage"))
    if report.memcgs:
        fields = list(vars(report.memcgs[0]).keys())
        parts.append("<h2>Per-memcg ledger</h2>")
        parts.append(_table(fields, ([vars(r)[k] for k in fields] for r in report.memcgs), "ledger"))
    if progress:
        progress("charts", 2, 4)
    parts.append("<h2>Charged pages over time</h2>")
    memcg_charts = _memcg_charts(figs, model_series(trace), t0)
    parts += memcg_charts or ['<p class="muted">no memcg figures in this trace</p>']
    parts.append("<h2>Event rates</h2>")
    parts.append(_rates_chart(figs, table, t0, t1) if table.num_rows else '<p class="muted">no events</p>')
    if progress:
        progress("violation timelines", 3, 4)
    timelines = 0
    findings = [("violation", f) for f in report.violations] + [("inconclusive", f) for f in report.inconclusive]
    if findings:
        titles = {r.rule: r for r in report.rules}
        parts.append('<h2>Violations</h2><div id="violations">')
        for i, (status, f) in enumerate(findings):
            rule = titles.get(f.rule)
            parts.append(
                f'<div class="finding"><h3>{_e(f.rule)} ({status}) at seq {f.seq}</h3>'
                f"<p><b>{_e(rule.title if rule else f.rule)}</b>"
                f"{' — <code>' + _e(rule.source) + '</code>' if rule else ''}</p><p>{_e(f.message)}</p>"
            )
            if i < max_timelines:
                parts.append(_timeline(figs, table, f, t0, i))
                timelines += 1
            parts.append("</div>")
        parts.append("</div>")
    body = "\n".join(parts)
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>chargetrace report: {_e(Path(report.path).name)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly_offline.get_plotlyjs()}</script></head>'
        f"<body>\n{body}\n</body></html>\n"
    )
    return doc, {"verdict": report.verdict, "charts": figs.count, "timelines": timelines,
                 "violations": len(report.violations), "inconclusive": len(report.inconclusive)}


def write_report(path: str | os.PathLike[str], out: str | os.PathLike[str], *, max_timelines: int = 30,
                 progress: Progress | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Replay the trace at ``path`` and write the HTML report to ``out`` (atomically;
    an existing ``out`` only with ``overwrite``); returns a summary (verdict,
    charts, timelines, bytes)."""
    if progress:
        progress("read", 0, 4)
    trace = read_trace(path)
    if progress:
        progress("replay", 1, 4)
    report = replay(trace)
    doc, summary = render_report(trace, report, max_timelines=max_timelines, progress=progress)
    out = Path(out)
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    if progress:
        progress("done", 4, 4)
    return {"trace": str(path), "output": str(out), **summary, "bytes": out.stat().st_size}
