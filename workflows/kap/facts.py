"""The facts the KAP pathway records, with their validation rules."""

from __future__ import annotations

from datetime import datetime

from kapflow.domain.facts import Boolean, Choice, ChoiceList, Day, FactSpec, Integer, Moment, Phone, Text
from kapflow.domain.payload import JSONObject
from kapflow.workflows.clinical_facts import APPOINTMENT_UPDATE as APPOINTMENT_UPDATE
from kapflow.workflows.clinical_facts import CONSENT_WITHDRAWN as CONSENT_WITHDRAWN
from kapflow.workflows.clinical_facts import PAYMENT as PAYMENT
from kapflow.workflows.clinical_facts import PAYMENT_PURPOSES as PAYMENT_PURPOSES
from kapflow.workflows.clinical_facts import QUESTIONNAIRE as QUESTIONNAIRE
from kapflow.workflows.clinical_facts import QUESTIONNAIRE_MAX as QUESTIONNAIRE_MAX
from kapflow.workflows.clinical_facts import appointment_spec, consent_spec, inquiry_spec

# Inquiry, payment, consent (and its withdrawal), questionnaire, appointment and appointment update
# mean the same in every pathway of the practice: their specs live in kapflow.workflows.clinical_facts
# and are named here as before. KAP's own vocabulary (its conditions, appointment kinds, consent form)
# is what it passes to the shared factories.

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


def _expires_after_issue(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if str(d["expires_on"]) <= str(d["issued_on"]):
        return ("expires_on", "must be after issued_on: a prescription cannot expire before it was issued")
    return None


def _systolic_above_diastolic(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if int(str(d["systolic"])) <= int(str(d["diastolic"])):
        return ("diastolic", "must be lower than systolic")
    return None


def _plan_sessions(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["action"] in ("set", "extend") and d.get("sessions") is None:
        return ("sessions", f"is required to {d['action']} a plan")
    if d["action"] == "end_early" and d.get("sessions") is not None:
        return ("sessions", "is not given when ending a plan early")
    if d["action"] == "end_early" and d.get("integration_sessions") is not None:
        return ("integration_sessions", "is not given when ending a plan early")
    return None


INQUIRY = inquiry_spec(CONDITIONS, "a KAP inquiry form: who asks, how to reach them, what brings them")

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

CONSENT = consent_spec("KAP informed consent")

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

TREATMENT_PLAN = FactSpec(
    "treatment_plan",
    (
        Choice("action", ("set", "extend", "end_early")),
        Integer("sessions", low=1, high=24, required=False),
        # The integration sessions expected besides (for the good faith estimate); none if not given.
        Integer("integration_sessions", low=0, high=48, required=False),
        Text("reason", required=False),
    ),
    (_plan_sessions,),
    "the tailored plan: set the number of KAP sessions, extend it, or end it early",
)

APPOINTMENT = appointment_spec(APPOINTMENT_MINUTES)

PRESCRIBER_CHECKIN = FactSpec(
    "prescriber_checkin",
    (Text("prescriber", max_chars=200), Text("note", required=False)),
    description="a prescriber check-in (needed after a long gap between sessions)",
)

ADVERSE_EVENT_TYPES = (
    "blood_pressure_rise",
    "nausea_or_vomiting",
    "excessive_sedation",
    "distressing_dissociation",
    "fall",
    "allergic_reaction",
    "other",
)

ADVERSE_EVENT_SEVERITIES = ("mild", "moderate", "severe", "serious")
"""``serious`` ends the session and holds the case for the prescriber's safety review."""


def _other_described(d: JSONObject, _now: datetime) -> tuple[str, str] | None:
    if d["type"] == "other" and not d.get("details"):
        return ("details", "is required when the type is other: say what happened")
    return None


ADVERSE_EVENT = FactSpec(
    "adverse_event",
    (
        Choice("type", ADVERSE_EVENT_TYPES),
        Choice("severity", ADVERSE_EVENT_SEVERITIES),
        Moment("onset"),
        Text("action_taken", max_chars=2000),
        Text("details", max_chars=2000, required=False),
    ),
    (_other_described,),
    "an adverse event during or after dosing: type, severity, onset and the action taken",
)

ALL_SPECS = (
    INQUIRY, PAYMENT, PRESCRIPTION, CONSENT, CONSENT_WITHDRAWN, SCREENING, VITALS, FASTING, ESCORT,
    CLINICIAN_PRESENT, DISCHARGE_CHECK, QUESTIONNAIRE, TREATMENT_PLAN, APPOINTMENT, APPOINTMENT_UPDATE,
    PRESCRIBER_CHECKIN, ADVERSE_EVENT,
)
