"""The audit history's hash chain: computing each link, and verifying the whole history.

Each case's events form one chain: every event carries its position in the
case (``case_seq``, 1, 2, 3 ...), the hash of the event before it, and a
SHA-256 over all of its own fields. The case row keeps the chain's head
(event count and last hash), updated in the same transaction, so deleting
the newest events is caught as well as editing, deleting or reordering
earlier ones. A chain per case (rather than one for the whole database)
lets writers on different cases commit in parallel without forking it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from kapflow.domain.case import AuditEvent
from kapflow.domain.payload import canonical_json

GENESIS = "0" * 64


def link_hash(event: AuditEvent) -> str:
    """The hash an event must carry, computed from its fields (including ``prev_hash``)."""
    return hashlib.sha256(canonical_json(event.hashed_fields()).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    """The first broken link found in one case's chain."""

    case_id: str
    seq: int | None
    case_seq: int | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"case_id": self.case_id, "seq": self.seq, "case_seq": self.case_seq, "reason": self.reason}


@dataclass
class AuditReport:
    """What verification found: counts, and one problem per broken case."""

    cases: int = 0
    events: int = 0
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "cases": self.cases,
            "events": self.events,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass
class _Tail:
    case_seq: int = 0
    hash: str = GENESIS
    broken: bool = False


def verify_chain(
    events: Iterable[AuditEvent], heads: Iterable[tuple[str, int, str]]
) -> AuditReport:
    """Check events (in global ``seq`` order) link up per case and end at each case's head."""
    report = AuditReport()
    tails: dict[str, _Tail] = {}
    for ev in events:
        report.events += 1
        tail = tails.setdefault(ev.case_id, _Tail())
        if tail.broken:
            continue
        reason = _link_problem(ev, tail)
        if reason:
            tail.broken = True
            report.problems.append(AuditProblem(ev.case_id, ev.seq, ev.case_seq, reason))
            continue
        tail.case_seq, tail.hash = ev.case_seq, ev.hash
    for case_id, count, head in heads:
        report.cases += 1
        tail = tails.pop(case_id, _Tail())
        if tail.broken:
            continue
        if tail.case_seq != count or tail.hash != head:
            report.problems.append(
                AuditProblem(
                    case_id,
                    None,
                    tail.case_seq,
                    f"the chain ends at event {tail.case_seq} but the case records {count} events "
                    "with another head hash: its newest events were deleted or replaced",
                )
            )
    for case_id in sorted(tails):
        report.problems.append(
            AuditProblem(case_id, None, None, "audit events exist for a case that is not in the cases table")
        )
    return report


def _link_problem(ev: AuditEvent, tail: _Tail) -> str:
    if ev.case_seq != tail.case_seq + 1:
        return (
            f"holds event {ev.case_seq} of its case where event {tail.case_seq + 1} was expected: "
            "a row was deleted or the rows were reordered"
        )
    if ev.prev_hash != tail.hash:
        return "its previous-hash does not match the row before it: a row was replaced or reordered"
    if link_hash(ev) != ev.hash:
        return "its contents do not match its hash: the row was edited"
    return ""
