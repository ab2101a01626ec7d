"""Comparing workflow versions, and the rule that decides whether a case in flight may change version."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from practice_versions import KAP_V2, with_guard, with_state, with_transition, without_state

from kapflow.domain.case import CaseRecord, fold_fact, fold_move
from kapflow.domain.versions import Change, can_migrate, diff_workflows
from kapflow.domain.workflow import GuardContext, Workflow
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.kap.guards import ConsentSigned

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
V1 = KAP_PATHWAY


class Story:
    """A KAP case's projection, built fact by fact and move by move (facts parsed by the real specs)."""

    def __init__(self) -> None:
        self.at = T0
        inquiry = {"first_name": "Sample", "last_name": "Client", "date_of_birth": "1985-06-30",
                   "email": "client@example.org"}
        self.raw: dict[str, Any] = fold_fact({}, "inquiry", T0, "fd", V1.facts["inquiry"].spec(inquiry, T0))
        self.state, self.previous = "inquiry", None

    def fact(self, kind: str, data: dict[str, Any], minutes: float = 1) -> Story:
        self.at += timedelta(minutes=minutes)
        self.raw = fold_fact(self.raw, kind, self.at, "staff", V1.facts[kind].spec(data, self.at))
        return self

    def move(self, trigger: str, dest: str, minutes: float = 1) -> Story:
        self.at += timedelta(minutes=minutes)
        self.raw = fold_move(self.raw, trigger, self.state, dest, self.at)
        self.previous, self.state = self.state, dest
        return self

    def case(self, version: str = "1") -> CaseRecord:
        return CaseRecord("case-story", "kap", version, self.state, self.previous, 1, 1, "", self.raw, T0, self.at)


def booked() -> Story:
    starts = (T0 + timedelta(days=3)).isoformat()
    return Story().fact("appointment", {"kind": "evaluation", "starts_at": starts, "clinician": "np-rowan"}).move(
        "book_evaluation", "evaluation_booked")


def ready(consent: bool = True, sessions: int = 1) -> Story:
    s = booked().fact("payment", {"amount": 250, "purpose": "evaluation_fee"})
    s.move("start_evaluation", "evaluating", minutes=3 * 24 * 60)
    s.fact("screening", {"exclusions": [], "flags": []}).move("find_suitable", "evaluated")
    today = s.at.date()
    s.fact("prescription", {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                            "expires_on": (today + timedelta(days=90)).isoformat()})
    if consent:
        s.fact("consent", {"form_version": "v3", "signed_on": today.isoformat()})
    s.fact("treatment_plan", {"action": "set", "sessions": sessions})
    return s.move("start_intention_setting", "intention_setting").move("complete_intention_setting", "ready_for_kap")


def dosing(systolic: int = 138, diastolic: int = 86) -> Story:
    """In dosing on the plan's only session, pre-dose vitals at ``systolic``/``diastolic``."""
    s = ready().fact("vitals", {"phase": "pre_dose", "systolic": systolic, "diastolic": diastolic})
    s.fact("fasting", {"attested": True}).fact("escort", {"name": "Escort Sample", "phone": "+1 555 010 0151"})
    s.fact("clinician_present", {"clinician": "Riley Sample"})
    return s.move("start_kap_session", "dosing")


def codes(case: CaseRecord, new: Workflow) -> list[str]:
    return [r.code for r in can_migrate(case, V1, new).reasons]


# ------------------------------------------------------------------ the diff


def test_diff_of_a_thresholds_version_lists_only_the_thresholds() -> None:
    """v1 against with_thresholds v2: the two blood-pressure limits, old -> new, and nothing else."""
    diff = diff_workflows(V1, KAP_V2)
    assert diff.thresholds_changed == (Change("max_diastolic", 90, 85), Change("max_systolic", 140, 135))
    assert not diff.empty
    body = diff.as_dict()
    assert json.loads(json.dumps(body)) == body
    assert [k for k, v in body.items() if v and k not in ("name", "from_version", "to_version")] == [
        "thresholds_changed"
    ]
    assert diff.text().splitlines() == [
        "workflow kap: version 1 -> 2", "thresholds changed:", "  max_diastolic: 90 -> 85",
        "  max_systolic: 140 -> 135",
    ]


