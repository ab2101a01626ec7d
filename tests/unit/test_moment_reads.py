"""Moments that say what they read (``ReadingMoment``): the shipped workflows' say it truthfully, and a case's
plan kept with its projection is the plan worked out afresh, whatever the case records or does next."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, FactEntry, Move, fold_fact, fold_move, stored_projection
from kapflow.domain.errors import WorkflowDefinitionError
from kapflow.domain.timers import plan_timers, planned
from kapflow.domain.workflow import ReadingMoment, Workflow, moment_reading
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
SHIPPED = (KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY)

# What a case may record or do: each a fact (kind, data) or a move (trigger), the data what the moments read.
FACTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("questionnaire", answered("PHQ-9", 6)),
    ("questionnaire", answered("PHQ-9", 27)),  # item 9 answered: a safety signal
    ("questionnaire", answered("GAD-7", 4)),
    ("questionnaire", answered("GAD-7", 19)),
    ("prescription", {"prescriber": "NP Synthetic", "issued_on": "2026-03-01", "expires_on": "2026-08-28"}),
    ("prescription", {"prescriber": "NP Synthetic", "issued_on": "2026-04-01", "expires_on": "2026-09-27"}),
    ("good_faith_estimate", {"sessions": 3}),
    ("adverse_event", {"severity": "serious", "description": "synthetic"}),
    ("adverse_event", {"severity": "mild", "description": "synthetic"}),
    ("safety_assessment", {"screen": "cssrs_screener", "screen_result": "negative", "plan": "synthetic"}),
    ("appointment", {"kind": "kap_session", "starts_at": "2026-03-20T15:00:00+00:00", "minutes": 120,
                     "location": "in_person"}),
    ("appointment", {"kind": "integration_session", "starts_at": "2026-03-23T15:00:00+00:00", "minutes": 50,
                     "location": "telehealth"}),
    ("appointment_update", {"appointment": "a1", "action": "cancel", "reason": None}),
    ("appointment_update", {"appointment": "a2", "action": "reschedule", "starts_at": "2026-03-24T15:00:00+00:00",
                            "reason": None}),
    ("vitals", {"phase": "pre_dose", "systolic": 120, "diastolic": 80}),
    ("payment", {"amount": "250.00", "purpose": "evaluation_fee"}),
)
TRIGGERS = ("find_suitable", "complete_intake", "start_kap_session", "start_session", "hold_for_safety_review",
            "continue_after_review", "discharge", "complete_integration")


class _Recording:
    """A projection that notes which fact kinds and which moves' triggers are asked of it; anything else asked
    (every fact, every move) is noted by name. Views a moment derives are worked out here, through it."""

    def __init__(self, facts: CaseFacts) -> None:
        self._facts = facts
        self.kinds: set[str] = set()
        self.triggers: set[str] = set()
        self.other: set[str] = set()

    def of_kind(self, kind: str) -> list[FactEntry]:
        self.kinds.add(kind)
        return self._facts.of_kind(kind)

    def of_kinds(self, kinds: tuple[str, ...]) -> list[FactEntry]:
        self.kinds.update(kinds)
        return self._facts.of_kinds(kinds)

    def latest(self, kind: str) -> FactEntry | None:
        self.kinds.add(kind)
        return self._facts.latest(kind)

    def where(self, kind: str, name: str, value: str) -> list[FactEntry]:
        self.kinds.add(kind)
        return self._facts.where(kind, name, value)

    def since(self, kind: str, instant: datetime) -> list[FactEntry]:
        self.kinds.add(kind)
        return self._facts.since(kind, instant)

    def moves_by(self, trigger: str) -> list[Move]:
        self.triggers.add(trigger)
        return self._facts.moves_by(trigger)

    def last_move(self, trigger: str | None = None) -> Move | None:
        if trigger is None:
            self.other.add("last_move of any trigger")
        else:
            self.triggers.add(trigger)
        return self._facts.last_move(trigger)

    def derived(self, key: object, compute: Callable[[CaseFacts], Any], **_how: object) -> Any:
        return compute(cast(CaseFacts, self))

    def __getattr__(self, name: str) -> Any:
        self.other.add(name)
        return getattr(self._facts, name)


def _history() -> list[dict[str, Any]]:
    """A case that records each fact and makes each move above, in turn: the projection after each entry."""
    raw: dict[str, Any] = {"facts": [], "moves": []}
    seen = [raw]
    for n in range(max(len(FACTS), len(TRIGGERS))):
        at = T0 + timedelta(days=n)
        if n < len(FACTS):
            raw = fold_fact(raw, *FACTS[n][:1], at, "synthetic-1", FACTS[n][1])
            seen.append(raw)
        if n < len(TRIGGERS):
            raw = fold_move(raw, TRIGGERS[n], "a", "b", at + timedelta(hours=1))
            seen.append(raw)
    return seen


def _moments() -> Iterable[tuple[str, str, Any]]:
    for wf in SHIPPED:
        for name, moment in sorted(wf.moments.items()):
            yield wf.name, name, moment


@pytest.mark.parametrize(("workflow", "name", "moment"), list(_moments()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_each_shipped_moment_reads_only_what_it_declares(workflow: str, name: str, moment: Any) -> None:
    """Recorded while the moment is worked out on every projection of a case that records and does all of it."""
    assert isinstance(moment, ReadingMoment), f"{workflow}: moment {name!r} does not say what it reads"
    kinds: set[str] = set()
    triggers: set[str] = set()
    other: set[str] = set()
    answers = set()
    for raw in _history():
        seen = _Recording(CaseFacts(raw))
        answers.add(moment.compute(cast(CaseFacts, seen), PracticeCalendar()))
        kinds |= seen.kinds
        triggers |= seen.triggers
        other |= seen.other
    assert len(answers) >= 2, "the case above should set this moment"
    assert not other, f"{workflow}: moment {name!r} reads {sorted(other)} (declare it with facts and moves only)"
    assert kinds <= moment.facts, f"{workflow}: moment {name!r} reads undeclared kinds {sorted(kinds - moment.facts)}"
    assert triggers <= moment.moves, (f"{workflow}: moment {name!r} reads the moves of undeclared triggers "
                                      f"{sorted(triggers - moment.moves)}")


_entries = st.lists(st.one_of(st.integers(0, len(FACTS) - 1).map(lambda n: ("facts", n)),
                              st.integers(0, len(TRIGGERS) - 1).map(lambda n: ("moves", n))), max_size=24)


@settings(max_examples=60, deadline=None)
@given(_entries, st.sampled_from(("ready_for_kap", "dosing", "evaluation_booked", "completed")),
       st.sets(st.integers(0, 23)))
def test_a_plan_kept_with_the_projection_is_the_plan_worked_out_afresh(
    path: list[tuple[str, int]], state: str, planned_at: set[int],
) -> None:
    """The KAP plan of each projection the one before extends equals the plan of the same entries read afresh
    (nothing kept), whichever projections along the way were planned (and so kept what they worked out)."""
    raw: dict[str, Any] = stored_projection([], [])
    view = CaseFacts(raw)
    for n, (section, which) in enumerate(path):
        raw = _entry(raw, section, which, T0 + timedelta(hours=6 * n))
        if n in planned_at:
            plan_timers(KAP_PATHWAY, "case-1", state, view, T0)
        view = view.extended(raw, section)
        assert plan_timers(KAP_PATHWAY, "case-1", state, view, T0) == plan_timers(
            KAP_PATHWAY, "case-1", state, CaseFacts(raw), T0)


_STATES = sorted({(wf.name, s) for wf in SHIPPED for s in wf._states})


@settings(max_examples=80, deadline=None)
@given(_entries, st.sampled_from(_STATES), st.sets(st.integers(0, 23)))
def test_a_whole_plan_carried_to_the_next_projection_is_the_plan_worked_out_afresh(
    path: list[tuple[str, int]], where: tuple[str, str], planned_at: set[int],
) -> None:
    """``planned`` keeps a state's whole plan across an entry it does not read (its reminders counted from
    entering the state read every move: their keys count them); each projection's plan still equals the plan
    of the same entries worked out afresh, in every state of the shipped workflows."""
    wf = next(w for w in SHIPPED if w.name == where[0])
    raw: dict[str, Any] = stored_projection([], [])
    view = CaseFacts(raw)
    for n, (section, which) in enumerate(path):
        raw = _entry(raw, section, which, T0 + timedelta(hours=6 * n))
        if n in planned_at:
            planned(wf, "case-1", where[1], view, T0)
        view = view.extended(raw, section)
        assert planned(wf, "case-1", where[1], view, T0) == plan_timers(wf, "case-1", where[1], CaseFacts(raw), T0)


def test_a_fact_no_reminder_reads_carries_the_plan_and_a_move_plans_again() -> None:
    """Vitals and payments are read by no reminder: the next projection has the very plan; a move (whose count
    keys a reminder counted from entering the state) and a prescription (a moment reads it) plan again."""
    raw = fold_fact(stored_projection([], []), *FACTS[4][:1], T0, "synthetic-1", FACTS[4][1])
    view = CaseFacts(raw)
    first = planned(KAP_PATHWAY, "case-1", "ready_for_kap", view, T0)
    for kind, data in (FACTS[14], FACTS[15]):
        raw = fold_fact(raw, kind, T0, "synthetic-1", data)
        view = view.extended(raw, "facts")
        assert planned(KAP_PATHWAY, "case-1", "ready_for_kap", view, T0) is first
    for section, which in (("moves", 0), ("facts", 5)):
        raw = _entry(raw, section, which, T0 + timedelta(hours=1))
        view = view.extended(raw, section)
        again = planned(KAP_PATHWAY, "case-1", "ready_for_kap", view, T0)
        assert again is not first
        assert again == plan_timers(KAP_PATHWAY, "case-1", "ready_for_kap", CaseFacts(raw), T0)
        first = again


def _entry(raw: dict[str, Any], section: str, which: int, at: datetime) -> dict[str, Any]:
    """``raw`` with one more fact (``FACTS[which]``) or move (``TRIGGERS[which]``, a self-loop: the case's state
    is what the test plans for) recorded at ``at``."""
    if section == "facts":
        return fold_fact(raw, FACTS[which][0], at, "synthetic-1", FACTS[which][1])
    return fold_move(raw, TRIGGERS[which], "a", "b", at)


def test_a_moment_that_says_it_reads_what_the_workflow_lacks_is_refused() -> None:
    moment = moment_reading(facts=("no_such_fact",), moves=("no_such_trigger",))(lambda facts, cal: None)
    with pytest.raises(WorkflowDefinitionError) as refused:
        Workflow(**{**_fields(KAP_PATHWAY), "moments": {**KAP_PATHWAY.moments, "odd": moment}})
    said = str(refused.value)
    assert "moment 'odd' reads unknown fact kind 'no_such_fact'" in said
    assert "moment 'odd' reads the moves of unknown trigger 'no_such_trigger'" in said


def test_a_moment_that_says_nothing_is_worked_out_for_every_plan() -> None:
    """A workflow's own moment (a plain function) is still planned from: afresh each time, as before."""
    asked: list[int] = []

    def plain(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
        asked.append(1)
        found = facts.latest("prescription")
        return found.at if found else None

    wf = Workflow(**{**_fields(KAP_PATHWAY), "moments": {**KAP_PATHWAY.moments, "prescription_lapses": plain}})
    raw = fold_fact({"facts": [], "moves": []}, *FACTS[4][:1], T0, "synthetic-1", FACTS[4][1])
    view = CaseFacts(raw)
    first = plan_timers(wf, "case-1", "ready_for_kap", view, T0)
    later = view.extended(fold_move(raw, "discharge", "a", "b", T0), "moves")
    assert plan_timers(wf, "case-1", "ready_for_kap", later, T0).keys() >= {
        k for k, t in first.items() if t.reminder.startswith("prescription")}
    assert len(asked) == 2


def _fields(wf: Workflow) -> dict[str, Any]:
    return {f: getattr(wf, f) for f in wf.__dataclass_fields__ if wf.__dataclass_fields__[f].init}
