"""The Ketamine-Assisted Psychotherapy pathway as data (see shared/KAP_PATHWAY.md).

    inquiry ─book_evaluation→ evaluation_booked ─start_evaluation→ evaluating
    evaluating ─find_suitable→ evaluated │ ─find_ineligible→ ineligible (final)
    evaluated ─start_intention_setting→ intention_setting ─complete_intention_setting→ ready_for_kap
    ready_for_kap ─start_kap_session→ dosing ─discharge→ integration_psychotherapy
        ─complete_integration→ ready_for_kap
    ready_for_kap ─start_integration_session→ integration_session ─complete_integration_session→ ready_for_kap
    ready_for_kap ─begin_reassessment→ reassessment ─complete_reassessment→ ready_for_kap
    ready_for_kap │ reassessment ─complete_treatment→ completed (final)
    dosing ─end_session_early→ integration_psychotherapy
    dosing │ integration_psychotherapy │ ready_for_kap ─hold_for_safety_review→ safety_review
        (fired by the worker at once after a serious adverse event, or by a clinician)
    safety_review ─continue_after_review→ integration_psychotherapy │ ─pause_after_review→ on_hold
        │ ─end_plan_after_review→ completed (final)
    most states ─hold→ on_hold ─resume→ (where it was); all but dosing ─withdraw→ withdrawn (final)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from kapflow.domain.appointments import AppointmentFacts
from kapflow.domain.billing import adjustment_spec, charge_spec
from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.estimate import estimate_spec
from kapflow.domain.superbill import superbill_spec
from kapflow.domain.workflow import ALL_FACTS, Reminder, State, Transition, Workflow
from kapflow.workflows.clinical_facts import CLIENT_ADDRESS, DIAGNOSIS, INQUIRY_CLIENT, fact_kinds
from kapflow.workflows.clinical_guards import AdjustmentFits
from kapflow.workflows.clinical_reminders import appointment_notices, inquiry_unanswered, not_booked_prompts
from kapflow.workflows.clinical_reminders import appointment_reminders as _appointment_reminders
from kapflow.workflows.kap import facts as kap_facts
from kapflow.workflows.kap.billing import KAP_BILLING
from kapflow.workflows.kap.guards import kap_guards, plan_summary
from kapflow.workflows.kap.moments import MOMENTS
from kapflow.workflows.measures import measure_moments, measure_reminders, measures_summary
from kapflow.workflows.safety import GUARDS as SAFETY_GUARDS
from kapflow.workflows.safety import MOMENTS as SAFETY_MOMENTS
from kapflow.workflows.safety import SAFETY_ASSESSMENT, safety_alerts

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
    "vitals_alert_minutes": 180,  # post-dose vitals still out of range this long after dosing: alert
    "symptom_rise_points": 5,  # a PHQ-9 or GAD-7 total this far above baseline alerts the therapist
    "checkin_every_days": 28,  # check-in questionnaires during integration, this often
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
    "safety_signal_resolved",
    "safety_review_done",
)


def _serious_event_hold() -> Reminder:
    """A serious adverse event holds the case for the prescriber's review within one worker tick."""
    return Reminder(
        "serious_event_hold", SYSTEM, "", "",
        since="serious_adverse_event", after=timedelta(0), fires="hold_for_safety_review",
        # Holding late is still right (a worker down for hours catches up); the prescriber hears if not.
        grace=timedelta(days=30), missed_alert=PRESCRIBER,
    )


def _dosing_state(thresholds: Mapping[str, int | float]) -> State:
    # The vitals alert is timed from the threshold, so a practice's own figure is the one that counts.
    minutes = int(thresholds["vitals_alert_minutes"])
    span = f"{minutes // 60} hours" if minutes % 60 == 0 else f"{minutes} minutes"
    return State(
        "dosing",
        description="the client has taken the troche; clinician present, monitoring",
        reminders=(
            Reminder(
                "vitals_still_out_of_range", PRESCRIBER, "email",
                f"A client's vital signs are not recorded within range {span} into a session; "
                "the prescriber is needed.",
                after=timedelta(minutes=minutes), while_blocked_by="post_dose_vitals_in_range",
                subject="kapflow: a client needs the prescriber",
            ),
            _serious_event_hold(),
        ),
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
                work="The evaluation fee is unpaid and the evaluation is less than 24 hours away.",
                work_also=(BILLING,),
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
            _serious_event_hold(),
        ),
    ),
    _dosing_state(THRESHOLDS),
    State("integration_psychotherapy", description="the 60-minute integration psychotherapy after dosing",
          pending=("previous_integration_done",), reminders=(_serious_event_hold(),)),
    State("safety_review", description="held after a serious adverse event: only the prescriber's review "
          "releases the case", pending=("safety_review_done",)),
    State("integration_session", description="an integration session is under way"),
    State("reassessment", description="the prescriber reassesses before more KAP sessions"),
    State("on_hold", description="paused; resume returns the case to where it was"),
    State("completed", final=True, description="the treatment plan ended"),
    State("withdrawn", final=True, description="the client left the pathway"),
)