def test_diff_of_a_version_with_itself_is_empty() -> None:
    """Nothing changed: empty, and the text says so."""
    diff = diff_workflows(V1, V1)
    assert diff.empty
    assert diff.text().endswith("no changes")


def test_diff_of_a_removed_state() -> None:
    """Removing reassessment removes its state and transitions, and narrows the transitions that left it."""
    diff = diff_workflows(V1, without_state("reassessment", "no-reassessment"))
    assert diff.states_removed == ("reassessment",)
    assert diff.transitions_removed == ("begin_reassessment", "complete_reassessment")
    changed = {t.name: t.changes for t in diff.transitions_changed}
    assert set(changed) == {"complete_treatment", "hold", "withdraw"}
    (sources,) = changed["complete_treatment"]
    assert sources == Change("sources", ["ready_for_kap", "reassessment"], ["ready_for_kap"])
    assert "  complete_treatment\n    sources: -reassessment" in diff.text()
    assert "states removed: reassessment" in diff.text()


def test_diff_of_changed_transition_roles() -> None:
    """A KAP session started by the prescriber only: one change, the roles, old -> new."""
    diff = diff_workflows(V1, with_transition("start_kap_session", "3", roles=frozenset({"prescriber"})))
    (item,) = diff.transitions_changed
    assert item.name == "start_kap_session"
    assert item.changes == (Change("roles", ["prescriber", "therapist"], ["prescriber"]),)
    assert "roles: -therapist" in diff.text()


def test_diff_of_an_added_guard() -> None:
    """A guard added to a transition shows as a new guard and as a change of that transition."""
    diff = diff_workflows(V1, with_guard("complete_intention_setting", "consent_first", ConsentSigned(), "3"))
    assert diff.guards_added == ("consent_first",)
    assert diff.guards_removed == ()
    (item,) = diff.transitions_changed
    assert item.changes == (Change("guards", [], ["consent_first"]),)


def test_diff_of_reminders_finality_and_fact_roles() -> None:
    """A reminder dropped, one re-timed, a state made final, a fact kind recorded by one more role."""
    booked_state = V1.state("evaluation_booked")
    kept = tuple(r for r in booked_state.reminders if r.name != "evaluation_fee_due")
    retimed = tuple(replace(r, before_appointment=timedelta(hours=72)) if r.name == "evaluation_fee_due_48h"
                    else r for r in kept)
    new = with_state(replace(booked_state, reminders=retimed), "3")
    payment = V1.facts["payment"]
    new = replace(new, facts={**new.facts, "payment": replace(payment, roles=payment.roles | {"prescriber"})},
                  guards=dict(new.guards))
    diff = diff_workflows(V1, new)
    (state,) = diff.states_changed
    assert state.name == "evaluation_booked"
    assert state.changes == (
        Change("reminder evaluation_fee_due",
               "email to client, 0min after entry, while evaluation_fee_paid blocks", None),
        Change("reminder evaluation_fee_due_48h.before_appointment", "2d", "3d"),
    )
    (fact,) = diff.facts_changed
    assert fact.changes == (Change("roles", ["billing", "front_desk"], ["billing", "front_desk", "prescriber"]),)
    assert json.loads(json.dumps(diff.as_dict())) == diff.as_dict()


# ------------------------------------------------------------- can_migrate


def test_a_case_in_flight_may_move_to_a_thresholds_version() -> None:
    """A case ready for KAP entered its state without a blood-pressure check: it may move."""
    verdict = can_migrate(ready().case(), V1, KAP_V2)
    assert verdict.ok and verdict.text() == "can move"
    assert (verdict.from_version, verdict.to_version) == ("1", "2")


def test_a_dosing_case_whose_vitals_the_new_limit_refuses_cannot_move() -> None:
    """In dosing at 138/86: v2 (135/85) would not have started the session; that is the one reason."""
    verdict = can_migrate(dosing().case(), V1, KAP_V2)
    (reason,) = verdict.reasons
    assert reason.code == "entry_guard_fails"
    assert reason.guard == "pre_dose_vitals_in_range"
    facts = dict(reason.facts)
    assert facts["trigger"] == "start_kap_session" and facts["blocker"] == "pre_dose_blood_pressure_high"
    assert facts["limit"] == "135/85"
    assert verdict.text().startswith("entry_guard_fails: version 2 would not have let start_kap_session into dosing")


