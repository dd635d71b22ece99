"""Fault injection: rewrite a trace with a known accounting fault in it.

Users run ``chargetrace mutate`` to check that the checker catches what it
claims. Each fault picks the N-th eligible event (1-based, in seq order),
changes the rows, renumbers ``seq`` and records what it did — and which rule
should catch it — in the output's metadata (``mutations``).

Faults:

* ``drop-uncharge``: remove an uncharge that released a charge (not a device
  free's). On a trace with only counters, remove a PGPGOUT counter row.
* ``duplicate-uncharge``: repeat an uncharge that released a charge.
* ``skip-transfer``: remove a charge transfer (mem_cgroup_migrate).
* ``double-charge``: repeat a successful charge.
* ``drop-device-free-uncharge``: remove the uncharge inside a device-private free
  (the pairing is the model's, Model.device_free_pairs).
* ``lose-charge``: remove a charge and add a ``lost`` row over it, as a real
  ring-buffer drop would look: what depends on it must become inconclusive.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pyarrow as pa

from chargetrace.traces import ChargetraceError, Trace, TraceMeta

__all__ = ["FAULTS", "Mutation", "mutate", "eligible_events"]

FAULTS = (
    "drop-uncharge",
    "duplicate-uncharge",
    "skip-transfer",
    "double-charge",
    "drop-device-free-uncharge",
    "lose-charge",
)


@dataclass(frozen=True)
class Mutation:
    fault: str
    n: int


def _rows(table: pa.Table) -> list[dict]:
    return table.select(["seq", "ts_ns", "tid", "kind", "folio", "memcg", "ret", "item", "value"]).to_pylist()


def _device_free_uncharges(trace: Trace) -> list[int]:
    """Row indices of the uncharges that complete a device free, as the model
    pairs them (Model.device_free_pairs: one owner of the pairing)."""
    from .engine import device_folios, iter_events
    from .eras import select_era
    from .model import Model

    model = Model(select_era(trace.meta), device_folios(trace.table), trace.meta.page_size)
    for ev in iter_events(trace.table):
        model.apply(ev)
    paired = {p.uncharge_seq for p in model.device_free_pairs if p.uncharge_seq >= 0}
    seqs = trace.table.column("seq").to_pylist()
    return [i for i, seq in enumerate(seqs) if seq in paired]


def _eligible(fault: str, rows: list[dict], device_uncharges: set[int]) -> tuple[list[int], str]:
    """Row indices a fault may hit, and the rule expected to catch it."""
    if fault in ("drop-uncharge", "duplicate-uncharge"):
        hits = [i for i, r in enumerate(rows) if r["kind"] == "uncharge" and r["memcg"] and i not in device_uncharges]
        if hits:
            # A dropped uncharge shows when the folio is reused: charged again (R1)
            # or as a migration destination (R4); else as a leak at the end (R10).
            return hits, "R1, R4 or R10" if fault == "drop-uncharge" else "R3"
        if fault == "drop-uncharge":
            return [i for i, r in enumerate(rows) if r["kind"] == "memcg_stat" and r["item"] == "PGPGOUT"], "R3.pgpg"
        return [], "R3"
    if fault == "skip-transfer":
        return [i for i, r in enumerate(rows) if r["kind"] == "transfer" and r["memcg"]], "R4"
    if fault in ("double-charge", "lose-charge"):
        return [i for i, r in enumerate(rows) if r["kind"] == "charge" and r["ret"] == 0 and r["memcg"]], (
            "R1" if fault == "double-charge" else "inconclusive"
        )
    if fault == "drop-device-free-uncharge":
        return sorted(device_uncharges), "R6"
    raise ChargetraceError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")


def eligible_events(trace: Trace, fault: str) -> tuple[list[int], str]:
    """Row indices of ``trace`` that ``fault`` may hit, and the rule expected to catch it."""
    return _eligible(fault, _rows(trace.table), set(_device_free_uncharges(trace)))


def mutate(trace: Trace, mutations: list[Mutation]) -> tuple[pa.Table, TraceMeta]:
    """Apply the faults (all chosen on the input trace) and return the new table and meta."""
    if not mutations:
        raise ChargetraceError("no fault given; use one of --" + ", --".join(FAULTS))
    table = trace.table
    rows = _rows(table)
    device_uncharges = set(_device_free_uncharges(trace))
    drop: set[int] = set()
    duplicate: set[int] = set()
    lost_after: dict[int, dict] = {}
    applied = []
    for m in mutations:
        hits, expect = _eligible(m.fault, rows, device_uncharges)
        if m.n < 1 or m.n > len(hits):
            raise ChargetraceError(
                f"{trace.path}: --{m.fault} {m.n}: the trace has {len(hits)} eligible event(s)"
            )
        index = hits[m.n - 1]
        row = rows[index]
        if m.fault in ("double-charge", "duplicate-uncharge"):
            duplicate.add(index)
        else:
            drop.add(index)
        if m.fault == "lose-charge":
            lost_after[index] = row
        applied.append(
            {"fault": m.fault, "n": m.n, "input_seq": row["seq"], "folio": row["folio"],
             "memcg": row["memcg"], "expect": expect}
        )
    order: list[int] = []
    lost_rows: dict[int, dict] = {}
    for i in range(table.num_rows):
        if i not in drop:
            order.append(i)
        if i in duplicate:
            order.append(i)
        if i in lost_after:
            lost_rows[len(order)] = lost_after[i]
            order.append(i)  # placeholder, replaced by the lost row below
    out = table.take(pa.array(order, pa.int64()))
    if lost_rows:
        out = _replace_with_lost(out, lost_rows)
    out = out.set_column(0, "seq", pa.array(range(out.num_rows), pa.uint64()))
    meta = copy.deepcopy(trace.meta)
    meta.mutations = list(meta.mutations) + applied
    meta.provenance = {**meta.provenance, "mutated_from": str(trace.path)}
    return out, meta


def _replace_with_lost(table: pa.Table, lost_rows: dict[int, dict]) -> pa.Table:
    """Turn the placeholder rows into ``lost`` rows covering the dropped event."""
    pieces = []
    start = 0
    for pos in sorted(lost_rows):
        pieces.append(table.slice(start, pos - start))
        row = table.slice(pos, 1).to_pylist()[0]
        lost = {**row, "kind": "lost", "probe": "chargetrace mutate", "folio": 0, "memcg": 0,
                "nr_pages": 0, "ret": 0, "item": "", "value": 1, "span_ns": 1_000_000}
        pieces.append(pa.Table.from_pylist([lost], schema=table.schema))
        start = pos + 1
    pieces.append(table.slice(start))
    return pa.concat_tables(pieces).combine_chunks()
