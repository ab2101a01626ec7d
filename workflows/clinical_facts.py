"""Facts every clinical pathway of the practice records with the same meaning, and their validation rules.

An inquiry, a payment, a consent and its withdrawal, a PHQ-9 or GAD-7 answered
item by item (its total and band computed, ``kapflow.workflows.measures``), an
appointment and a change to it mean the same thing in the KAP pathway and in
outpatient psychotherapy, so both record them with these specs. Where a
pathway names its own vocabulary (the concerns an inquiry may give, the
appointment kinds and their lengths, the consent form's default title), a
small factory builds the spec from that vocabulary: the fields and the
checks stay one definition.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from kapflow.codesets.icd10cm import ICD10CM_RELEASE, diagnosis_problem, normalize
from kapflow.domain.billing import BILLED_MINUTES
from kapflow.domain.facts import (
    Boolean,
    Choice,
    ChoiceList,
    CrossCheck,
    Day,
    Derived,
    Email,
    FactSpec,
    FieldError,
    Integer,
    IntegerList,
    Moment,
    Money,
    Phone,
    Text,
)
from kapflow.domain.payload import JSONObject, JSONValue
from kapflow.domain.workflow import ClientFields, FactKind
from kapflow.workflows.measures import INSTRUMENTS, items_problem, scored

QUESTIONNAIRE_MAX = {name: inst.max_total for name, inst in INSTRUMENTS.items()}
"""The check-in instruments and the highest total each can reach."""

PAYMENT_PURPOSES = ("evaluation_fee", "psychotherapy", "other")

AppointmentMinutes = Mapping[str, tuple[int, int, int]]
"""Appointment kind -> (default minutes, shortest, longest)."""


def _contact_given(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if not d.get("email") and not d.get("phone"):
        return ("email", "give an email address or a phone number so the practice can answer")
    return None


def _born_in_the_past(d: JSONObject, now: datetime) -> tuple[str, str] | None:
    born = date.fromisoformat(str(d["date_of_birth"]))
    if born > now.date():
        return ("date_of_birth", "is in the future")
    if born.year < now.year - 120:
        return ("date_of_birth", "is more than 120 years ago")
    return None


def _items_complete(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    """One answer per item of the instrument, each in its range (the total is computed from them)."""
    items = d["items"]
    problem = items_problem(str(d["instrument"]), items if isinstance(items, list) else [])
    return ("items", problem) if problem else None


def _scored(d: JSONObject) -> Mapping[str, JSONValue]:
    return scored(d)


def _reschedule_needs_time(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["action"] == "reschedule" and d.get("starts_at") is None:
        return ("starts_at", "is required to reschedule")
    if d["action"] != "reschedule" and d.get("starts_at") is not None:
        return ("starts_at", f"is only given to reschedule, not to {str(d['action']).replace('_', ' ')}")
    return None


def _late_entry_has_reason(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    """A late entry (a time already past, recorded after the fact) says why; only new times are late."""
    if not d.get("late_entry"):
        return None
    if d.get("action") not in (None, "reschedule"):
        return ("late_entry", f"is only given to book or reschedule, not to {str(d['action']).replace('_', ' ')}")
    if d.get("reason") is None:
        return ("reason", "is required for a late entry: say why a time already past is recorded now")
    return None


def _minutes_for_kind(minutes: AppointmentMinutes) -> CrossCheck:
    """The check filling in a kind's default length, or refusing a length outside its range."""

    def check(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
        default, low, high = minutes[str(d["kind"])]
        if d.get("minutes") is None:
            d["minutes"] = default
        elif not low <= int(str(d["minutes"])) <= high:
            return ("minutes", f"a {d['kind']} lasts {low}-{high} minutes")
        return None

    return check


def inquiry_spec(concerns: Sequence[str], description: str) -> FactSpec:
    """An inquiry form (the intake of a case) whose ``concerns`` are the pathway's own list."""
    return FactSpec(
        "inquiry",
        (
            Text("first_name", max_chars=100),
            Text("last_name", max_chars=100),
            Day("date_of_birth"),
            Email("email", required=False),
            Phone("phone", required=False),
            ChoiceList("concerns", concerns),
            Choice("preferred_contact", ("email", "sms", "phone"), required=False, default="email"),
            Text("message", required=False),
        ),
        (_contact_given, _born_in_the_past),
        description,
    )


def consent_spec(default_form: str) -> FactSpec:
    """Consent signed by the client; ``default_form`` is the form's title when none is given."""
    return FactSpec(
        "consent",
        (
            Text("form", max_chars=200, required=False, default=default_form),
            Text("form_version", max_chars=50),
            Day("signed_on"),
        ),
        description="informed consent signed by the client",
    )


_RESOURCE_ID = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}"
_RESOURCE_HINT = "give the {0}'s id: letters, digits, '.', '_', '@' or '-', e.g. {1}"


def appointment_spec(minutes: AppointmentMinutes) -> FactSpec:
    """An appointment of one of the pathway's kinds, each with its default length and allowed range."""
    return FactSpec(
        "appointment",
        (
            Choice("kind", tuple(minutes)),
            Moment("starts_at"),
            Integer("minutes", low=15, high=240, required=False),
            Choice("location", ("in_person",), required=False, default="in_person"),
            Text("with_clinician", max_chars=200, required=False),
            # Who and where, as ids: a clinician or room is held for the appointment's time, never twice at once.
            Text("clinician", max_chars=100, pattern=_RESOURCE_ID, hint=_RESOURCE_HINT.format("clinician", "dr-lee")),
            Text("room", max_chars=100, pattern=_RESOURCE_ID, hint=_RESOURCE_HINT.format("room", "room-2"),
                 required=False),
            # A start already past is refused unless recorded as a late entry, with its reason.
            Boolean("late_entry", required=False, default=False),
            Text("reason", required=False),
        ),
        (_minutes_for_kind(minutes), _late_entry_has_reason),
        "an appointment of one of the pathway's kinds (in person)",
    )