def test_entry_guards_see_the_case_as_it_entered_not_as_it_is_now() -> None:
    """A dosing case within the limits may move: the session it uses, its pre-dose checklist and time
    passing since do not count against it (today they would fail plan, integration and checklist guards)."""
    case = dosing(systolic=120, diastolic=80).case()
    assert codes(case, KAP_V2) == []
    later = replace(case, updated_at=case.updated_at + timedelta(days=30))
    assert codes(later, KAP_V2) == []


def test_a_booked_case_whose_appointment_has_passed_may_still_move() -> None:
    """The evaluation was ahead when the case was booked; that it is past now does not block the move."""
    assert codes(booked().case(), KAP_V2) == []


def test_a_case_in_its_initial_state_has_no_entry_guards() -> None:
    """No move yet, nothing to re-evaluate: even a version with a guard on every way in lets it move."""
    assert codes(Story().case(), with_guard("release_evaluation", "consent_first", ConsentSigned(), "3")) == []


def test_a_finished_case_cannot_move() -> None:
    """A completed case stays on its version: reason final, and nothing else is judged."""
    case = replace(ready().case(), state="completed")
    assert codes(case, KAP_V2) == ["final"]


def test_a_case_whose_state_is_gone_cannot_move() -> None:
    """In reassessment, and the new version has no reassessment: state_missing."""
    case = ready().move("begin_reassessment", "reassessment").case()
    verdict = can_migrate(case, V1, without_state("reassessment", "3"))
    (reason,) = verdict.reasons
    assert reason.code == "state_missing" and dict(reason.facts) == {"state": "reassessment"}


def test_a_held_case_whose_way_back_is_gone_cannot_move() -> None:
    """On hold from reassessment: the new version cannot resume it there (previous_state_missing)."""
    case = ready().move("begin_reassessment", "reassessment").move("hold", "on_hold").case()
    assert codes(case, without_state("reassessment", "3")) == ["previous_state_missing"]
    held_from_ready = ready().move("hold", "on_hold").case()
    assert codes(held_from_ready, without_state("reassessment", "3")) == []


def test_a_guard_added_on_the_way_in_is_checked() -> None:
    """v3 requires consent before intentions are complete: a case that had none then cannot move."""
    v3 = with_guard("complete_intention_setting", "consent_first", ConsentSigned(), "3")
    assert codes(ready(consent=True).case(), v3) == []
    verdict = can_migrate(ready(consent=False).case(), V1, v3)
    (reason,) = verdict.reasons
    assert reason.code == "entry_guard_fails" and dict(reason.facts)["blocker"] == "consent_missing"


def test_required_data_is_not_asked_again() -> None:
    """The intentions were given with the move; a version requiring more data of it does not block."""
    v3 = with_transition("complete_intention_setting", "3", requires=("intentions", "witness"))
    assert codes(ready().case(), v3) == []


def test_a_state_made_final_would_end_the_case_unmoved() -> None:
    """Integration session final in the new version: a case in it would end without a move."""
    final = replace(V1.state("integration_session"), final=True)
    transitions = tuple(t for t in V1.transitions if t.trigger != "complete_integration_session")
    transitions = tuple(replace(t, sources=tuple(s for s in t.sources if s != "integration_session"))
                        for t in transitions)
    v3 = with_state(final, "3", transitions=transitions)
    case = ready().move("start_integration_session", "integration_session").case()
    assert codes(case, v3) == ["becomes_final"]


@dataclass(frozen=True)
class SeesTheClock:
    """A guard recording the instant it was evaluated at."""

    seen: list[datetime]
    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> None:
        self.seen.append(ctx.now)


def test_entry_guards_run_at_the_instant_of_the_move() -> None:
    """The clock a re-evaluated guard sees is the entering move's, so the verdict never depends on today."""
    seen: list[datetime] = []
    v3 = with_guard("book_evaluation", "sees_the_clock", SeesTheClock(seen), "3")
    story = booked()
    assert codes(story.case(), v3) == []
    assert seen == [story.at]
