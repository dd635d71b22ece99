"""Typed schema of the trace metadata JSON, checked before anything uses it.

Scope: the JSON object stored under the ``chargetrace`` Parquet key (see
traces/SCHEMA.md, "File metadata"). Every known field is checked for its JSON
type — integers are integers (``true`` is not 1, ``1.0`` is not 1), strings are
strings — and, where it matters, for its range. Unknown top-level keys are
allowed (a newer recorder may add some); they are kept, not interpreted.

Limits: the checks are about shape and type, not meaning. Whether the drop
counters agree with the ``lost`` rows is a question about rows too, answered by
traces/integrity.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import ChargetraceError

__all__ = ["validate_meta", "parse_meta_json", "MAX_META_BYTES", "MAX_META_DEPTH"]

#: Largest metadata blob accepted (the real ones are a few KB).
MAX_META_BYTES = 4 * 1024 * 1024
#: Deepest nesting accepted: the real metadata nests 4 levels.
MAX_META_DEPTH = 32

_U64 = (1 << 64) - 1
_I64 = 1 << 63

Check = Callable[[Any, str], None]


class _Bad(Exception):
    """One metadata field is wrong; carries the one-line reason."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _int(lo: int = 0, hi: int = _U64) -> Check:
    def check(value: Any, where: str) -> None:
        # bool is an int subclass in Python; in the metadata it is not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"{where} must be an integer, not {_kind(value)}")
        if not lo <= value <= hi:
            raise _Bad(f"{where} = {value} is out of range [{lo}, {hi}]")

    return check


def _number(lo: float, hi: float) -> Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"{where} must be a number, not {_kind(value)}")
        if not lo <= value <= hi:  # also refuses NaN
            raise _Bad(f"{where} = {value} is out of range [{lo}, {hi}]")

    return check


def _str(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _Bad(f"{where} must be a string, not {_kind(value)}")


def _bool(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _Bad(f"{where} must be true or false, not {_kind(value)}")


def _any(value: Any, where: str) -> None:
    return None


def _one_of(*choices: Any) -> Check:
    def check(value: Any, where: str) -> None:
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise _Bad(f"{where} must be one of {', '.join(json.dumps(c) for c in choices)}, not {_short(value)}")

    return check


def _opt(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def _list(item: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _Bad(f"{where} must be a list, not {_kind(value)}")
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")

    return check


def _map(item: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be an object, not {_kind(value)}")
        for k, v in value.items():
            item(v, f"{where}.{k}")

    return check


def _obj(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be an object, not {_kind(value)}")
        for name in required:
            if name not in value:
                raise _Bad(f"{where}.{name} is missing")
        for name, spec in fields.items():
            if name in value:
                spec(value[name], f"{where}.{name}")

    return check


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


_U64_ID = _int(0, _U64)
_COUNT = _int(0, _I64 - 1)

_ERA = _obj({
    "migrate": _opt(_one_of("force", "transfer")),
    "device_free_refcount": _opt(_one_of(0, 1)),
    "detected_by": _str,
})

_PROBE = _obj({"event": _str, "kind": _str, "probe": _opt(_str), "how": _opt(_str), "reason": _opt(_str)},
              required=("event",))

_SCOPE = _obj({
    "kind": _one_of("command", "pid", "cgroup", "system"),
    "command": _list(_str),
    "pid": _int(0, (1 << 32) - 1),
    "cgroup_path": _str,
    "memcg": _U64_ID,
    "fresh": _bool,
    "exited": _bool,
    "settled": _str,
    # Fields of schema version 2 (recorder): see traces/SCHEMA.md.
    "phases": _opt(_map(_U64_ID)),
    "memcgs": _opt(_list(_obj({"memcg": _U64_ID, "parent": _opt(_U64_ID), "path": _str, "created_in_scope": _bool},
                         required=("memcg",)))),
    "tasks_left": _opt(_list(_obj({"pid": _int(0, (1 << 32) - 1), "comm": _str}, required=("pid",)))),
    "moved_out": _opt(_list(_obj({"pid": _int(0, (1 << 32) - 1), "memcg": _U64_ID, "followed": _bool},
                                 required=("pid",)))),
    "unseen_fault_share": _opt(_number(0.0, 1.0)),
    "settle": _opt(_obj({"method": _str, "done": _bool, "unreclaimed_bytes": _int(-_I64, _I64 - 1),
                    "why": _opt(_str)})),
    "exit_status": _opt(_int(0, 1 << 16)),
    "oom_kills": _opt(_COUNT),
})

# missed: probe runs the kernel skipped (BPF recursion guard), by probe; rescued:
# records the ring refused once and took on the retry, ledger slots that ran out.
_DROPS = _obj({"total": _COUNT, "per_cpu": _map(_COUNT), "missed": _map(_COUNT), "rescued": _map(_COUNT)},
              required=("total",))

# The in-kernel ledger (tracer/ledger.py): per (memcg, kind, item) sums kept by the
# probes. ``pages`` sums memcg counter deltas for memcg_stat rows, so it may be negative.
_LEDGER = _opt(_list(_obj({"memcg": _U64_ID, "kind": _str, "item": _str, "events": _COUNT,
                           "pages": _int(-_I64, _I64 - 1)}, required=("memcg", "kind", "events", "pages"))))

# Schema 3: the driver behind each pgmap_ops id (tracer/drivers.py); ``id`` is the
# column's value (an opaque id, or the raw pointer in a --raw-pointers trace).
_PGMAPS = _opt(_list(_obj({"id": _int(1, _U64), "symbol": _str, "module": _str, "driver": _str},
                          required=("id", "driver"))))

#: Every known top-level field and its type; ``schema_version`` is required.
_META = _obj({
    "schema_version": _int(0, 1 << 31),
    "recorder": _str,
    "synthetic": _bool,
    "kernel_release": _str,
    "host": _str,
    "era": _ERA,
    "probes": _list(_PROBE),
    "started_at": _str,
    "ended_at": _str,
    "drops": _DROPS,
    "scope": _SCOPE,
    "page_size": _int(512, 1 << 30),
    "ncpus": _int(1, 1 << 20),
    "provenance": _map(_any),
    "mutations": _list(_map(_any)),
    "anonymized": _bool,
    "recording_id": _str,
    "complete": _bool,
    "rows": _opt(_COUNT),
    "armed_ns": _opt(_U64_ID),
    "ledger": _LEDGER,
    "pgmaps": _PGMAPS,
}, required=("schema_version",))


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, without recursion (so a deep blob cannot overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_meta_json(raw: bytes, source: str) -> dict[str, Any]:
    """Decode the metadata blob into a dict; one :class:`ChargetraceError` line on any failure."""
    if len(raw) > MAX_META_BYTES:
        raise ChargetraceError(f"{source}: metadata is {len(raw)} bytes, more than the {MAX_META_BYTES} accepted")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ChargetraceError(f"{source}: metadata nests deeper than {MAX_META_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChargetraceError(f"{source}: metadata is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ChargetraceError(f"{source}: metadata is not a JSON object")
    if _depth(data, MAX_META_DEPTH) > MAX_META_DEPTH:
        raise ChargetraceError(f"{source}: metadata nests deeper than {MAX_META_DEPTH} levels")
    validate_meta(data, source)
    return data


def validate_meta(data: dict[str, Any], source: str) -> None:
    """Check every known field's type; raise one line naming the first bad field."""
    try:
        _META(data, "metadata")
    except _Bad as exc:
        what = "malformed scope metadata: " if str(exc).startswith("metadata.scope") else ""
        raise ChargetraceError(f"{source}: {what}{exc}") from None
