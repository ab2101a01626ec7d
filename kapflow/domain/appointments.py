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

from collections.abc import Collection, ItemsView, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple, cast

from kapflow.domain.case import CaseFacts, FactEntry, Refold, StoredView, unreadable_snapshot
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


Row = tuple[object, ...]
"""An appointment as the store's snapshot keeps it (``_encoded``): its fields but the case's id, in field order (a
tuple: of values only, the cycle collector stops visiting it, where a kept year-old case has dozens)."""


class AppointmentBook(Mapping[str, Appointment]):
    """A case's appointments by id, in booking order (``appointments``; not to be changed).

    Those a store's snapshot held are decoded when something reads them (``Row``): a year-old case read cold has
    dozens attended, and a command asks for the ones still booked (``select``), or for one by its id, or for those
    its facts changed (``changed_since``). A new book is made for each booking or change, sharing the others.
    """

    __slots__ = ("_case_id", "_items", "_refold")

    def __init__(self, case_id: str, items: dict[str, Appointment | Row],
                 refold: Refold[AppointmentBook] | None = None) -> None:
        self._case_id = case_id
        self._items = items
        self._refold = refold  # where a row that cannot be read is read from: a book with rows of a snapshot has one

    def __getitem__(self, appt_id: str) -> Appointment:
        found = self._items[appt_id]
        if isinstance(found, Appointment):
            return found
        try:
            appt = _decoded(self._case_id, found)
        except ValueError:
            return self._refolded()[appt_id]
        self._items[appt_id] = appt  # two threads decoding one row at once store equal values
        return appt

    def read_for(self, facts: CaseFacts) -> None:
        """Note ``facts`` (whose book this is), for rows that cannot be read (``appointments``)."""
        if self._refold is not None:
            self._refold.note(facts)

    def _refolded(self) -> AppointmentBook:
        """This book as a fold of the facts of the projection that asked for it last makes it: every appointment,
        which a snapshot edited by hand may not even hold."""
        if self._refold is None:
            raise unreadable_snapshot(f"the appointments of case {self._case_id}")
        folded = self._refold()._items
        self._items.update(folded)
        for appt_id in [k for k in self._items if k not in folded]:
            del self._items[appt_id]
        return self

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))  # the ids as they are: a row that cannot be read refolds the book

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, appt_id: object) -> bool:
        return appt_id in self._items

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.read_all() == dict(other.items())
        return NotImplemented

    def items(self) -> ItemsView[str, Appointment]:
        return self.read_all().items()

    def values(self) -> ValuesView[Appointment]:
        return self.read_all().values()

    def read_all(self) -> dict[str, Appointment]:
        """Every appointment, read: a row that cannot be read refolds the whole book first (``_refolded``)."""
        for appt_id in list(self._items):
            if appt_id in self._items:
                self[appt_id]
        return cast(dict[str, Appointment], dict(self._items))

    __hash__ = None  # type: ignore[assignment]  # compared by value, like the dict it stands for

    def __repr__(self) -> str:
        return f"AppointmentBook({dict(self.items())!r})"

    def select(self, statuses: Collection[str], kind: str | None = None) -> list[Appointment]:
        """The appointments with one of ``statuses`` (of ``kind``, if given), decoding only those."""
        items = list(self._items.items())  # as they are now: a row another thread cannot read refolds the book
        wanted = [k for k, v in items if (v.status if isinstance(v, Appointment) else v[4]) in statuses
                  and (kind is None or (v.kind if isinstance(v, Appointment) else v[1]) == kind)]
        return [self[k] for k in wanted]

    def changed_since(self, before: Mapping[str, Appointment]) -> list[Appointment]:
        """The appointments booked or changed since ``before`` (this case's book before: a command's facts since)."""
        if isinstance(before, AppointmentBook):
            was = before._items
            return [self[k] for k in [k for k, v in list(self._items.items()) if was.get(k) is not v]
                    if k not in before or before[k] != self[k]]
        return [a for k, a in self.items() if before.get(k) != a]

    def copy(self) -> AppointmentBook:
        """A book to fold a booking or change into (``put``), sharing the appointments: this one is left as it is."""
        return AppointmentBook(self._case_id, dict(self._items), self._refold and self._refold.copy())

    def put(self, appt: Appointment) -> None:
        """Book or change ``appt`` here: only in a book being folded (``appointments``), never in one handed out."""
        self._items[appt.id] = appt

    def rows(self) -> list[Row]:
        """Every appointment as the store's snapshot keeps it: those read from one, as they were."""
        return [v if not isinstance(v, Appointment) else _encoded(v) for v in self._items.values()]


