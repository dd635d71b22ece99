"""Convert a perf / trace-cmd / tracefs recording into a chargetrace trace.

Reads the text (``textparse``), maps each record (``mapping``) and writes
through ``chargetrace.traces.TraceWriter``, in the input's order (``seq``).
Provenance: ``meta.recorder`` names the source tool, ``meta.provenance``
holds the source file, its layout, the tool version, line counts, timestamp
resolution and the tracepoints that were not mapped; ``meta.probes`` lists a
probe for every kind the recording had a tracepoint for and, for the others,
why there is none — so the replay judges only what was recorded.

Limits: the scope (the workload's memcg, whether it was created after the
recording began, exited and drained) is not in a perf or trace-cmd recording;
the caller says it (``ConvertConfig``). Without the recorded kernel's BTF,
memcg counter items stay numbers (``item55``) and counter rules cannot use them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chargetrace.traces import KINDS, ChargetraceError, Era, Scope, TraceMeta, TraceWriter

from .mapping import Mapper
from .textparse import Header, parse_lines, text_lines

__all__ = ["ConvertConfig", "ConvertResult", "convert_file"]

_BATCH = 50_000
#: Kinds only the chargetrace recorder itself produces (no tracepoint has them).
_RECORDER_KINDS = ("usage",)


@dataclass
class ConvertConfig:
    source: Path
    output: Path
    fmt: str = "auto"  # auto | perf | trace-cmd | ftrace
    btf: Path | None = None  # the recorded kernel's BTF (default: this kernel's)
    memcg: int | None = None
    cgroup: Path | None = None
    fresh: bool = False
    exited: bool = False
    settled: str = ""
    argv: list[str] = field(default_factory=list)


@dataclass
class ConvertResult:
    path: Path
    fmt: str
    lines: int
    events: int
    skipped_lines: int
    unmapped: dict[str, int]
    probes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.fmt, "lines": self.lines, "events": self.events,
                "skipped_lines": self.skipped_lines, "unmapped": dict(self.unmapped), "probes": list(self.probes)}


class _RecordedKernel:
    """The recorded kernel's BTF, loaded once when first needed: from ``--btf``,
    or this kernel's when the recording says it was made on this kernel (or
    does not say). Item numbering and the era depend on the kernel's config,
    so another kernel's recording without ``--btf`` gets neither."""

    def __init__(self, btf_path: Path | None, header: Header) -> None:
        self.btf_path, self.header = btf_path, header
        self.source = ""
        self.why_not = ""
        self._kernel: Any = None
        self._loaded = False

    def kernel(self) -> Any:
        if self._loaded:
            return self._kernel
        self._loaded = True
        from chargetrace.tracer.btf import VMLINUX_BTF, load_vmlinux_btf
        from chargetrace.tracer.headers import HeaderSource
        from chargetrace.tracer.kernel import KernelInfo

        release = self.header.kernel_release
        if self.btf_path is None and release and release != os.uname().release:
            self.why_not = f"recorded on {release}, not on this kernel ({os.uname().release}), and no --btf given"
            return None
        path = self.btf_path or Path(VMLINUX_BTF)
        btf = load_vmlinux_btf(path)
        if btf is None:
            self.why_not = f"no BTF at {path}"
            return None
        self.source = str(path)
        # kallsyms would describe this kernel, not necessarily the recorded one: BTF only.
        self._kernel = KernelInfo(release or os.uname().release, btf, HeaderSource("btf-stub", None, False),
                                  kallsyms_path=Path("/nonexistent"))
        return self._kernel

    def counter_items(self) -> dict[str, dict[int, str]]:
        """Per memcg tracepoint probe, item number -> enum name (the recorder's own tables)."""
        from chargetrace.tracer.catalogue import VARIANTS, item_tables

        kernel = self.kernel()
        if kernel is None:
            return {}
        tables = item_tables(kernel)
        return {v.probe: tables[v.pid] for v in VARIANTS if v.pid in tables and v.probe.startswith("tp:memcg:")}

    def era(self) -> Era:
        from chargetrace.tracer.kernel import detect_era

        kernel = self.kernel()
        return detect_era(kernel) if kernel is not None else Era(detected_by=f"unknown: {self.why_not}")


def _scope(config: ConvertConfig) -> Scope:
    memcg = config.memcg
    path = ""
    if config.cgroup is not None:
        try:
            ino = os.stat(config.cgroup).st_ino
        except OSError as exc:
            raise ChargetraceError(f"{config.cgroup}: cannot stat ({exc.strerror or exc})") from None
        if memcg is not None and memcg != ino:
            raise ChargetraceError(f"--memcg {memcg} is not the id of {config.cgroup} ({ino})")
        memcg, path = ino, str(config.cgroup)
    if memcg is None:
        if config.fresh or config.exited or config.settled:
            raise ChargetraceError("--fresh/--exited/--settled describe a scope: give --memcg or --cgroup too")
        return Scope(kind="system")
    return Scope(kind="cgroup", cgroup_path=path, memcg=memcg, fresh=config.fresh, exited=config.exited,
                 settled=config.settled)


