"""The Ketamine-Assisted Psychotherapy pathway as data (see shared/KAP_PATHWAY.md).

    inquiry ─book_evaluation→ evaluation_booked ─start_evaluation→ evaluating
    evaluating ─find_suitable→ evaluated │ ─find_ineligible→ ineligible (final)
    evaluated ─start_intention_setting→ intention_setting ─complete_intention_setting→ ready_for_kap
    ready_for_kap ─start_kap_session→ dosing ─discharge→ integration_psychotherapy
        ─complete_integration→ ready_for_kap
    ready_for_kap ─start_integration_session→ integration_session ─complete_integration_session→ ready_for_kap
    ready_for_kap ─begin_reassessment→ reassessment ─complete_reassessment→ ready_for_kap
    ready_for_kap │ reassessment ─complete_treatment→ completed (final)
    most states ─hold→ on_hold ─resume→ (where it was); all but dosing ─withdraw→ withdrawn (final)
"""

from __future__ import annotations

from datetime import timedelta

from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.workflow import Reminder, State, Transition, Workflow
from kapflow.workflows.clinical_facts import INQUIRY_CLIENT, fact_kinds
from kapflow.workflows.clinical_reminders import appointment_notices, inquiry_unanswered, not_booked_prompts
from kapflow.workflows.clinical_reminders import appointment_reminders as _appointment_reminders
from kapflow.workflows.kap import facts as kap_facts
from kapflow.workflows.kap.guards import kap_guards
from kapflow.workflows.kap.moments import MOMENTS

CLIENT, FRONT_DESK, PRESCRIBER, THERAPIST, BILLING, AUDITOR, SYSTEM = (
    "client", "front_desk", "prescriber", "therapist", "billing", "auditor", "system",
)
ROLES = frozenset({CLIENT, FRONT_DESK, PRESCRIBER, THERAPIST, BILLING, AUDITOR, SYSTEM})
CLINICIANS = frozenset({PRESCRIBER, THERAPIST})
STAFF = frozenset({FRONT_DESK, PRESCRIBER, THERAPIST})

THRESHOLDS: dict[str, int | float] = {
    "evaluation_fee": 250,
    "minimum_age": 18,
    "max_systolic": 140,
    "max_diastolic": 90,
    "max_sessions_per_window": 2,
    "window_days": 7,
    "observation_minutes": 120,
    "reassess_every": 6,
    "lapse_days": 90,
    "predose_window_minutes": 120,
    "attestation_window_minutes": 24 * 60,
}

KAP_SESSION_GUARDS = (
    "prescription_valid",
    "consent_signed",
    "intention_set",
    "treatment_plan_set",
    "plan_sessions_remain",
    "reassessment_not_due",
    "previous_integration_done",
    "session_frequency",
    "lapse_checkin",
    "pre_dose_vitals_in_range",
    "fasting_attested",
    "escort_arranged",
    "clinician_present",
)