def appointments(case_id: str, facts: CaseFacts, carriers: AppointmentFacts = STANDARD) -> AppointmentBook:
    """Every appointment of the case by id, with its changes applied in order (do not modify it).

    Kept with the projection and stepped by each booking or change recorded after it (``CaseFacts.derived``):
    a command on a case of a year's appointments folds one fact, not the year; and kept by the store
    (``stored_appointments``), so a case read cold steps its snapshot rather than folding the year."""
    booking, update = carriers.booking, carriers.update

    def step(before: AppointmentBook, fact: FactEntry) -> AppointmentBook:
        view = before.copy()  # the view before is the projection before's: left as it was
        _take(case_id, booking, view, fact)
        return view

    book = facts.derived((appointments, case_id, booking, update), partial(_folded, case_id, carriers),
                         reads=frozenset((booking, update)), step=step,
                         stored=lambda: stored_appointments(case_id, carriers))
    book.read_for(facts)
    return book


def _folded(case_id: str, carriers: AppointmentFacts, facts: CaseFacts) -> AppointmentBook:
    """Every appointment of the case, folded from its facts."""
    view = AppointmentBook(case_id, {})
    for fact in facts.of_kinds((carriers.booking, carriers.update)):
        _take(case_id, carriers.booking, view, fact)
    return view


VIEW_VERSION = 1
"""Of the appointments' fold as the store keeps it (``stored_appointments``): raised when the fold changes."""


def stored_appointments(case_id: str, carriers: AppointmentFacts) -> StoredView[AppointmentBook]:
    """How the store keeps a case's appointments: each as a list of its fields but the case's id (``Row``), checked
    as read and decoded when something reads it (``AppointmentBook``)."""

    def decode(body: list[object]) -> AppointmentBook:
        items: dict[str, Appointment | Row] = {}
        for found in body:
            row = _check(found)
            items[str(row[0])] = row
        if len(items) != len(body):
            raise ValueError("an appointment's id is kept once")
        return AppointmentBook(case_id, items, Refold(f"the appointments of case {case_id}",
                                                      partial(_folded, case_id, carriers)))

    return StoredView(f"appointments/{VIEW_VERSION}:{carriers.booking}:{carriers.update}",
                      lambda book: book.rows(), decode)


def _encoded(a: Appointment) -> Row:
    return (a.id, a.kind, a.starts_at.isoformat(), a.minutes, a.status, a.sequence, to_iso(a.booked_at), a.location,
            a.clinician, a.room, to_iso(a.changed_at) if a.changed_at is not None else None)


def _check(row: object) -> Row:
    """What a snapshot's row is checked for as it is read (its instants are read with the rest of it, when asked)."""
    if not (isinstance(row, list) and len(row) == 11 and isinstance(row[0], str) and isinstance(row[1], str)
            and type(row[3]) is int and row[4] in _STATUSES and type(row[5]) is int):
        raise ValueError("not an appointment as the store keeps it")
    return tuple(row)


def _decoded(case_id: str, a: Row) -> Appointment:
    """A row read (its shape was checked as the snapshot was read: ``_check``); ``ValueError`` for a bad instant."""
    appt_id, kind, starts, minutes, status, sequence, booked, location, clinician, room, changed = a
    return Appointment(str(appt_id), case_id, str(kind), datetime.fromisoformat(str(starts)), int(str(minutes)),
                       str(status), int(str(sequence)), datetime.fromisoformat(str(booked)), str(location),
                       str(clinician), str(room), datetime.fromisoformat(str(changed)) if changed is not None
                       else None)


_STATUSES = frozenset(("booked", "cancelled", "no_show", "attended"))


def _take(case_id: str, booking: str, view: AppointmentBook, fact: FactEntry) -> None:
    """Apply one booking or change to ``view``, in place."""
    if fact.kind == booking:
        data = fact.data
        # Positional, in field order: id, case_id, kind, starts_at, minutes, status, sequence,
        # booked_at, location, clinician, room, changed_at (keywords cost a third more, on every command that reads
        # them).
        view.put(Appointment(
            f"a{len(view) + 1}", case_id, str(data["kind"]), datetime.fromisoformat(str(data["starts_at"])),
            int(data["minutes"]), "booked", 0, fact.at, str(data.get("location") or "in_person"),
            str(data.get("clinician") or ""), str(data.get("room") or ""), fact.at,
        ))
    elif (named := str(fact.data["appointment"])) in view:
        view.put(_apply(view[named], fact))


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
    return (a for a in appointments(case_id, facts, carriers).select(_BOOKED, kind) if a.starts_at >= now)


_BOOKED = frozenset(("booked",))
