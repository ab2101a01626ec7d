"""The outpatient psychotherapy pathway as data: the episode of care of a client who is not in KAP.

    inquiry ─book_intake→ intake_booked ─start_intake→ intake_assessment (CPT 90791, 60 min)
    intake_assessment ─complete_intake→ active_treatment │ ─refer_out→ referred (final)
    active_treatment ─start_session→ in_session ─complete_session→ active_treatment (90832/90834/90837 by time)
    in_session ─end_session_early→ active_treatment (not billed)
    active_treatment ─discharge→ discharged (final): the therapist's planned discharge
    active_treatment ─discharge_inactive→ discharged: fired by the worker after 60 days without a session
    inquiry │ intake_booked │ active_treatment ─hold→ on_hold ─resume→ (where it was)
    all but in_session ─withdraw→ withdrawn (final)

A PHQ-9 and a GAD-7 are the intake's baseline, and are due again after every
4 completed sessions: the next session waits for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.workflow import ALL_FACTS, Reminder, State, Threshold, Transition, Workflow
from kapflow.workflows.clinical_facts import INQUIRY_CLIENT, fact_kinds
from kapflow.workflows.clinical_reminders import appointment_notices, appointment_reminders, inquiry_unanswered
from kapflow.workflows.measures import measure_moments, measure_reminders, measures_summary
from kapflow.workflows.psychotherapy import facts as psychotherapy_facts
from kapflow.workflows.psychotherapy.guards import psychotherapy_guards
from kapflow.workflows.safety import GUARDS as SAFETY_GUARDS
from kapflow.workflows.safety import MOMENTS as SAFETY_MOMENTS
from kapflow.workflows.safety import SAFETY_ASSESSMENT, safety_alerts

CLIENT, FRONT_DESK, THERAPIST, BILLING, AUDITOR, SYSTEM = (
    "client", "front_desk", "therapist", "billing", "auditor", "system",
)
ROLES = frozenset({CLIENT, FRONT_DESK, THERAPIST, BILLING, AUDITOR, SYSTEM})
STAFF = frozenset({FRONT_DESK, THERAPIST})

THRESHOLDS: dict[str, Threshold] = {
    "questionnaire_every_sessions": 4,
    "inactivity_days": 60,
    # Psychotherapy CPT codes by time: 90832 from 16 minutes, 90834 from 38, 90837 from 53.
    "min_billable_minutes": 16,
    "cpt_90834_minutes": 38,
    "cpt_90837_minutes": 53,
    "symptom_rise_points": 5,  # a PHQ-9 or GAD-7 total this far above baseline alerts the therapist
    "checkin_every_days": 28,  # check-in questionnaires during treatment, at least this often
}

SESSION = "psychotherapy_session"


def _states(thresholds: Mapping[str, Threshold]) -> tuple[State, ...]:
    # The inactivity discharge is timed from the threshold its guard reads, so the two agree.
    inactivity = timedelta(days=int(thresholds["inactivity_days"]))
    return (
        State(
            "inquiry",
            description="an inquiry form arrived; front desk answers it",
            reminders=(inquiry_unanswered(),),
        ),
        State(
            "intake_booked",
            description="the intake assessment is booked; consent to treatment is signed before it",
        ),
        State("intake_assessment", description="the therapist's intake assessment is under way (90791)"),
        State(
            "active_treatment",
            description="between psychotherapy sessions",
            reminders=(
                Reminder(
                    "questionnaires_due", CLIENT, "email",
                    "Hello {first_name}, please complete your two check-in questionnaires before your next "
                    "session.",
                    after=timedelta(hours=1), while_blocked_by="questionnaires_current",
                    subject="Questionnaires to complete",
                ),
                Reminder(
                    "inactivity_discharge", SYSTEM, "", "",
                    after=inactivity, fires="discharge_inactive",
                    # Discharging late is still right: a worker down for days catches up.
                    grace=timedelta(days=30),
                ),
            ),
        ),
        State("in_session", description="a psychotherapy session is under way"),
        State("on_hold", description="paused; resume returns the case to where it was"),
        State("discharged", final=True, description="the episode of care ended"),
        State("referred", final=True, description="the intake found another service better suited"),
        State("withdrawn", final=True, description="the client left the pathway"),
    )


REMINDERS = (
    *safety_alerts((THERAPIST,)),  # a PHQ-9 answered above 0 on item 9 (workflows/safety.py)
    # An appointment's reminders belong to it, whatever state the case is in at their moment.
    *(r for kind in psychotherapy_facts.APPOINTMENT_MINUTES for r in appointment_reminders(kind)),
    *appointment_notices(),
    Reminder(
        "questionnaires_due_before_session", CLIENT, "email",
        "Hello {first_name}, please complete your two check-in questionnaires before your "
        "appointment on {starts_at}.",
        before_appointment=timedelta(hours=48), appointment_kind=SESSION,
        while_blocked_by="questionnaires_current", subject="Questionnaires to complete",
    ),
)

_HOLDABLE = ("inquiry", "intake_booked", "active_treatment")
_WITHDRAWABLE = (
    "inquiry", "intake_booked", "intake_assessment", "active_treatment", "on_hold",
)  # not in_session: a session under way is completed or ended first, so its visit is on record

TRANSITIONS = (
    Transition("book_intake", ("inquiry",), "intake_booked", frozenset({FRONT_DESK}), ("intake_booked",),
               description="book the intake assessment"),
    Transition("start_intake", ("intake_booked",), "intake_assessment", frozenset({THERAPIST}),
               ("consent_signed",), description="begin the intake assessment (consent to treatment signed)"),
    Transition("complete_intake", ("intake_assessment",), "active_treatment", frozenset({THERAPIST}),
               ("baseline_questionnaires",), requires=("goals",),
               description="assessment done, treatment goals set, baseline PHQ-9 and GAD-7 on record"),
    Transition("refer_out", ("intake_assessment",), "referred", frozenset({THERAPIST}), requires=("reason",),
               description="another service suits the client better"),
    Transition("start_session", ("active_treatment",), "in_session", frozenset({THERAPIST}),
               ("consent_signed", "questionnaires_current", "safety_signal_resolved"),
               description="begin a psychotherapy session"),
    Transition("complete_session", ("in_session",), "active_treatment", frozenset({THERAPIST}),
               ("session_billable_length",), description="the session is over: a billable psychotherapy visit"),
    Transition("end_session_early", ("in_session",), "active_treatment", frozenset({THERAPIST}),
               requires=("reason",), description="the session ended before it was a billable visit"),
    Transition("discharge", ("active_treatment",), "discharged", frozenset({THERAPIST}), requires=("reason",),
               description="planned discharge: goals met or care continues elsewhere"),
    Transition("discharge_inactive", ("active_treatment",), "discharged", frozenset({SYSTEM, FRONT_DESK}),
               ("inactivity_elapsed", "no_session_booked"),
               description="no session for the inactivity period and none booked"),
    Transition("hold", _HOLDABLE, "on_hold", STAFF, requires=("reason",)),
    Transition("resume", ("on_hold",), PREVIOUS_STATE, STAFF),
    Transition("withdraw", _WITHDRAWABLE, "withdrawn", frozenset({CLIENT, *STAFF}), requires=("reason",)),
)

_RECORDERS: dict[str, frozenset[str]] = {
    "inquiry": frozenset({CLIENT, FRONT_DESK}),
    "payment": frozenset({FRONT_DESK, BILLING}),
    "consent": frozenset({FRONT_DESK, THERAPIST}),
    "consent_withdrawn": frozenset({CLIENT, *STAFF}),
    "questionnaire": frozenset({CLIENT, THERAPIST}),
    "safety_assessment": frozenset({THERAPIST}),
    "appointment": frozenset(STAFF),
    "appointment_update": frozenset(STAFF),
}

_FACT_GUARDS = {
    "appointment": ("appointment_not_in_past", "session_booking_after_intake"),
    "appointment_update": ("appointment_open", "appointment_not_in_past"),
}

READ_ACCESS: dict[str, frozenset[str]] = {  # the minimum necessary each role reads (see the KAP pathway's)
    FRONT_DESK: frozenset({"inquiry", "payment", "appointment", "appointment_update", "consent",
                           "consent_withdrawn"}),
    BILLING: frozenset({"inquiry", "payment", "appointment", "appointment_update"}),
    THERAPIST: frozenset({ALL_FACTS}),
    AUDITOR: frozenset({ALL_FACTS}),
    CLIENT: frozenset({"inquiry", "payment", "appointment", "appointment_update", "consent", "consent_withdrawn",
                       "questionnaire"}),
}

ON_CLOSED_CASE = frozenset({"payment"})
"""Fact kinds a closed case still takes: the payment of an outstanding balance, nothing clinical."""


def _workflow(version: str, thresholds: Mapping[str, Threshold]) -> Workflow:
    rise, every = int(thresholds["symptom_rise_points"]), timedelta(days=int(thresholds["checkin_every_days"]))
    return Workflow(
        name="psychotherapy",
        version=version,
        initial="inquiry",
        states=_states(thresholds),
        transitions=TRANSITIONS,
        roles=ROLES,
        staff_roles=STAFF,
        guards={**psychotherapy_guards(), **SAFETY_GUARDS},
        facts=fact_kinds((*psychotherapy_facts.ALL_SPECS, SAFETY_ASSESSMENT), _RECORDERS, _FACT_GUARDS,
                         ON_CLOSED_CASE),
        thresholds=thresholds,
        intake_fact="inquiry",
        client=INQUIRY_CLIENT,
        appointments=AppointmentFacts(kinds=tuple(psychotherapy_facts.APPOINTMENT_MINUTES),
                                      starts=(("intake", "start_intake"), (SESSION, "start_session"))),
        delivery_failures=FRONT_DESK,
        description="Outpatient psychotherapy: inquiry, intake assessment, sessions, discharge",
        # PHQ-9 and GAD-7 over the episode: the baseline is the latest by the intake's end; a rise from it
        # alerts the therapist; after the first session, check-in questionnaires at least every 4 weeks.
        reminders=(*REMINDERS, *measure_reminders(THERAPIST, CLIENT, ("active_treatment",), every=every)),
        moments={**SAFETY_MOMENTS, **measure_moments(("complete_intake",), "start_session", rise=rise)},
        summaries={"measures": measures_summary("complete_intake", rise=rise)},
        read_access=READ_ACCESS,
        client_role=CLIENT,
    )


def build_psychotherapy_workflow(version: str = "1", **threshold_changes: Threshold) -> Workflow:
    """The psychotherapy pathway; pass thresholds to tailor it (with a new version).

    Use this rather than ``Workflow.with_thresholds`` to change ``inactivity_days``,
    ``symptom_rise_points`` or ``checkin_every_days``: the reminders they time are built from
    them here, while ``with_thresholds`` changes only what the guards read.
    """
    base = _workflow(version, THRESHOLDS)
    if not threshold_changes:
        return base
    return _workflow(version, base.with_thresholds(version, **threshold_changes).thresholds)


PSYCHOTHERAPY_PATHWAY = build_psychotherapy_workflow()