REMINDERS = (
    # A PHQ-9 answered above 0 on item 9: the prescriber and the therapist at once (workflows/safety.py).
    *safety_alerts((PRESCRIBER, THERAPIST)),
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
    # The No Surprises Act asks that the client receive the estimate before the services it lists: the client
    # is told at once that it is there to read (never its amounts, in a message).
    Reminder(
        "estimate_ready", CLIENT, "email",
        "Hello {first_name}, the good faith estimate of the costs of your treatment plan is ready. Sign in to "
        "the practice's client portal to read and keep it before your next session; ask the front desk about "
        "anything in it.",
        since="estimate_recorded", after=timedelta(0), subject="Your good faith estimate",
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

APPOINTMENT_STARTS = (
    ("evaluation", "start_evaluation"),
    ("intention_setting", "start_intention_setting"),
    ("kap_session", "start_kap_session"),
    ("integration_session", "start_integration_session"),
    ("reassessment", "begin_reassessment"),
)
"""The trigger each kind of appointment begins with: its blockers say whether the appointment is ready (a
prescriber check-in is a fact recorded, not a step of the pathway: it leads to no trigger)."""

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
    Transition("end_session_early", ("dosing",), "integration_psychotherapy", frozenset(CLINICIANS),
               ("post_dose_vitals_in_range", "client_stable"), requires=("reason",),
               description="end the dosing before the observation time: vitals rechecked, client stable"),
    Transition("hold_for_safety_review", ("dosing", "integration_psychotherapy", "ready_for_kap"), "safety_review",
               frozenset({SYSTEM, *CLINICIANS}),
               description="a serious adverse event (or a clinician's concern) ends the session and holds the "
                           "case for the prescriber"),
    Transition("continue_after_review", ("safety_review",), "integration_psychotherapy", frozenset({PRESCRIBER}),
               description="the prescriber's review: the plan goes on (to change the dose, record a new "
                           "prescription first); an integration psychotherapy comes next"),
    Transition("pause_after_review", ("safety_review",), "on_hold", frozenset({PRESCRIBER}), requires=("reason",),
               description="the prescriber's review pauses the plan; resuming returns to the review"),
    Transition("end_plan_after_review", ("safety_review",), "completed", frozenset({PRESCRIBER}),
               requires=("reason",), description="the prescriber's review ends the treatment plan"),
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
    "adverse_event": frozenset(CLINICIANS),
    "safety_assessment": frozenset(CLINICIANS),
    "charge": frozenset(),  # posted by the engine as a visit completes: nobody records one by hand
    "billing_adjustment": frozenset({BILLING}),
    "diagnosis": frozenset(CLINICIANS),
    "client_address": frozenset({CLIENT, FRONT_DESK, BILLING}),
    "superbill_issued": frozenset(),  # recorded by the superbill command only (KAP_BILLING.issuers may issue)
    "good_faith_estimate": frozenset(),  # recorded by the engine with the plan that asks for it
}

_FACT_GUARDS = {
    "appointment": (
        "appointment_not_in_past", "kap_booking_prescription", "kap_booking_consent", "kap_booking_intention",
    ),
    # A reschedule is checked as a booking at its new time (a prescription valid on the new day).
    "appointment_update": ("appointment_open", "appointment_not_in_past", "kap_booking_prescription"),
    "billing_adjustment": ("adjustment_fits",),
}

# The minimum necessary each role reads (HIPAA's standard): the front desk what it books and collects,
# billing what it bills, clinicians the clinical record, auditors everything (they write nothing), the
# client what it gave and what it is booked for.
_MONEY = frozenset({"payment", "charge", "billing_adjustment", "client_address", "good_faith_estimate"})
_LOGISTICS = frozenset({"inquiry", "appointment", "appointment_update", "consent", "consent_withdrawn", "escort",
                        *_MONEY})
READ_ACCESS: dict[str, frozenset[str]] = {
    FRONT_DESK: _LOGISTICS,
    # A superbill lists the diagnoses each service treated: billing reads them, the front desk does not.
    BILLING: frozenset({"inquiry", "appointment", "appointment_update", "diagnosis", "superbill_issued", *_MONEY}),
    PRESCRIBER: frozenset({ALL_FACTS}),
    THERAPIST: frozenset({ALL_FACTS}),
    AUDITOR: frozenset({ALL_FACTS}),
    CLIENT: frozenset({"inquiry", "appointment", "appointment_update", "consent", "consent_withdrawn",
                       "fasting", "escort", "questionnaire", *_MONEY}),
}

_BILLING_SPECS = (charge_spec(KAP_BILLING.facts.charge), adjustment_spec(KAP_BILLING.facts.adjustment), DIAGNOSIS,
                  CLIENT_ADDRESS, superbill_spec("superbill_issued"), estimate_spec("good_faith_estimate"))

ON_CLOSED_CASE = frozenset({"payment", "billing_adjustment"})
"""Fact kinds a closed case still takes: the payment of an outstanding balance and its corrections, nothing
clinical."""

_EVALUATION_ENDS = ("find_suitable", "find_ineligible")
_TREATMENT_STATES = ("integration_psychotherapy", "ready_for_kap", "integration_session")
"""Where the regular check-in questionnaires are asked for: integration, between sessions."""


def build_kap_workflow(version: str = "1", **threshold_changes: int | float) -> Workflow:
    """The KAP pathway; pass thresholds to tailor it (with a new version).

    Use this rather than ``Workflow.with_thresholds`` to change a threshold that times a reminder
    (``vitals_alert_minutes``, ``symptom_rise_points``, ``checkin_every_days``): they are built from
    the thresholds here, while ``with_thresholds`` changes only what guards read.
    """
    base = _kap_workflow(version, THRESHOLDS)
    if not threshold_changes:
        return base
    return _kap_workflow(version, base.with_thresholds(version, **threshold_changes).thresholds)


def _kap_workflow(version: str, thresholds: Mapping[str, int | float]) -> Workflow:
    rise, every = int(thresholds["symptom_rise_points"]), timedelta(days=int(thresholds["checkin_every_days"]))
    return Workflow(
        name="kap",
        version=version,
        initial="inquiry",
        # The dosing state's vitals alert is timed from a threshold.
        states=tuple(_dosing_state(thresholds) if s.name == "dosing" else s for s in STATES),
        transitions=TRANSITIONS,
        roles=ROLES,
        staff_roles=frozenset({FRONT_DESK, PRESCRIBER, THERAPIST}),
        guards={**kap_guards(), **SAFETY_GUARDS, "adjustment_fits": AdjustmentFits(KAP_BILLING)},
        facts=fact_kinds((*kap_facts.ALL_SPECS, SAFETY_ASSESSMENT, *_BILLING_SPECS), _RECORDERS, _FACT_GUARDS,
                         ON_CLOSED_CASE),
        thresholds=thresholds,
        intake_fact="inquiry",
        client=INQUIRY_CLIENT,
        # A KAP session takes a room, and holds it and its clinician for two hours whatever its length.
        appointments=AppointmentFacts(kinds=tuple(kap_facts.APPOINTMENT_MINUTES), rooms=("kap_session",),
                                      holds=(("kap_session", 120),), starts=APPOINTMENT_STARTS),
        description="Ketamine-Assisted Psychotherapy: inquiry to completed treatment plan",
        # PHQ-9 and GAD-7 over the case: the baseline is the latest recorded by the evaluation's end; a rise
        # from it alerts the therapist; after the first session, check-in questionnaires every 4 weeks.
        reminders=(*REMINDERS, *measure_reminders(THERAPIST, CLIENT, _TREATMENT_STATES, every=every)),
        moments={**MOMENTS, **SAFETY_MOMENTS, **measure_moments(_EVALUATION_ENDS, "start_kap_session", rise=rise)},
        summaries={"measures": measures_summary(*_EVALUATION_ENDS, rise=rise), "plan": plan_summary},
        read_access=READ_ACCESS,
        client_role=CLIENT,
        delivery_failures=FRONT_DESK,  # the front desk reaches a client (or colleague) a message missed
        billing=KAP_BILLING,
    )


KAP_PATHWAY = build_kap_workflow()