PAYMENT = FactSpec(
    "payment",
    (
        Money("amount"),
        Choice("purpose", PAYMENT_PURPOSES),
        Choice("method", ("card", "cash", "check", "hsa_fsa", "other"), required=False, default="card"),
        Text("reference", max_chars=100, required=False),
    ),
    description="a payment received, and what it pays for",
)

CONSENT_WITHDRAWN = FactSpec(
    "consent_withdrawn",
    (Day("withdrawn_on"), Text("note", required=False)),
    description="the client withdrew consent; sessions that need it stop until a new consent is signed",
)

QUESTIONNAIRE = FactSpec(
    "questionnaire",
    (
        Choice("instrument", tuple(INSTRUMENTS)),
        IntegerList("items", low=0, high=max(i.item_max for i in INSTRUMENTS.values()), entry="item"),
        Day("completed_on", required=False),
    ),
    (_items_complete,),
    "a PHQ-9 or GAD-7 answered item by item (0-3 each); its total, severity band and LOINC code are computed",
    derived=Derived(
        ("score", "severity", "loinc"), _scored,
        "give the answer to each item as items, a list of 0-3 (9 for a PHQ-9, 7 for a GAD-7)",
    ),
)

def _minutes_when_attended(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d.get(BILLED_MINUTES) is not None and d["action"] != "attended":
        return (BILLED_MINUTES, "is given only when marking an appointment attended")
    return None


APPOINTMENT_UPDATE = FactSpec(
    "appointment_update",
    (
        Text("appointment", max_chars=20, pattern=r"a[1-9][0-9]{0,5}", hint="give an appointment id such as a1"),
        Choice("action", ("reschedule", "cancel", "no_show", "attended")),
        Moment("starts_at", required=False),
        Text("reason", required=False),
        Boolean("late_entry", required=False, default=False),
        # How long the billed service lasted, when not its usual length (psychotherapy's time rule).
        Integer(BILLED_MINUTES, low=1, high=480, unit=" min", required=False),
    ),
    (_reschedule_needs_time, _late_entry_has_reason, _minutes_when_attended),
    "a change to a booked appointment: reschedule, cancel, mark no-show or attended",
)

INQUIRY_CLIENT = ClientFields(
    name=("first_name", "last_name"), in_messages=("first_name",), addresses={"email": "email", "sms": "phone"},
    preference="preferred_contact",
)
"""Who the client of an ``inquiry_spec`` intake is: named by first and last name, greeted by the first,
reached by email or SMS at the addresses the form gives, on the one they prefer."""


def fact_kinds(
    specs: Iterable[FactSpec],
    recorders: Mapping[str, frozenset[str]],
    guards: Mapping[str, tuple[str, ...]],
    on_closed_case: Collection[str],
) -> dict[str, FactKind]:
    """A workflow's ``facts``: each spec with the roles that record it, its guards, and whether a closed
    case still takes it."""
    return {
        spec.kind: FactKind(spec, recorders[spec.kind], guards.get(spec.kind, ()),
                            on_closed_case=spec.kind in on_closed_case)
        for spec in specs
    }


# ------------------------------------------------------------------ billing: diagnoses, the client's address


class DiagnosisCode(Text):
    """An ICD-10-CM code to its full (billable) specificity, in CMS's code set; kept in its usual form (F33.1)."""

    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(name, max_chars=10, **kw)

    def parse(self, value: Any) -> JSONValue:
        code = normalize(str(super().parse(value)))
        problem = diagnosis_problem(code)
        if problem is not None:
            raise FieldError(problem)
        return code


def _not_diagnosed_later(d: JSONObject, now: datetime) -> tuple[str, str] | None:
    if date.fromisoformat(str(d["diagnosed_on"])) > now.date():
        return ("diagnosed_on", "is in the future: date a diagnosis on the day it was made")
    return None


DIAGNOSIS = FactSpec(
    "diagnosis",
    (DiagnosisCode("code"), Day("diagnosed_on"), Choice("status", ("active", "resolved"), required=False,
                                                       default="active"), Text("note", required=False)),
    (_not_diagnosed_later,),
    f"a diagnosis (ICD-10-CM, {ICD10CM_RELEASE}) with the date it was made; resolved ones stay on record",
)

US_STATES = ("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
             "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
             "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
             "PR", "GU", "VI", "AS", "MP")

CLIENT_ADDRESS = FactSpec(
    "client_address",
    (
        Text("street", max_chars=200),
        Text("unit", max_chars=100, required=False),
        Text("city", max_chars=100),
        Choice("state", US_STATES),
        Text("postal_code", max_chars=10, pattern=r"[0-9]{5}(-[0-9]{4})?", hint="give a ZIP code, e.g. 02110"),
    ),
    description="the client's postal address, for superbills and statements",
)

CLIENT_ADDRESS_LINES = ("{street}, {unit}", "{city}, {state} {postal_code}")
"""How the address is written on a superbill: the street (and unit), then the city, state and ZIP."""
