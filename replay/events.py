"""The event record the replay automaton hands to rules: one trace row."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Event"]


class Event(NamedTuple):
    """Fields and meanings as in traces/SCHEMA.md (same names, same order)."""

    seq: int
    ts_ns: int
    cpu: int
    pid: int
    tid: int
    comm: str
    kind: str
    probe: str
    folio: int
    folio_new: int
    nr_pages: int
    memcg: int
    memcg_new: int
    addr: int
    ret: int
    item: str
    value: int
    span_ns: int
    pgmap_ops: int
