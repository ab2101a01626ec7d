"""The psychotherapy pathway's guards, billing codes and definition, as pure functions of a case's projection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from strategies import psychotherapy_session_minutes

from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.errors import Blocker, WorkflowDefinitionError
from kapflow.domain.verdict import evaluate
from kapflow.domain.workflow import GuardContext
from kapflow.workflows import clinical_facts
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY, THRESHOLDS, build_psychotherapy_workflow
from kapflow.workflows.psychotherapy.billing import Visit, psychotherapy_code, visits

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WF = PSYCHOTHERAPY_PATHWAY


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def days(n: float) -> timedelta:
    return timedelta(days=n)


class Case:
    """A psychotherapy case's projection built with fold_fact/fold_move; facts pass through the workflow's specs."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {"facts": [], "moves": []}

    def fact(self, kind: str, data: Mapping[str, Any], at: datetime = T0) -> Case:
        self.raw = fold_fact(self.raw, kind, at, "tester", WF.facts[kind].spec(data, at))
        return self

    def move(self, trigger: str, at: datetime = T0, source: str = "s", dest: str = "d") -> Case:
        self.raw = fold_move(self.raw, trigger, source, dest, at)
        return self

    def session(self, start: datetime, length: float = 53) -> Case:
        """One psychotherapy session of ``length`` minutes, started at ``start``."""
        self.move("start_session", start, "active_treatment", "in_session")
        return self.move("complete_session", start + minutes(length), "in_session", "active_treatment")

    def sessions(self, count: int, first: datetime = T0) -> Case:
        for n in range(count):
            self.session(first + days(7 * n))
        return self

    def questionnaires(self, at: datetime, *instruments: str, total_only: bool = False) -> Case:
        """PHQ-9 and GAD-7 (or ``instruments``) answered item by item, or as stored before that: a total."""
        for instrument in instruments or ("PHQ-9", "GAD-7"):
            if total_only:  # as stored then: not parsed by today's spec, which computes the total
                self.raw = fold_fact(self.raw, "questionnaire", at, "tester", {"instrument": instrument, "score": 6})
            else:
                self.fact("questionnaire", answered(instrument, 6), at)
        return self

    def ctx(
        self, now: datetime = T0, data: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, int | float] = THRESHOLDS,
    ) -> GuardContext:
        return GuardContext("case-1", "active_treatment", "start_session", CaseFacts(self.raw), now, thresholds,
                            data or {})

    def run(self, guard: str, now: datetime = T0, **kw: Any) -> Blocker | None:
        return WF.guards[guard](self.ctx(now, **kw))

    def code(self, guard: str, now: datetime = T0, **kw: Any) -> str | None:
        blocker = self.run(guard, now, **kw)
        return None if blocker is None else blocker.code


def book(kind: str, starts: datetime) -> dict[str, str]:
    return {"kind": kind, "starts_at": starts.isoformat(), "clinician": "th-jordan"}


def consent(signed_on: str = "2026-03-02") -> dict[str, str]:
    return {"form_version": "2026-01", "signed_on": signed_on}


def verdict_codes(trigger: str, state: str, case: Case, now: datetime = T0, **kw: Any) -> list[tuple[str, str]]:
    transition = WF.transition_from(state, trigger)
    assert transition is not None
    return [(b.guard, b.code) for b in evaluate(WF, transition, case.ctx(now, **kw)).blockers]


# --- the intake ---------------------------------------------------------------------------------


def test_intake_booked_needs_an_intake_still_ahead() -> None:
    """Only an intake appointment still ahead and not cancelled lets the intake be booked."""
    assert Case().code("intake_booked") == "intake_not_booked"
    booked = Case().fact("appointment", book("intake", T0 + days(2)))
    assert booked.code("intake_booked") is None
    assert booked.code("intake_booked", T0 + days(3)) == "intake_not_booked"
    booked.fact("appointment_update", {"appointment": "a1", "action": "cancel"}, T0 + days(1))
    blocker = booked.run("intake_booked", T0 + days(1))
    assert blocker is not None
    assert (blocker.code, blocker.message) == ("intake_not_booked", "book the intake appointment first")


