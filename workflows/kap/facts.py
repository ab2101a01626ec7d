"""The facts the KAP pathway records, with their validation rules."""

from __future__ import annotations

from datetime import date, datetime

from kapflow.domain.facts import (
    Boolean,
    Choice,
    ChoiceList,
    Day,
    Email,
    FactSpec,
    Integer,
    Moment,
    Money,
    Phone,
    Text,
)
from kapflow.domain.payload import JSONObject

CONDITIONS = ("depression", "treatment_resistant_depression", "anxiety", "ptsd", "emotional_trauma")

HARD_EXCLUSIONS = (
    "under_18",
    "uncontrolled_hypertension",
    "uncontrolled_glaucoma",
    "severe_breathing_problems",
    "ketamine_allergy",
    "uncontrolled_substance_use_disorder",
    "acute_mania_or_mixed_state",
    "primary_psychotic_disorder_history",
    "active_suicidal_ideation",
)

REVIEW_FLAGS = (
    "pregnancy",
    "liver_disease",
    "cystitis",
    "hyperthyroidism",
    "prior_ketamine_use",
    "benzodiazepines",
    "non_benzodiazepine_hypnotics",
    "psychostimulants",
    "maois",
)

# Minutes each appointment kind lasts (default, allowed range).
APPOINTMENT_MINUTES: dict[str, tuple[int, int, int]] = {
    "evaluation": (60, 45, 90),
    "intention_setting": (60, 45, 90),
    "kap_session": (135, 120, 180),
    "integration_session": (60, 45, 90),
    "prescriber_checkin": (30, 15, 60),
    "reassessment": (60, 30, 90),
}

QUESTIONNAIRE_MAX = {"PHQ-9": 27, "GAD-7": 21}
PAYMENT_PURPOSES = ("evaluation_fee", "psychotherapy", "other")


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