def _probes(mapper: Mapper, header: Header, tool: str) -> list[dict[str, Any]]:
    seen = dict(mapper.probes_seen)
    # Enabled in the recording but never fired: still attached (zero events is a fact).
    from .mapping import TRACEPOINT_KINDS

    for event in header.events:
        sys_, _, name = event.partition(":")
        kind = TRACEPOINT_KINDS.get((sys_, name))
        if kind is not None:
            seen.setdefault(f"tp:{sys_}:{name}", (kind, "tracepoint"))
    probes = [{"event": p.split(":", 1)[-1], "kind": k, "probe": p, "how": how} for p, (k, how) in sorted(seen.items())]
    have = {k for k, _ in seen.values()}
    for kind in KINDS:
        if kind not in have:
            if kind in _RECORDER_KINDS:
                why = "written only by chargetrace record"
            elif kind == "lost":
                why = f"the {tool} recording reported no dropped events"
            else:
                why = f"no tracepoint or kprobe event for it in the {tool} recording"
            probes.append({"event": kind, "kind": kind, "probe": None, "how": None, "reason": why})
    return probes


def convert_file(config: ConvertConfig, progress: Callable[[str, int, int], None] | None = None) -> ConvertResult:
    """Convert ``config.source`` into the trace ``config.output``."""
    source = Path(config.source)
    if not source.exists():
        raise ChargetraceError(f"{source}: no such file")
    if config.fmt not in ("auto", "perf", "trace-cmd", "ftrace"):
        raise ChargetraceError(f"--from {config.fmt}: unknown input format")
    scope = _scope(config)
    if config.btf is not None and not Path(config.btf).exists():
        raise ChargetraceError(f"{config.btf}: no such BTF file")
    lines, layout = text_lines(source, config.fmt)
    tool = "perf" if layout == "perf" else ("trace-cmd" if config.fmt == "trace-cmd" else "ftrace text")
    header, stats = Header(), {"lines": 0, "skipped": 0}
    recorded = _RecordedKernel(config.btf, header)
    # Header lines come first: by the first counter row the recorded kernel is known.
    mapper = Mapper(recorded.counter_items)
    meta = TraceMeta(recorder=f"{tool} (chargetrace convert)", scope=scope, page_size=os.sysconf("SC_PAGE_SIZE"))
    if Path(config.output).exists():
        raise ChargetraceError(f"{config.output}: already exists")
    writer = TraceWriter(config.output, meta, flush_rows=1 << 20, flush_seconds=3600)
    events, batch = 0, []
    max_cpu = -1
    try:
        for rec in parse_lines(lines, layout, header, stats):
            row = mapper.row(rec)
            if row is None:
                continue
            max_cpu = max(max_cpu, rec.cpu)
            batch.append(row)
            if len(batch) >= _BATCH:
                writer.append_rows(batch)
                events += len(batch)
                batch = []
                if progress:
                    # Lines are counted as they stream: the total is not known in advance.
                    progress(f"convert {source.name}: {stats['lines']} lines, {events} events", 0, 0)
        writer.append_rows(batch)
        events += len(batch)
        if not mapper.probes_seen:
            # An empty conversion would replay "balanced": refuse it instead.
            unmapped = ", ".join(sorted(mapper.unmapped)) or "none"
            raise ChargetraceError(
                f"{source}: no event that chargetrace can use ({stats['lines']} lines; tracepoints seen: {unmapped})"
            )
    except BaseException:
        writer.close()
        Path(config.output).unlink(missing_ok=True)
        raise
    meta.kernel_release = header.kernel_release
    meta.host = header.host
    meta.ncpus = header.ncpus or max_cpu + 1 or 1
    meta.era = recorded.era()
    meta.probes = _probes(mapper, header, tool)
    meta.drops = {"total": sum(mapper.drops.values()), "per_cpu": dict(mapper.drops)}
    # The recording's wall-clock time is known only from perf's header.
    meta.started_at = header.captured_on
    meta.provenance = {
        "converted_from": str(source),
        "tool": tool,
        "tool_version": header.tool_version,
        "layout": layout,
        "command": config.argv,
        "converted_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "lines": stats["lines"],
        "skipped_lines": stats["skipped"],
        "unmapped_tracepoints": dict(sorted(mapper.unmapped.items())),
        "counter_items_from": recorded.source or f"none, items are numbers ({recorded.why_not or 'no counter rows'})",
        "unnamed_item_probes": sorted(mapper.unnamed_items),
        "note": "ts_ns is the source tool's timestamp (perf: its clock, default CLOCK_MONOTONIC for tracepoints)",
    }
    writer.meta = meta
    writer.close()
    return ConvertResult(Path(config.output), tool, stats["lines"], events, stats["skipped"],
                         dict(mapper.unmapped), [p["probe"] for p in meta.probes if p["probe"]])