def test_consent_missing_names_the_psychotherapy_form() -> None:
    """Without consent the intake waits, and the sentence names this pathway's form, not KAP's."""
    blocker = Case().run("consent_signed")
    assert blocker is not None
    assert blocker.code == "consent_missing"
    assert "consent to psychotherapy treatment form" in blocker.message and "KAP" not in blocker.message
    assert Case().fact("consent", consent()).code("consent_signed") is None


def test_consent_withdrawn_blocks_until_signed_again() -> None:
    """A withdrawal after the signature blocks; a new signature after it clears it."""
    case = Case().fact("consent", consent()).fact("consent_withdrawn", {"withdrawn_on": "2026-03-03"}, T0 + days(1))
    assert case.code("consent_signed", T0 + days(1)) == "consent_withdrawn"
    case.fact("consent", consent("2026-03-04"), T0 + days(2))
    assert case.code("consent_signed", T0 + days(2)) is None


def test_consent_recorded_without_a_title_gets_the_pathways_own() -> None:
    """The shared consent spec fills in the psychotherapy form's title, KAP's keeps its own."""
    assert WF.facts["consent"].spec(consent(), T0)["form"] == "consent to psychotherapy treatment"
    assert KAP_PATHWAY.facts["consent"].spec(consent(), T0)["form"] == "KAP informed consent"


def test_baseline_questionnaires_needs_both() -> None:
    """Completing the intake needs a baseline PHQ-9 and GAD-7; each missing one is named."""
    blocker = Case().run("baseline_questionnaires")
    assert blocker is not None
    assert blocker.code == "baseline_questionnaires_missing"
    assert "GAD-7 and PHQ-9" in blocker.message
    half = Case().questionnaires(T0, "PHQ-9")
    blocker = half.run("baseline_questionnaires")
    assert blocker is not None and dict(blocker.facts) == {"missing": "GAD-7"}
    assert half.questionnaires(T0, "GAD-7").code("baseline_questionnaires") is None
    assert Case().questionnaires(T0, total_only=True).code("baseline_questionnaires") is None


# --- sessions -----------------------------------------------------------------------------------


def test_questionnaires_not_due_for_the_first_sessions() -> None:
    """The baseline covers sessions 1 to 4: nothing is due before the fourth is done."""
    assert Case().code("questionnaires_current") is None
    assert Case().sessions(3).code("questionnaires_current", T0 + days(30)) is None


def test_questionnaires_due_after_the_fourth_session() -> None:
    """Four sessions done and no PHQ-9 or GAD-7 since: the fifth waits, naming both."""
    blocker = Case().sessions(4).run("questionnaires_current", T0 + days(30))
    assert blocker is not None
    assert blocker.code == "questionnaires_due"
    assert "GAD-7 and PHQ-9" in blocker.message and "4 sessions" in blocker.message
    assert dict(blocker.facts) == {"sessions": "4", "every": "4", "missing": "GAD-7,PHQ-9"}


def test_questionnaires_before_the_fourth_session_ended_do_not_count() -> None:
    """Scores recorded during the run of sessions 1-4 are not the check-in due after the fourth."""
    case = Case().questionnaires(T0 + days(8)).sessions(4)
    assert case.code("questionnaires_current", T0 + days(30)) == "questionnaires_due"


def test_questionnaires_after_the_fourth_session_clear_it() -> None:
    """Once both are recorded after the fourth session, sessions 5 to 8 may go ahead."""
    case = Case().sessions(4).questionnaires(T0 + days(22), "PHQ-9")
    blocker = case.run("questionnaires_current", T0 + days(22))
    assert blocker is not None
    assert (blocker.code, dict(blocker.facts)["missing"]) == ("questionnaires_due", "GAD-7")
    case.questionnaires(T0 + days(22), "GAD-7")
    assert case.code("questionnaires_current", T0 + days(22)) is None


def test_questionnaires_due_again_after_the_eighth_session() -> None:
    """The check-in after session 4 does not cover session 9."""
    case = Case().sessions(4).questionnaires(T0 + days(22))
    for n in range(4, 8):
        case.session(T0 + days(7 * n))
    assert case.code("questionnaires_current", T0 + days(60)) == "questionnaires_due"