STATES = (
    State(
        "inquiry",
        description="an inquiry form arrived; front desk answers it",
        reminders=(inquiry_unanswered(),),
    ),
    State(
        "evaluation_booked",
        description="prescriber evaluation booked; the fee is due before it",
        reminders=(
            Reminder(
                "evaluation_fee_due", CLIENT, "email",
                "Hello {first_name}, the one-time $250 fee is due before your appointment on {starts_at}.",
                after=timedelta(0), appointment_kind="evaluation", while_blocked_by="evaluation_fee_paid",
                subject="Payment reminder",
            ),
            Reminder(
                "evaluation_fee_due_48h", CLIENT, "email",
                "Hello {first_name}, the one-time $250 fee is due before your appointment on {starts_at}.",
                before_appointment=timedelta(hours=48), appointment_kind="evaluation",
                while_blocked_by="evaluation_fee_paid", subject="Payment reminder",
            ),
            Reminder(
                "evaluation_fee_unpaid_alert", FRONT_DESK, "email",
                "The evaluation fee is still unpaid 24 hours before the appointment on {starts_at}.",
                before_appointment=timedelta(hours=24), appointment_kind="evaluation",
                while_blocked_by="evaluation_fee_paid", subject="kapflow: evaluation fee unpaid",
            ),
            Reminder(
                "evaluation_released_unpaid", SYSTEM, "",
                "",
                # 30 minutes after the start (a negative lead): the prescriber's own refusal comes first.
                before_appointment=timedelta(minutes=-30), appointment_kind="evaluation",
                while_blocked_by="evaluation_fee_paid", fires="release_evaluation",
                grace=timedelta(hours=12), missed_alert=FRONT_DESK,
            ),
        ),
    ),
    State("evaluating", description="the prescriber's evaluation is under way"),
    State(
        "evaluated",
        description="found suitable; intention-setting comes next",
        reminders=not_booked_prompts(
            "intention_setting_not_booked", FRONT_DESK, timedelta(days=3), "intention_setting_booked",
            client_text="Hello {first_name}, you can now book your intention-setting session with your therapist.",
            staff_text="A client found suitable 3 days ago has no intention-setting session booked.",
            staff_subject="kapflow: intention-setting not booked",
        ),
    ),
    State("ineligible", final=True, description="KAP is not suitable for this client"),
    State("intention_setting", description="the intention-setting session is under way"),
    State(
        "ready_for_kap",
        description="between sessions: KAP sessions, integration sessions or reassessment next",
        reminders=(
            Reminder(
                "reassessment_due", PRESCRIBER, "email",
                "A client's reassessment is due before more sessions.",
                after=timedelta(0), while_blocked_by="reassessment_not_due",
                subject="kapflow: reassessment due",
            ),
            Reminder(
                "plan_used_up", THERAPIST, "email",
                "A client did the last session of the treatment plan 3 days ago; complete the treatment "
                "or reassess to extend the plan.",
                after=timedelta(days=3), while_blocked_by="plan_sessions_remain",
                subject="kapflow: treatment plan used up",
            ),
            *not_booked_prompts(
                "integration_not_booked", THERAPIST, timedelta(days=7), "integration_session_booked",
                client_text="Hello {first_name}, it is time to book your next integration session.",
                staff_text="No integration session is booked 7 days after a client's last session.",
                staff_subject="kapflow: integration session not booked",
            ),
        ),
    ),
    State("dosing", description="the client has taken the troche; clinician present, monitoring"),
    State("integration_psychotherapy", description="the 60-minute integration psychotherapy after dosing",
          pending=("previous_integration_done",)),
    State("integration_session", description="an integration session is under way"),
    State("reassessment", description="the prescriber reassesses before more KAP sessions"),
    State("on_hold", description="paused; resume returns the case to where it was"),
    State("completed", final=True, description="the treatment plan ended"),
    State("withdrawn", final=True, description="the client left the pathway"),
)

REMINDERS = (
    # An appointment's reminders belong to it, whatever state the case is in at their moment.
    *(r for kind in kap_facts.APPOINTMENT_MINUTES for r in _appointment_reminders(kind)),
    *appointment_notices(),
    Reminder(
        "questionnaires_due", CLIENT, "email",
        "Hello {first_name}, please complete your two check-in questionnaires before your "
        "appointment on {starts_at}.",
        before_appointment=timedelta(hours=48), appointment_kind="kap_session",
        while_blocked_by="questionnaires_current", subject="Questionnaires to complete",
    ),
    Reminder(
        "prescription_lapsing", PRESCRIBER, "email",
        "A client's prescription lapses in 14 days and sessions of the treatment plan remain.",
        since="prescription_lapses", after=timedelta(days=-14), while_holds="plan_sessions_remain",
        subject="kapflow: prescription lapsing",
    ),
    *(
        Reminder(
            f"kap_lapse_approaching{suffix}", audience, "email", template,
            since="last_kap_session", after=timedelta(days=75), in_states=("ready_for_kap",),
            subject=subject,
        )
        for suffix, audience, subject, template in (
            ("_client", CLIENT, "Time to book your next session",
             "Hello {first_name}, it has been 75 days since your last treatment session. After 90 days the "
             "prescriber checks in with you before the next; book soon if you wish to continue."),
            ("", THERAPIST, "kapflow: 75 days since a client's last session",
             "It has been 75 days since a client's last treatment session; after 90 days a prescriber "
             "check-in is required before the next."),
        )
    ),
)

_HOLDABLE = ("inquiry", "evaluation_booked", "evaluated", "ready_for_kap", "reassessment")
_WITHDRAWABLE = tuple(s.name for s in STATES if not s.final and s.name != "dosing")

