"""Appointments: booked, rescheduled, cancelled or missed, folded from a case's facts.

A workflow that books appointments names the two fact kinds that carry
them (``AppointmentFacts``): a booking, and a change naming a booking
(reschedule, cancel, no-show, attended), with the kinds that take a room and
how long a kind holds its clinician and room (``kapflow.domain.slots``).
Appointment ids are assigned by
booking order within the case (``a1``, ``a2``, ...), so the view is a pure
function of the facts and the same on every replay. The calendar ``uid`` adds
the case id, and ``sequence`` counts changes (RFC 5545 SEQUENCE).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from kapflow.domain.case import CaseFacts, FactEntry, StoredView
from kapflow.domain.entries import to_iso

ACTIONS = ("reschedule", "cancel", "no_show", "attended")


@dataclass(frozen=True)
class AppointmentFacts:
    """The fact kinds that carry a workflow's appointments, and the appointment kinds it books.

    ``booking`` facts have ``kind``, ``starts_at`` (ISO 8601 with a zone), ``minutes``,
    ``clinician`` (an id), ``room`` (an id; required for the kinds in ``rooms``) and
    optionally ``location``; ``update`` facts name a booking's id (``appointment``) and an
    ``action`` of ``ACTIONS``, with a new ``starts_at`` to reschedule.

    ``holds``: (kind, minutes) pairs for the kinds that hold their clinician and room for
    a set time whatever the appointment's own length; other kinds hold them for their length.
    """

    kinds: tuple[str, ...]
    booking: str = "appointment"
    update: str = "appointment_update"
    rooms: tuple[str, ...] = ()  # the kinds that take a room: a booking of one must name it
    holds: tuple[tuple[str, int], ...] = ()
    # (kind, trigger) pairs: the trigger an appointment of ``kind`` leads to when it begins (an evaluation
    # starts with ``start_evaluation``); its blockers say whether the appointment is ready. Kinds not named
    # lead to no trigger (their readiness is not judged), nor do kinds whose trigger a version of the workflow
    # no longer has (a version that drops a step need not restate this).
    starts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        named = {*self.rooms, *(kind for kind, _ in self.holds), *(kind for kind, _ in self.starts)}
        unknown = sorted(named - set(self.kinds))
        if unknown:
            raise ValueError(f"rooms, holds and starts name kinds this workflow does not book: {', '.join(unknown)}")
        if any(minutes <= 0 for _, minutes in self.holds):
            raise ValueError("a kind holds its clinician and room for a positive number of minutes")

    def held_minutes(self, kind: str, minutes: int) -> int:
        """How long an appointment of ``kind`` lasting ``minutes`` holds its clinician and room."""
        for held, span in self.holds:
            if held == kind:
                return span
        return minutes

    def trigger_of(self, kind: str) -> str | None:
        """The trigger an appointment of ``kind`` leads to when it begins, if the workflow names one."""
        for named, trigger in self.starts:
            if named == kind:
                return trigger
        return None


STANDARD = AppointmentFacts(kinds=())
"""The usual fact kinds (``appointment``, ``appointment_update``), for guards that look at any kind."""


class Appointment(NamedTuple):
    """One appointment as its facts make it now (a named tuple: every command folds them afresh)."""

    id: str
    case_id: str
    kind: str
    starts_at: datetime
    minutes: int
    status: str  # booked | cancelled | no_show | attended
    sequence: int
    booked_at: datetime
    location: str = "in_person"
    clinician: str = ""  # the clinician's id ("" on bookings made before appointments named one)
    room: str = ""  # the room's id, "" when none was given
    changed_at: datetime | None = None  # when it was booked or last changed (a notice of the change is sent then)

    @property
    def uid(self) -> str:
        return f"{self.case_id}-{self.id}@kapflow"

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.minutes)

    @property
    def active(self) -> bool:
        return self.status == "booked"


def appointments(case_id: str, facts: CaseFacts, carriers: AppointmentFacts = STANDARD) -> dict[str, Appointment]:
    """Every appointment of the case by id, with its changes applied in order (do not modify it).

    Kept with the projection and stepped by each booking or change recorded after it (``CaseFacts.derived``):
    a command on a case of a year's appointments folds one fact, not the year; and kept by the store
    (``stored_appointments``), so a case read cold steps its snapshot rather than folding the year."""
    booking, update = carriers.booking, carriers.update

    def fold(f: CaseFacts) -> dict[str, Appointment]:
        view: dict[str, Appointment] = {}
        for fact in f.of_kinds((booking, update)):
            _take(case_id, booking, view, fact)
        return view

    def step(before: dict[str, Appointment], fact: FactEntry) -> dict[str, Appointment]:
        view = dict(before)  # the view before is the projection before's: left as it was
        _take(case_id, booking, view, fact)
        return view

    return facts.derived((appointments, case_id, booking, update), fold, reads=frozenset((booking, update)),
                         step=step, stored=lambda: stored_appointments(case_id, carriers))


VIEW_VERSION = 1
"""Of the appointments' fold as the store keeps it (``stored_appointments``): raised when the fold changes."""