def _expires_after_issue(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if str(d["expires_on"]) <= str(d["issued_on"]):
        return ("expires_on", "must be after issued_on: a prescription cannot expire before it was issued")
    return None


def _systolic_above_diastolic(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if int(str(d["systolic"])) <= int(str(d["diastolic"])):
        return ("diastolic", "must be lower than systolic")
    return None


def _score_in_range(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    top = QUESTIONNAIRE_MAX[str(d["instrument"])]
    if not 0 <= int(str(d["score"])) <= top:
        return ("score", f"a {d['instrument']} total is between 0 and {top}")
    return None


def _plan_sessions(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["action"] in ("set", "extend") and d.get("sessions") is None:
        return ("sessions", f"is required to {d['action']} a plan")
    if d["action"] == "end_early" and d.get("sessions") is not None:
        return ("sessions", "is not given when ending a plan early")
    return None


def _minutes_for_kind(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    default, low, high = APPOINTMENT_MINUTES[str(d["kind"])]
    if d.get("minutes") is None:
        d["minutes"] = default
    elif not low <= int(str(d["minutes"])) <= high:
        return ("minutes", f"a {d['kind']} lasts {low}-{high} minutes")
    return None


INQUIRY = FactSpec(
    "inquiry",
    (
        Text("first_name", max_chars=100),
        Text("last_name", max_chars=100),
        Day("date_of_birth"),
        Email("email", required=False),
        Phone("phone", required=False),
        ChoiceList("concerns", CONDITIONS),
        Choice("preferred_contact", ("email", "sms", "phone"), required=False, default="email"),
        Text("message", required=False),
    ),
    (_contact_given, _born_in_the_past),
    "a KAP inquiry form: who asks, how to reach them, what brings them",
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

PRESCRIPTION = FactSpec(
    "prescription",
    (
        Text("prescriber", max_chars=200),
        Text("medication", max_chars=200, required=False, default="ketamine troche"),
        Integer("dose_mg", low=1, high=1000, unit=" mg", required=False),
        Day("issued_on"),
        Day("expires_on"),
    ),
    (_expires_after_issue,),
    "a prescription issued by the prescriber",
)

CONSENT = FactSpec(
    "consent",
    (
        Text("form", max_chars=200, required=False, default="KAP informed consent"),
        Text("form_version", max_chars=50),
        Day("signed_on"),
    ),
    description="informed consent signed by the client",
)

CONSENT_WITHDRAWN = FactSpec(
    "consent_withdrawn",
    (Day("withdrawn_on"), Text("note", required=False)),
    description="the client withdrew consent; KAP sessions stop until a new consent is signed",
)

SCREENING = FactSpec(
    "screening",
    (
        ChoiceList("exclusions", HARD_EXCLUSIONS),
        ChoiceList("flags", REVIEW_FLAGS),
        Boolean("flags_reviewed", required=False, default=False),
        Text("note", required=False),
    ),
    description="the prescriber's screening: hard exclusions found and flags for review",
)

VITALS = FactSpec(
    "vitals",
    (
        Choice("phase", ("pre_dose", "post_dose", "other")),
        Integer("systolic", low=60, high=260, unit=" mmHg"),
        Integer("diastolic", low=30, high=160, unit=" mmHg"),
        Integer("heart_rate", low=25, high=250, unit=" bpm", required=False),
        Integer("spo2", low=50, high=100, unit=" %", required=False),
        Moment("measured_at", required=False),
    ),
    (_systolic_above_diastolic,),
    "blood pressure and other vital signs",
)

FASTING = FactSpec(
    "fasting",
    (Boolean("attested"), Integer("hours", low=0, high=72, required=False)),
    description="the client's attestation of fasting before dosing",
)

ESCORT = FactSpec(
    "escort",
    (Text("name", max_chars=200), Phone("phone"), Text("relationship", max_chars=100, required=False)),
    description="who takes the client home after a KAP session",
)

CLINICIAN_PRESENT = FactSpec(
    "clinician_present",
    (Text("clinician", max_chars=200), Text("credentials", max_chars=100, required=False)),
    description="the clinician present for the dosing",
)

DISCHARGE_CHECK = FactSpec(
    "discharge_check",
    (Boolean("stable"), Boolean("no_driving_acknowledged"), Text("note", required=False)),
    description="the client is stable and knows not to drive until the next day",
)

QUESTIONNAIRE = FactSpec(
    "questionnaire",
    (
        Choice("instrument", tuple(QUESTIONNAIRE_MAX)),
        Integer("score", low=0, high=27),
        Day("completed_on", required=False),
    ),
    (_score_in_range,),
    "a PHQ-9 or GAD-7 total score",
)

TREATMENT_PLAN = FactSpec(
    "treatment_plan",
    (
        Choice("action", ("set", "extend", "end_early")),
        Integer("sessions", low=1, high=24, required=False),
        Text("reason", required=False),
    ),
    (_plan_sessions,),
    "the tailored plan: set the number of KAP sessions, extend it, or end it early",
)

APPOINTMENT = FactSpec(
    "appointment",
    (
        Choice("kind", tuple(APPOINTMENT_MINUTES)),
        Moment("starts_at"),
        Integer("minutes", low=15, high=240, required=False),
        Choice("location", ("in_person",), required=False, default="in_person"),
        Text("with_clinician", max_chars=200, required=False),
    ),
    (_minutes_for_kind,),
    "an appointment of one of the pathway's kinds (in person)",
)

def _reschedule_needs_time(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["action"] == "reschedule" and d.get("starts_at") is None:
        return ("starts_at", "is required to reschedule")
    if d["action"] != "reschedule" and d.get("starts_at") is not None:
        return ("starts_at", f"is only given to reschedule, not to {str(d['action']).replace('_', ' ')}")
    return None


APPOINTMENT_UPDATE = FactSpec(
    "appointment_update",
    (
        Text("appointment", max_chars=20, pattern=r"a[1-9][0-9]{0,5}", hint="give an appointment id such as a1"),
        Choice("action", ("reschedule", "cancel", "no_show", "attended")),
        Moment("starts_at", required=False),
        Text("reason", required=False),
    ),
    (_reschedule_needs_time,),
    "a change to a booked appointment: reschedule, cancel, mark no-show or attended",
)

PRESCRIBER_CHECKIN = FactSpec(
    "prescriber_checkin",
    (Text("prescriber", max_chars=200), Text("note", required=False)),
    description="a prescriber check-in (needed after a long gap between sessions)",
)

ALL_SPECS = (
    INQUIRY, PAYMENT, PRESCRIPTION, CONSENT, CONSENT_WITHDRAWN, SCREENING, VITALS, FASTING, ESCORT,
    CLINICIAN_PRESENT, DISCHARGE_CHECK, QUESTIONNAIRE, TREATMENT_PLAN, APPOINTMENT, APPOINTMENT_UPDATE,
    PRESCRIBER_CHECKIN,
)
