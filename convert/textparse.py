"""Parse the text of ``perf script`` and ``trace-cmd report`` (and tracefs's
``trace`` / ``trace_pipe``) into tracepoint records.

Line layouts understood (one event per line; anything else is counted as
skipped, never guessed at):

* perf script: ``COMM PID/TID [CPU] SECS.FRAC: [PERIOD] SYS:NAME: FIELDS``
  (``-F comm,pid,tid,cpu,time,event,trace``; the default ``COMM TID [CPU] ...``
  too, then pid = tid);
* ftrace / trace-cmd report: ``COMM-TID [(TGID)] [CPU] [FLAGS] SECS.FRAC:
  [SYS:]NAME: FIELDS`` (trace-cmd prints the event name without its system:
  the system is then looked up by name in the caller's table).

Header lines (``# os release : 6.18``, ``# event : name = memcg:...``,
``# nrcpus avail : 2``) fill :class:`Header`. Binary inputs (``perf.data``,
``trace.dat``) are turned into text by the tools themselves (``perf script``,
``trace-cmd report``): their own parsers are the maintained ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chargetrace.traces import ChargetraceError

__all__ = ["Record", "Header", "parse_lines", "detect_format", "text_lines", "parse_fields", "FORMATS", "LOST_SYSTEM"]

FORMATS = ("perf", "trace-cmd", "ftrace")

_PERF = re.compile(
    r"^\s*(?P<comm>\S.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<ts>\d+\.\d+):\s+(?:\d+\s+)?(?P<sys>[\w.-]+):(?P<name>[\w.-]+):\s*(?P<rest>.*)$"
)
_FTRACE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*(?P<pid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[\w.]{4,5})\s+)?(?P<ts>\d+\.\d+):\s+(?:(?P<sys>[\w-]+):)?(?P<name>[\w.-]+):\s*(?P<rest>.*)$"
)
#: perf script --show-lost-events: "COMM PID/TID [CPU] TS: PERF_RECORD_LOST lost N".
_PERF_LOST = re.compile(
    r"^\s*(?P<comm>\S.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+"
    r"PERF_RECORD_LOST(?:_SAMPLES)?\s+lost\s+(?P<n>\d+)"
)
#: trace-cmd report / tracefs: "CPU:1 [LOST 123 EVENTS]" (no time stamp of its own).
_FTRACE_LOST = re.compile(r"^\s*CPU:\s*(?P<cpu>\d+)\s+\[LOST\s+(?P<n>\d+)\s+EVENTS\]")
#: System name of the records that stand for events the tool dropped.
LOST_SYSTEM = "lost"
_FIELD = re.compile(r"([A-Za-z_]\w*)=(\S*)")
_PERF_MAGIC = b"PERFILE2"
_TRACECMD_MAGIC = b"\x17\x08\x44tracing"


@dataclass
class Record:
    """One tracepoint (or kprobe event) occurrence."""

    ts_ns: int
    cpu: int
    pid: int
    tid: int
    comm: str
    system: str  # "" when the text does not say (trace-cmd)
    name: str
    fields: dict[str, str]


@dataclass
class Header:
    """What the text's header lines say about the recording."""

    kernel_release: str = ""
    host: str = ""
    ncpus: int = 0
    events: list[str] = field(default_factory=list)  # "sys:name" enabled in the recording
    tool_version: str = ""
    captured_on: str = ""  # perf's "captured on" line, as printed


def parse_fields(rest: str) -> dict[str, str]:
    """``key=value`` pairs of a tracepoint's printed fields."""
    return {k: v for k, v in _FIELD.findall(rest)}


def _ns(text: str) -> int:
    secs, _, frac = text.partition(".")
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])


def _header(line: str, header: Header) -> None:
    key, sep, value = line.lstrip("# ").partition(" : ")
    if not sep:
        return
    key, value = key.strip(), value.strip()
    if key == "os release":
        header.kernel_release = value
    elif key == "hostname":
        header.host = value
    elif key == "nrcpus avail":
        header.ncpus = int(value) if value.isdigit() else 0
    elif key == "captured on":
        header.captured_on = value
    elif key == "perf version":
        header.tool_version = value
    elif key == "event":
        m = re.search(r"name = ([\w.-]+:[\w.-]+)", value)
        if m:
            header.events.append(m.group(1))