def test_questionnaire_interval_follows_the_threshold() -> None:
    """A practice asking every 3 sessions blocks the fourth."""
    case = Case().sessions(3)
    assert case.code("questionnaires_current", T0 + days(30)) is None
    tighter = {**THRESHOLDS, "questionnaire_every_sessions": 3}
    assert case.code("questionnaires_current", T0 + days(30), thresholds=tighter) == "questionnaires_due"


def test_session_too_short_to_bill() -> None:
    """Completing a session 15 minutes after its start is blocked; at 16 minutes it is a visit."""
    case = Case().move("start_session", T0, "active_treatment", "in_session")
    blocker = case.run("session_billable_length", T0 + minutes(15))
    assert blocker is not None
    assert blocker.code == "session_too_short"
    assert dict(blocker.facts) == {"minutes": "15", "minimum": "16"}
    assert case.code("session_billable_length", T0 + minutes(16)) is None
    assert Case().code("session_billable_length") == "session_too_short"  # no session started at all


def test_session_booking_waits_for_the_completed_intake() -> None:
    """Psychotherapy sessions are booked only after the intake; other kinds are not checked."""
    session = {"kind": "psychotherapy_session"}
    assert Case().code("session_booking_after_intake", data=session) == "intake_not_completed"
    assert Case().code("session_booking_after_intake", data={"kind": "intake"}) is None
    assert Case().move("complete_intake").code("session_booking_after_intake", data=session) is None


def test_appointment_open_for_updates() -> None:
    """An appointment change must name a booked appointment of the case."""
    case = Case().fact("appointment", book("intake", T0 + days(3)))
    assert case.code("appointment_open", data={"appointment": "a1"}) is None
    assert case.code("appointment_open", data={"appointment": "a9"}) == "appointment_unknown"
    case.fact("appointment_update", {"appointment": "a1", "action": "no_show"})
    assert case.code("appointment_open", data={"appointment": "a1"}) == "appointment_closed"


def test_appointment_not_in_past_refuses_a_new_time_already_gone() -> None:
    """A booking or a reschedule to a time before now is refused unless a late entry with a reason;
    a cancellation (no new time) is not checked."""
    just_gone = book("intake", T0 - timedelta(minutes=1))
    assert Case().code("appointment_not_in_past", data=just_gone) == "appointment_in_past"
    assert Case().code("appointment_not_in_past", data=book("intake", T0)) is None
    late = {**just_gone, "late_entry": True, "reason": "phone intake, entered late"}
    assert Case().code("appointment_not_in_past", data=late) is None
    assert Case().code("appointment_not_in_past", data={**late, "reason": None}) == "appointment_in_past"
    case = Case().fact("appointment", book("intake", T0 + days(3)))
    back = {"appointment": "a1", "action": "reschedule", "starts_at": (T0 - days(1)).isoformat()}
    assert case.code("appointment_not_in_past", data=back) == "appointment_in_past"
    assert case.code("appointment_not_in_past", data={"appointment": "a1", "action": "cancel"}) is None


# --- inactivity -----------------------------------------------------------------------------------


def test_inactivity_counts_sixty_days_from_the_last_session() -> None:
    """A day short of 60 days after the last session blocks; at 60 days the case may be discharged."""
    case = Case().session(T0)
    last = T0 + minutes(53)
    blocker = case.run("inactivity_elapsed", last + days(60) - minutes(1))
    assert blocker is not None
    assert blocker.code == "not_inactive"
    assert "59 days ago, on 2026-03-02" in blocker.message and "after 60 days" in blocker.message
    assert case.code("inactivity_elapsed", last + days(60)) is None


def test_inactivity_counts_from_a_resume() -> None:
    """A case resumed from hold counts its inactivity from the resume."""
    case = Case().session(T0).move("hold", T0 + days(1)).move("resume", T0 + days(50))
    assert case.code("inactivity_elapsed", T0 + days(70)) == "not_inactive"
    assert case.code("inactivity_elapsed", T0 + days(110)) is None


def test_inactivity_follows_the_threshold() -> None:
    """With inactivity_days=45 the case may be discharged at 45 days."""
    case = Case().session(T0)
    shorter = {**THRESHOLDS, "inactivity_days": 45}
    assert case.code("inactivity_elapsed", T0 + days(46)) == "not_inactive"
    assert case.code("inactivity_elapsed", T0 + days(46), thresholds=shorter) is None


