"""Findings: what a rule reports, and the events it rests on."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Finding", "VIOLATION", "CANDIDATE"]

VIOLATION = "violation"
#: A leak the trace suggests but cannot prove (e.g. page cache still charged
#: after its process exited): listed apart, never part of the verdict.
CANDIDATE = "candidate"


@dataclass
class Finding:
    rule: str
    seq: int  #: the event at which the rule fired (or the last event, at end of trace)
    ts_ns: int
    folio: int
    memcg: int
    message: str
    #: Earliest event the finding depends on: if events were lost anywhere in
    #: [since_ts_ns, ts_ns] the finding is inconclusive.
    since_ts_ns: int = 0
    related_seqs: list[int] = field(default_factory=list)
    kind: str = VIOLATION
    inconclusive: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "seq": self.seq,
            "ts_ns": self.ts_ns,
            "folio": self.folio,
            "memcg": self.memcg,
            "message": self.message,
            "related_seqs": list(self.related_seqs),
        }