TRANSITIONS = (
    Transition("book_evaluation", ("inquiry",), "evaluation_booked", frozenset({FRONT_DESK}),
               ("evaluation_booked",), description="book the prescriber evaluation"),
    Transition("release_evaluation", ("evaluation_booked",), "inquiry", frozenset({SYSTEM, FRONT_DESK}),
               description="the fee was not paid by the appointment: release the slot",
               cancels=("evaluation",)),
    Transition("start_evaluation", ("evaluation_booked",), "evaluating", frozenset({PRESCRIBER}),
               ("evaluation_fee_paid",), description="begin the evaluation (fee paid)"),
    Transition("find_suitable", ("evaluating",), "evaluated", frozenset({PRESCRIBER}),
               ("screening_recorded", "of_minimum_age", "no_hard_exclusion", "review_flags_cleared"),
               description="the client is suitable for KAP"),
    Transition("find_ineligible", ("evaluating",), "ineligible", frozenset({PRESCRIBER}),
               requires=("reason",), description="the client is not suitable for KAP"),
    Transition("start_intention_setting", ("evaluated",), "intention_setting", frozenset({THERAPIST})),
    Transition("complete_intention_setting", ("intention_setting",), "ready_for_kap", frozenset({THERAPIST}),
               requires=("intentions",), description="intentions set"),
    Transition("start_kap_session", ("ready_for_kap",), "dosing", frozenset({THERAPIST, PRESCRIBER}),
               KAP_SESSION_GUARDS, description="the client takes the troche with the clinician present"),
    Transition("discharge", ("dosing",), "integration_psychotherapy", frozenset(CLINICIANS),
               ("observation_elapsed", "post_dose_vitals_in_range", "client_stable"),
               description="dosing over: observed long enough, vitals rechecked, client stable"),
    Transition("complete_integration", ("integration_psychotherapy",), "ready_for_kap", frozenset({THERAPIST})),
    Transition("start_integration_session", ("ready_for_kap",), "integration_session", frozenset({THERAPIST})),
    Transition("complete_integration_session", ("integration_session",), "ready_for_kap", frozenset({THERAPIST})),
    Transition("begin_reassessment", ("ready_for_kap",), "reassessment", frozenset(CLINICIANS)),
    Transition("complete_reassessment", ("reassessment",), "ready_for_kap", frozenset({PRESCRIBER}),
               ("plan_sessions_remain",), description="reassessed; more sessions in the plan"),
    Transition("complete_treatment", ("ready_for_kap", "reassessment"), "completed", frozenset(CLINICIANS),
               ("plan_finished",), description="the plan's sessions are done (or it ended early)"),
    Transition("hold", _HOLDABLE, "on_hold", STAFF, requires=("reason",)),
    Transition("resume", ("on_hold",), PREVIOUS_STATE, STAFF),
    Transition("withdraw", _WITHDRAWABLE, "withdrawn", frozenset({CLIENT, *STAFF}), requires=("reason",)),
)

_RECORDERS: dict[str, frozenset[str]] = {
    "inquiry": frozenset({CLIENT, FRONT_DESK}),
    "payment": frozenset({FRONT_DESK, BILLING}),
    "prescription": frozenset({PRESCRIBER}),
    "consent": frozenset({FRONT_DESK, *CLINICIANS}),
    "consent_withdrawn": frozenset({CLIENT, *STAFF}),
    "screening": frozenset({PRESCRIBER}),
    "vitals": frozenset(CLINICIANS),
    "fasting": frozenset({CLIENT, *STAFF}),
    "escort": frozenset({CLIENT, *STAFF}),
    "clinician_present": frozenset(CLINICIANS),
    "discharge_check": frozenset(CLINICIANS),
    "questionnaire": frozenset({CLIENT, *CLINICIANS}),
    "treatment_plan": frozenset(CLINICIANS),
    "appointment": frozenset({FRONT_DESK, *CLINICIANS}),
    "appointment_update": frozenset({FRONT_DESK, *CLINICIANS}),
    "prescriber_checkin": frozenset({PRESCRIBER}),
}

_FACT_GUARDS = {
    "appointment": (
        "appointment_not_in_past", "kap_booking_prescription", "kap_booking_consent", "kap_booking_intention",
    ),
    # A reschedule is checked as a booking at its new time (a prescription valid on the new day).
    "appointment_update": ("appointment_open", "appointment_not_in_past", "kap_booking_prescription"),
}

ON_CLOSED_CASE = frozenset({"payment"})
"""Fact kinds a closed case still takes: the payment of an outstanding balance, nothing clinical."""


def build_kap_workflow(version: str = "1", **threshold_changes: int | float) -> Workflow:
    """The KAP pathway; pass thresholds to tailor it (with a new version)."""
    base = Workflow(
        name="kap",
        version=version,
        initial="inquiry",
        states=STATES,
        transitions=TRANSITIONS,
        roles=ROLES,
        staff_roles=frozenset({FRONT_DESK, PRESCRIBER, THERAPIST}),
        guards=kap_guards(),
        facts=fact_kinds(kap_facts.ALL_SPECS, _RECORDERS, _FACT_GUARDS, ON_CLOSED_CASE),
        thresholds=THRESHOLDS,
        intake_fact="inquiry",
        client=INQUIRY_CLIENT,
        # A KAP session takes a room, and holds it and its clinician for two hours whatever its length.
        appointments=AppointmentFacts(kinds=tuple(kap_facts.APPOINTMENT_MINUTES), rooms=("kap_session",),
                                      holds=(("kap_session", 120),)),
        description="Ketamine-Assisted Psychotherapy: inquiry to completed treatment plan",
        reminders=REMINDERS,
        moments=MOMENTS,
    )
    return base.with_thresholds(version, **threshold_changes) if threshold_changes else base


KAP_PATHWAY = build_kap_workflow()