def test_no_session_booked_blocks_inactivity_discharge() -> None:
    """A session booked ahead keeps the case open; once cancelled or past, it does not."""
    case = Case().fact("appointment", book("psychotherapy_session", T0 + days(70)))
    blocker = case.run("no_session_booked", T0 + days(60))
    assert blocker is not None
    assert (blocker.code, dict(blocker.facts)) == ("session_booked", {"appointment": "a1", "starts_on": "2026-05-11"})
    assert case.code("no_session_booked", T0 + days(71)) is None
    case.fact("appointment_update", {"appointment": "a1", "action": "cancel"}, T0 + days(61))
    assert case.code("no_session_booked", T0 + days(61)) is None


# --- every blocker at once ----------------------------------------------------------------------


def test_a_refused_session_start_lists_every_blocker() -> None:
    """No consent and questionnaires due: start_session is refused with both, each named by its guard."""
    case = Case().sessions(4)
    assert verdict_codes("start_session", "active_treatment", case, T0 + days(30)) == [
        ("consent_signed", "consent_missing"),
        ("questionnaires_current", "questionnaires_due"),
    ]
    case.fact("consent", consent(), T0 + days(29)).questionnaires(T0 + days(29))
    assert verdict_codes("start_session", "active_treatment", case, T0 + days(30)) == []


def test_a_refused_intake_completion_lists_required_data_and_guards() -> None:
    """complete_intake without goals or baseline scores lists both."""
    assert verdict_codes("complete_intake", "intake_assessment", Case()) == [
        ("requires", "goals_required"),
        ("baseline_questionnaires", "baseline_questionnaires_missing"),
    ]
    done = Case().questionnaires(T0)
    assert verdict_codes("complete_intake", "intake_assessment", done, data={"goals": "sleep; mood"}) == []


def test_a_refused_inactivity_discharge_lists_every_blocker() -> None:
    """Too soon and a session booked: discharge_inactive names both."""
    case = Case().session(T0).fact("appointment", book("psychotherapy_session", T0 + days(14)))
    assert verdict_codes("discharge_inactive", "active_treatment", case, T0 + days(10)) == [
        ("inactivity_elapsed", "not_inactive"),
        ("no_session_booked", "session_booked"),
    ]