def detect_format(first_lines: list[str]) -> str:
    """``perf`` or ``ftrace`` (trace-cmd report has ftrace's layout)."""
    for line in first_lines:
        if not line.strip() or line.startswith("#"):
            continue
        if _FTRACE.match(line) and not _PERF.match(line):
            return "ftrace"
        if _PERF.match(line):
            return "perf"
    return "perf"


def parse_lines(lines: Iterator[str], fmt: str, header: Header, stats: dict[str, int]) -> Iterator[Record]:
    """Records of ``lines`` in the given layout; ``stats`` counts lines and skips."""
    pattern, lost = (_PERF, _PERF_LOST) if fmt == "perf" else (_FTRACE, _FTRACE_LOST)
    last_ts = 0
    for line in lines:
        stats["lines"] = stats.get("lines", 0) + 1
        if line.startswith("#"):
            _header(line, header)
            continue
        m = lost.match(line)
        if m is not None:
            # Dropped by the tool's ring buffer: the replay must know (inconclusive, not balanced).
            ts = _ns(m.group("ts")) if "ts" in m.groupdict() else last_ts
            yield Record(ts, int(m.group("cpu")), 0, 0, "", LOST_SYSTEM, "lost", {"lost": m.group("n")})
            continue
        m = pattern.match(line)
        if m is None:
            if line.strip() and not line.startswith(("CPU ", "cpus=", "version =")):
                stats["skipped"] = stats.get("skipped", 0) + 1
            continue
        tid = int(m.group("tid")) if m.group("tid") not in (None, "-") else 0
        pid_text = m.group("pid")
        if fmt == "perf" and m.group("tid") is None:
            pid = tid = int(pid_text)  # default perf script layout prints the tid only
        else:
            pid = int(pid_text) if pid_text and pid_text.lstrip("-").isdigit() else tid
        last_ts = _ns(m.group("ts"))
        yield Record(last_ts, int(m.group("cpu")), pid, tid, m.group("comm").strip(),
                     m.group("sys") or "", m.group("name"), parse_fields(m.group("rest")))


def _run(argv: list[str], what: str) -> Iterator[str]:
    if shutil.which(argv[0]) is None:
        raise ChargetraceError(f"{what}: needs `{argv[0]}` to read this binary file (not on PATH)")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    assert proc.stdout is not None
    yield from proc.stdout
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        last = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ChargetraceError(f"{what}: `{' '.join(argv[:2])}` failed: {last}")


def text_lines(path: Path, fmt: str) -> tuple[Iterator[str], str]:
    """Text lines of ``path`` and the layout (perf / ftrace). Binary perf.data and
    trace.dat files are read through ``perf script`` / ``trace-cmd report``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ChargetraceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(_PERF_MAGIC) and fmt in ("auto", "perf"):
        return _run(["perf", "script", "-i", str(path), "--ns", "--header", "--show-lost-events",
                     "-F", "comm,pid,tid,cpu,time,event,trace"], str(path)), "perf"
    if head.startswith(_TRACECMD_MAGIC) and fmt in ("auto", "trace-cmd"):
        return _run(["trace-cmd", "report", "-t", "-i", str(path)], str(path)), "ftrace"
    if b"\0" in head:
        raise ChargetraceError(f"{path}: binary file that is neither perf.data nor trace-cmd's trace.dat")
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ChargetraceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    first = []
    for line in fh:
        first.append(line)
        if len(first) >= 200:
            break
    layout = {"perf": "perf", "trace-cmd": "ftrace", "ftrace": "ftrace"}.get(fmt) or detect_format(first)

    def lines() -> Iterator[str]:
        with fh:
            yield from first
            yield from fh

    return lines(), layout
