"""The clinician and room each appointment holds, and when: a pure function of the case's facts.

A booking names its clinician and, for the kinds that take one (``AppointmentFacts.rooms``),
its room. While the appointment is booked or attended it holds each of them from its start
for its kind's holding time (``AppointmentFacts.held_minutes``: its own length unless the
workflow says otherwise); cancelled or missed, it holds nothing. A resource is named
``clinician:<id>`` or ``room:<id>``.

The command that changes an appointment changes its holds in the same transaction
(``hold_changes``), and a booking or reschedule whose holds overlap another appointment's
is refused (``taken_blockers``). The blocker gives the resource and the taken time in the
practice's zone, never the case or client that holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from kapflow.domain.appointments import Appointment, AppointmentFacts, appointments
from kapflow.domain.case import CaseFacts, fold_fact
from kapflow.domain.errors import Blocker, InvalidFact
from kapflow.domain.payload import JSONObject

HOLDING = ("booked", "attended")  # an appointment in one of these statuses holds its clinician and room


class Hold(NamedTuple):
    """One resource held by one appointment over [starts_at, ends_at)."""

    resource: str  # "clinician:<id>" or "room:<id>"
    starts_at: datetime
    ends_at: datetime
    case_id: str
    appointment_id: str

    def overlaps(self, other: Hold) -> bool:
        return self.resource == other.resource and self.starts_at < other.ends_at and other.starts_at < self.ends_at


@dataclass(frozen=True)
class HoldChanges:
    """What a change of a case does to its holds: drop those of ``release`` (appointment ids), add ``hold``.

    An appointment whose holds move (a reschedule) is in both: its old holds go, its new ones come.
    """

    case_id: str = ""
    release: tuple[str, ...] = ()
    hold: tuple[Hold, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.release and not self.hold


NO_CHANGES = HoldChanges()


def holds_of(appt: Appointment, carriers: AppointmentFacts) -> tuple[Hold, ...]:
    """The resources ``appt`` holds now (none unless it is booked or attended)."""
    if appt.status not in HOLDING:
        return ()
    ends = appt.starts_at + timedelta(minutes=carriers.held_minutes(appt.kind, appt.minutes))
    named = (("clinician", appt.clinician), ("room", appt.room))
    return tuple(Hold(f"{kind}:{name}", appt.starts_at, ends, appt.case_id, appt.id) for kind, name in named if name)


def hold_changes(
    case_id: str, before: CaseFacts | None, after: CaseFacts, carriers: AppointmentFacts | None
) -> HoldChanges:
    """How the holds of the case change when its facts go from ``before`` (None: a new case) to ``after``.

    Cheap when no appointment fact was added (a move, a payment): the facts are compared by the
    entries appended, and appointments are only folded when one of them carries an appointment.
    """
    if carriers is None or not _touches_appointments(before, after, carriers):
        return NO_CHANGES
    was = appointments(case_id, before, carriers) if before is not None else {}
    release: list[str] = []
    hold: list[Hold] = []
    for appt in appointments(case_id, after, carriers).changed_since(was):
        appt_id = appt.id
        old = holds_of(was[appt_id], carriers) if appt_id in was else ()
        new = holds_of(appt, carriers)
        if old != new:
            if old:
                release.append(appt_id)
            hold.extend(new)
    return HoldChanges(case_id, tuple(release), tuple(hold)) if release or hold else NO_CHANGES


def wanted_holds(
    case_id: str, facts: CaseFacts, carriers: AppointmentFacts | None, kind: str, parsed: JSONObject, now: datetime
) -> tuple[Hold, ...]:
    """The holds recording the fact ``parsed`` of ``kind`` would add to the case (to check before writing)."""
    if carriers is None or kind not in (carriers.booking, carriers.update):
        return ()
    after = CaseFacts(fold_fact(facts.raw, kind, now, "", parsed))
    return hold_changes(case_id, facts, after, carriers).hold


def check_room(carriers: AppointmentFacts | None, kind: str, parsed: Mapping[str, Any]) -> None:
    """A booking of a kind that takes a room names one (``InvalidFact`` otherwise)."""
    if carriers is None or kind != carriers.booking:
        return
    if parsed.get("kind") in carriers.rooms and not parsed.get("room"):
        appt_kind = str(parsed["kind"]).replace("_", " ")
        raise InvalidFact(kind, "room", f"is required for a {appt_kind}: give the id of the room it takes")


def taken_blockers(
    wanted: Sequence[Hold], taken: Sequence[Hold], time_text: Callable[[datetime], str]
) -> list[Blocker]:
    """One blocker per held time in ``taken`` that overlaps ``wanted``: the resource and the time, nothing else.

    ``taken`` comes from the store and names the case holding it; the blocker does not. ``time_text``
    writes a time as the practice reads it (``PracticeCalendar.time_text``: ``2026-03-09 10:00 EDT``).
    """
    blockers: list[Blocker] = []
    seen: set[tuple[str, datetime, datetime]] = set()
    for other in sorted(taken, key=lambda h: (h.resource, h.starts_at)):
        key = (other.resource, other.starts_at, other.ends_at)
        if key in seen or not any(w.overlaps(other) for w in wanted):
            continue
        seen.add(key)
        kind, name = other.resource.split(":", 1)
        start, end = time_text(other.starts_at), time_text(other.ends_at)
        blockers.append(Blocker(
            f"{kind}_unavailable",
            f"{kind} {name} is already booked from {start} to {end}; choose another time or another {kind}",
            guard="slots",
            facts=(("resource", other.resource), ("taken_from", start), ("taken_until", end)),
        ))
    return blockers


def _touches_appointments(before: CaseFacts | None, after: CaseFacts, carriers: AppointmentFacts) -> bool:
    """Whether the facts appended between ``before`` and ``after`` include an appointment's (or it is new)."""
    new = after.raw.get("facts", ())
    if before is None:
        return any(f["kind"] in (carriers.booking, carriers.update) for f in new)
    old = before.raw.get("facts", ())
    if new is old:
        return False
    return any(f["kind"] in (carriers.booking, carriers.update) for f in new[len(old):])