def test_a_safety_signal_waits_for_a_safety_assessment() -> None:
    """A PHQ-9 answered above 0 on item 9 holds the next session until a clinician's safety assessment."""
    case = Case().fact("questionnaire", {"instrument": "PHQ-9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 1]})
    assert case.code("safety_signal_resolved", T0 + days(1)) == "safety_assessment_required"
    case.fact("safety_assessment", {"screen": "cssrs_screener", "screen_result": "low_risk", "plan": "reviewed"})
    assert case.code("safety_signal_resolved", T0 + days(1)) is None


GUARD_TESTS = {
    "intake_booked": test_intake_booked_needs_an_intake_still_ahead,
    "consent_signed": test_consent_missing_names_the_psychotherapy_form,
    "baseline_questionnaires": test_baseline_questionnaires_needs_both,
    "questionnaires_current": test_questionnaires_after_the_fourth_session_clear_it,
    "session_billable_length": test_session_too_short_to_bill,
    "session_booking_after_intake": test_session_booking_waits_for_the_completed_intake,
    "appointment_open": test_appointment_open_for_updates,
    "appointment_not_in_past": test_appointment_not_in_past_refuses_a_new_time_already_gone,
    "inactivity_elapsed": test_inactivity_counts_sixty_days_from_the_last_session,
    "no_session_booked": test_no_session_booked_blocks_inactivity_discharge,
    "safety_signal_resolved": test_a_safety_signal_waits_for_a_safety_assessment,
}
"""Which test shows each guard blocking (with its code) and passing."""


def test_every_guard_of_the_workflow_has_a_test() -> None:
    """Each named guard of the psychotherapy pathway has a test above that blocks and passes it."""
    assert set(GUARD_TESTS) == set(WF.guards)


# --- billing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "code"),
    [(0, None), (15, None), (16, "90832"), (37, "90832"), (38, "90834"), (52, "90834"), (53, "90837"), (90, "90837")],
)
def test_psychotherapy_codes_by_time(length: int, code: str | None) -> None:
    """90832 from 16 minutes, 90834 from 38, 90837 from 53; shorter is not billable."""
    assert psychotherapy_code(length, THRESHOLDS) == code


@given(psychotherapy_session_minutes())
def test_a_longer_session_never_earns_a_lower_code(length: int) -> None:
    """The code never goes down as a session gets longer, and every billable length has one."""
    codes = [None, "90832", "90834", "90837"]
    assert codes.index(psychotherapy_code(length, THRESHOLDS)) <= codes.index(psychotherapy_code(length + 1,
                                                                                                 THRESHOLDS))
    assert (psychotherapy_code(length, THRESHOLDS) is None) == (length < 16)


def test_visits_are_read_from_the_moves() -> None:
    """The intake bills 90791, each completed session by its length, a session ended early not at all."""
    case = Case().move("start_intake", T0).move("complete_intake", T0 + minutes(58))
    case.session(T0 + days(7), 40).session(T0 + days(14), 20)
    case.move("start_session", T0 + days(21)).move("end_session_early", T0 + days(21) + minutes(10))
    case.move("start_session", T0 + days(28))  # still under way: not listed yet
    assert visits(CaseFacts(case.raw), THRESHOLDS) == [
        Visit("intake_assessment", T0, 58, "90791"),
        Visit("psychotherapy", T0 + days(7), 40, "90834"),
        Visit("psychotherapy", T0 + days(14), 20, "90832"),
        Visit("psychotherapy", T0 + days(21), 10, None),
    ]
    assert [v.billable for v in visits(CaseFacts(case.raw), THRESHOLDS)] == [True, True, True, False]


# --- the definition -------------------------------------------------------------------------------


def test_shared_facts_are_the_same_specs_in_both_pathways() -> None:
    """Payment, consent withdrawal, questionnaire and appointment changes are one spec, used by both pathways."""
    for kind in ("payment", "consent_withdrawn", "questionnaire", "appointment_update"):
        assert WF.facts[kind].spec is KAP_PATHWAY.facts[kind].spec
    assert WF.facts["payment"].spec is clinical_facts.PAYMENT
    for kind in ("inquiry", "consent", "appointment"):  # same fields, each pathway's own vocabulary
        names = [f.name for f in WF.facts[kind].spec.fields]
        assert names == [f.name for f in KAP_PATHWAY.facts[kind].spec.fields]


def test_appointment_kinds_are_the_pathways_own() -> None:
    """A psychotherapy case books intakes and sessions (53 minutes by default), never KAP sessions."""
    spec = WF.facts["appointment"].spec
    assert spec(book("psychotherapy_session", T0 + days(1)), T0)["minutes"] == 53
    assert spec(book("intake", T0 + days(1)), T0)["minutes"] == 60
    with pytest.raises(Exception, match="kind"):
        spec(book("kap_session", T0 + days(1)), T0)


def test_the_workflow_declares_its_intake_roles_and_version() -> None:
    """The pathway's name, version, intake fact, staff and roles (no prescriber)."""
    assert (WF.name, WF.version, WF.intake_fact, WF.initial) == ("psychotherapy", "1", "inquiry", "inquiry")
    assert WF.roles == {"client", "front_desk", "therapist", "billing", "auditor", "system"}
    assert WF.staff_roles == {"front_desk", "therapist"}
    assert {s.name for s in WF.states if s.final} == {"discharged", "referred", "withdrawn"}


def test_a_new_version_retimes_the_inactivity_discharge() -> None:
    """build_psychotherapy_workflow with inactivity_days=45 changes both the guard's threshold and the timer."""
    v2 = build_psychotherapy_workflow("2", inactivity_days=45)
    timer = next(r for r in v2.state("active_treatment").reminders if r.fires)
    assert (v2.version, v2.thresholds["inactivity_days"], timer.after) == ("2", 45, days(45))
    assert next(r for r in WF.state("active_treatment").reminders if r.fires).after == days(60)


def test_an_unknown_threshold_is_refused() -> None:
    """A misspelt threshold is a definition error, not a silent no-op."""
    with pytest.raises(WorkflowDefinitionError, match="inactivity_day"):
        build_psychotherapy_workflow("2", inactivity_day=45)
