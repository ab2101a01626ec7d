"""The audit history's hash chain: computing each link, and verifying the whole history.

Each case's events form one chain: every event carries its position in the
case (``case_seq``, 1, 2, 3 ...), the hash of the event before it, and a
SHA-256 over all of its own fields. The case row keeps the chain's head
(event count and last hash), updated in the same transaction, so deleting
the newest events is caught as well as editing, deleting or reordering
earlier ones. Replaying a chain must also give its case row's state,
version and facts, so an edited case row (which guards read) is caught too.
A chain per case (rather than one for the whole database)
lets writers on different cases commit in parallel without forking it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import groupby

from kapflow.domain.case import AuditEvent, CaseRecord, replay_events
from kapflow.domain.events import NOTE_KINDS, EventKind
from kapflow.domain.payload import canonical_json

GENESIS = "0" * 64


def link_hash(event: AuditEvent) -> str:
    """The hash an event must carry, computed from its fields (including ``prev_hash``)."""
    return fields_hash(event.hashed_fields())


def fields_hash(fields: Mapping[str, object]) -> str:
    """The chain hash of an event's hashed fields (``AuditEvent.hashed_fields``)."""
    return hashlib.sha256(canonical_json(dict(fields)).encode("utf-8")).hexdigest()


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


def verify_chain(
    events: Iterable[AuditEvent], cases: Iterable[CaseRecord], bindings: Iterable[tuple[str, str]] | None = None,
    strays: Iterable[tuple[str, int]] = (),
) -> AuditReport:
    """Check every case's chain and that replaying it gives the case row (and its client bindings).

    ``events`` are ordered by case id and ``cases`` by id, so one case is held
    in memory at a time, however large the history. ``bindings`` (case id, subject hash), ordered by
    case id, must be exactly those its ``client_bound`` and ``client_unbound`` events leave: a binding
    added behind the engine's back would let a client reach a case. ``strays`` (case id, how many):
    projection entry rows no reader takes (``Store.entries_past_counts``): rows added by hand, reported
    for a case with no other problem.
    """
    past = dict(strays)  # a few at most: only a hand edit leaves one
    report = AuditReport()
    if bindings is not None:
        events = _checking_bindings(events, bindings, report)
    grouped = groupby(events, key=lambda ev: ev.case_id)
    pending = next(grouped, None)
    for case in cases:
        report.cases += 1
        while pending is not None and pending[0] < case.id:
            _orphans(report, pending)
            pending = next(grouped, None)
        chain: list[AuditEvent] = []
        if pending is not None and pending[0] == case.id:
            chain = list(pending[1])
            pending = next(grouped, None)
        report.events += len(chain)
        stray = past.pop(case.id, 0)
        problem = _case_problem(case, chain) or _stray_problem(case.id, stray)
        if problem is not None:
            report.problems.append(problem)
    while pending is not None:
        _orphans(report, pending)
        pending = next(grouped, None)
    reported = {p.case_id for p in report.problems}
    report.problems += [
        AuditProblem(case_id, None, None, f"{count} projection entry rows exist for a case not in the cases table")
        for case_id, count in past.items() if case_id not in reported
    ]
    return report


def _stray_problem(case_id: str, count: int) -> AuditProblem | None:
    if not count:
        return None
    return AuditProblem(case_id, None, None, f"{count} of its projection's entry rows lie past the counts its case row "
                        "keeps: rows added by hand (no command leaves one, and no reader takes them)")


def _orphans(report: AuditReport, group: tuple[str, Iterator[AuditEvent]]) -> None:
    report.events += sum(1 for _ in group[1])
    report.problems.append(
        AuditProblem(group[0], None, None, "audit events exist for a case that is not in the cases table")
    )


def _case_problem(case: CaseRecord, chain: list[AuditEvent]) -> AuditProblem | None:
    # Walk the rows in the order they were written (global seq): a row moved to another
    # place then shows up where a different event of the case was expected.
    chain = sorted(chain, key=lambda ev: ev.seq or 0)
    previous_hash = GENESIS
    for position, ev in enumerate(chain, 1):
        reason = _link_problem(ev, position, previous_hash)
        if reason:
            return AuditProblem(case.id, ev.seq, ev.case_seq, reason)
        previous_hash = ev.hash
    if len(chain) != case.event_count or previous_hash != (case.head_hash or GENESIS):
        return AuditProblem(
            case.id, None, len(chain),
            f"the chain ends at event {len(chain)} but the case records {case.event_count} events "
            "with another head hash: its newest events were deleted or replaced",
        )
    if chain and chain[-1].workflow_version != case.workflow_version:
        return AuditProblem(
            case.id, None, None,
            f"the case row says workflow version {case.workflow_version!r} but its history ends on "
            f"{chain[-1].workflow_version!r}: the row was edited",
        )
    changes = [ev for ev in chain if ev.kind not in NOTE_KINDS]  # a note leaves the row's updated time alone
    if changes and (case.opened_at != chain[0].at or case.updated_at != changes[-1].at):
        return AuditProblem(
            case.id, None, None,
            "the case row's opened or updated time differs from its first or last event's: the row was edited",
        )
    if replay_events(chain) != (case.state, case.previous_state, case.version, dict(case.facts)):
        return AuditProblem(
            case.id, None, None,
            "the case row's state, version or facts differ from a replay of its history: the row was edited",
        )
    return None


def _link_problem(ev: AuditEvent, position: int, previous_hash: str) -> str:
    if ev.case_seq != position:
        return (
            f"holds event {ev.case_seq} of its case where event {position} was expected: "
            "a row was deleted or the rows were reordered"
        )
    if ev.prev_hash != previous_hash:
        return "its previous-hash does not match the row before it: a row was replaced or reordered"
    if link_hash(ev) != ev.hash:
        return "its contents do not match its hash: the row was edited"
    return ""


def _checking_bindings(
    events: Iterable[AuditEvent], bindings: Iterable[tuple[str, str]], report: AuditReport
) -> Iterator[AuditEvent]:
    """``events`` unchanged, while each case's bindings are held against those its events leave."""
    stored = groupby(bindings, key=lambda row: row[0])
    pending = next(stored, None)
    for case_id, chain in groupby(events, key=lambda ev: ev.case_id):
        expected: set[str] = set()
        for ev in chain:
            if ev.kind == EventKind.CLIENT_BOUND:
                expected.add(str(ev.data.get("subject_sha256")))
            elif ev.kind == EventKind.CLIENT_UNBOUND:
                expected.discard(str(ev.data.get("subject_sha256")))
            yield ev
        while pending is not None and pending[0] < case_id:
            report.problems.append(_binding_problem(pending[0]))
            pending = next(stored, None)
        found = set()
        if pending is not None and pending[0] == case_id:
            found = {subject for _case, subject in pending[1]}
            pending = next(stored, None)
        if found != expected:
            report.problems.append(_binding_problem(case_id))
    while pending is not None:
        report.problems.append(_binding_problem(pending[0]))
        pending = next(stored, None)


def _binding_problem(case_id: str) -> AuditProblem:
    return AuditProblem(case_id, None, None, "the case's client bindings differ from those its history binds: a "
                                             "client's access was added or removed behind the engine's back")
