"""Trace metadata: what was recorded, where, how, and how completely.

Stored as one JSON object under the Parquet key-value key ``chargetrace``.
Unknown keys written by a newer recorder are kept in :attr:`TraceMeta.extra`
so that rewriting a trace (mutate, anonymize) never drops them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ChargetraceError
from .schema import SCHEMA_VERSION
from .validate import parse_meta_json

__all__ = ["TraceMeta", "Era", "Scope"]


@dataclass
class Era:
    """Accounting era of the recorded kernel (docs/accounting.md#charge-transfer-on-migration, #free-refcount-eras)."""

    #: ``"force"``: mem_cgroup_migrate force-charges the new folio (<= 6.6);
    #: ``"transfer"``: it moves the charge (>= 6.7, 85ce2c517ade). None = unknown.
    migrate: str | None = None
    #: Refcount at which a device-private page is freed: 1 (<= 5.17) or 0
    #: (>= 5.18, 27674ef6c73f). None = unknown.
    device_free_refcount: int | None = None
    #: The kernel feature that decided it (e.g. "kallsyms: mem_cgroup_replace_folio").
    detected_by: str = ""


@dataclass
class Scope:
    """What the recording was limited to."""

    kind: str = "system"  # command | pid | cgroup | system
    command: list[str] = field(default_factory=list)
    pid: int = 0
    cgroup_path: str = ""
    memcg: int = 0
    #: The recorder created the memcg after attaching its probes: every charge
    #: in it was observable, so its counters must balance from zero.
    fresh: bool = False
    #: All tasks of the scope had exited before the recording ended.
    exited: bool = False
    #: How the recorder drained the memcg after exit ("" = not drained).
    settled: str = ""
    # -- schema 2 (recorder) --------------------------------------------------
    #: Sample phase -> seq of the first row of that phase's sample set
    #: ("start", "exit", "settled"; "end" when tasks still ran at the end).
    phases: dict[str, int] = field(default_factory=dict)
    #: The scope memcg, its descendants and the memcgs its tasks were followed
    #: into: {"memcg", "parent", "path", "created_in_scope"}.
    memcgs: list[dict[str, Any]] = field(default_factory=list)
    #: {"pid", "comm"} still in the scope when the recording ended; None = not known.
    tasks_left: list[dict[str, Any]] | None = None
    #: {"pid", "memcg", "followed"} scope tasks that moved to a memcg outside the scope.
    moved_out: list[dict[str, Any]] | None = None
    #: Share of the scope's faults taken while in a memcg the recording did not see.
    unseen_fault_share: float | None = None
    #: {"method", "done", "unreclaimed_bytes", "why"}; None = no settling.
    settle: dict[str, Any] | None = None
    #: The command's exit status (128+N for signal N); None = no command / unknown.
    exit_status: int | None = None
    #: OOM kills in the scope (memory.events / memory.oom_control); None = not readable.
    oom_kills: int | None = None


@dataclass
class TraceMeta:
    schema_version: int = SCHEMA_VERSION
    recorder: str = ""
    synthetic: bool = False
    kernel_release: str = ""
    host: str = ""
    era: Era = field(default_factory=Era)
    probes: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    ended_at: str = ""
    drops: dict[str, Any] = field(default_factory=lambda: {"total": 0, "per_cpu": {}})
    scope: Scope = field(default_factory=Scope)
    page_size: int = 4096
    ncpus: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)
    mutations: list[dict[str, Any]] = field(default_factory=list)
    anonymized: bool = False
    #: CLOCK_MONOTONIC ns at which the recorder let events through (after every
    #: probe attached); no row has an earlier ts_ns. None = not recorded (v1).
    armed_ns: int | None = None
    #: In-kernel per-(memcg, kind, item) sums kept by the probes themselves
    #: (schema 2, tracer/ledger.py): ``{"memcg", "kind", "item", "events",
    #: "pages"}`` entries. None = the recorder kept no ledger.
    ledger: list[dict[str, Any]] | None = None
    #: Random id the writer gives a recording; every segment of it carries the same one.
    recording_id: str = ""
    #: False while the recording runs and when it failed; the writer sets it
    #: true only when it closes the trace cleanly. (Version 1 traces lack it.)
    complete: bool = True
    #: Rows the writer wrote in the whole trace (None while recording).
    rows: int | None = None
    #: Schema 3: the drivers whose device memory the trace saw, one entry per
    #: ``pgmap_ops`` id: ``{"id", "symbol", "module", "driver"}`` (symbol and
    #: module from /proc/kallsyms at record time, driver from the recorder's
    #: catalogue, tracer/drivers.py). None = not recorded (older recorder).
    pgmaps: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        return json.dumps({**extra, **data}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str = "trace") -> "TraceMeta":
        # Typed check first (traces/validate.py): nothing below sees a wrong type.
        data = parse_meta_json(raw, source)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        try:
            for key in known & data.keys():
                value = data[key]
                if key == "era":
                    value = Era(**_known(Era, value))
                elif key == "scope":
                    value = Scope(**_known(Scope, value))
                kwargs[key] = value
        except TypeError as exc:
            raise ChargetraceError(f"{source}: malformed metadata ({exc})") from None
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs)


def _known(kind: type, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{kind.__name__} must be an object")
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in value.items() if k in names}