def stored_appointments(case_id: str, carriers: AppointmentFacts) -> StoredView[dict[str, Appointment]]:
    """How the store keeps a case's appointments: each as a list of its fields but the case's id."""

    def decode(body: list[list[object]]) -> dict[str, Appointment]:
        return {str(a[0]): _decoded(case_id, a) for a in body}

    return StoredView(f"appointments/{VIEW_VERSION}:{carriers.booking}:{carriers.update}", _encoded, decode)


def _encoded(view: dict[str, Appointment]) -> list[list[object]]:
    return [[a.id, a.kind, a.starts_at.isoformat(), a.minutes, a.status, a.sequence, to_iso(a.booked_at), a.location,
             a.clinician, a.room, to_iso(a.changed_at) if a.changed_at is not None else None] for a in view.values()]


def _decoded(case_id: str, a: list[object]) -> Appointment:
    appt_id, kind, starts, minutes, status, sequence, booked, location, clinician, room, changed = a
    if not (isinstance(minutes, int) and isinstance(sequence, int) and status in _STATUSES):
        raise ValueError("not an appointment as the store keeps it")
    return Appointment(str(appt_id), case_id, str(kind), datetime.fromisoformat(str(starts)), minutes, str(status),
                       sequence, datetime.fromisoformat(str(booked)), str(location), str(clinician), str(room),
                       datetime.fromisoformat(str(changed)) if changed is not None else None)


_STATUSES = frozenset(("booked", "cancelled", "no_show", "attended"))


def _take(case_id: str, booking: str, view: dict[str, Appointment], fact: FactEntry) -> None:
    """Apply one booking or change to ``view``, in place."""
    if fact.kind == booking:
        appt_id = f"a{len(view) + 1}"
        data = fact.data
        # Positional, in field order: id, case_id, kind, starts_at, minutes, status, sequence,
        # booked_at, location, clinician, room, changed_at (keywords cost a third more, on every command that reads
        # them).
        view[appt_id] = Appointment(
            appt_id, case_id, str(data["kind"]), datetime.fromisoformat(str(data["starts_at"])),
            int(data["minutes"]), "booked", 0, fact.at, str(data.get("location") or "in_person"),
            str(data.get("clinician") or ""), str(data.get("room") or ""), fact.at,
        )
    elif fact.data["appointment"] in view:
        view[str(fact.data["appointment"])] = _apply(view[str(fact.data["appointment"])], fact)


def _apply(appt: Appointment, fact: FactEntry) -> Appointment:
    change = fact.data
    action = change["action"]
    if action == "reschedule":
        starts = datetime.fromisoformat(str(change["starts_at"]))
        return appt._replace(starts_at=starts, status="booked", sequence=appt.sequence + 1, changed_at=fact.at)
    status = {"cancel": "cancelled", "no_show": "no_show", "attended": "attended"}[str(action)]
    return appt._replace(status=status, sequence=appt.sequence + 1, changed_at=fact.at)


def upcoming(
    case_id: str, facts: CaseFacts, kind: str, now: datetime, carriers: AppointmentFacts = STANDARD
) -> list[Appointment]:
    """Active appointments of ``kind`` starting now or later, soonest first."""
    return sorted(_ahead(case_id, facts, kind, now, carriers), key=lambda a: a.starts_at)


def has_upcoming(
    case_id: str, facts: CaseFacts, kind: str, now: datetime, carriers: AppointmentFacts = STANDARD
) -> bool:
    """Whether an active appointment of ``kind`` starts now or later (a guard's question: no sorting)."""
    return any(True for _ in _ahead(case_id, facts, kind, now, carriers))


def _ahead(
    case_id: str, facts: CaseFacts, kind: str, now: datetime, carriers: AppointmentFacts
) -> Iterator[Appointment]:
    return (
        a for a in appointments(case_id, facts, carriers).values() if a.kind == kind and a.active and a.starts_at >= now
    )
