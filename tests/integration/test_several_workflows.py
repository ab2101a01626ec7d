"""One engine runs several workflows: each case follows its own, and nothing assumes the KAP pathway."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from support import FRONT_DESK, INQUIRY, THERAPIST, who

from kapflow import build_engine
from kapflow.app.engine import Engine
from kapflow.errors import InvalidInput, UnknownTrigger
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

BOTH = [KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY]
INTAKE = {**INQUIRY, "concerns": ["anxiety"]}


@pytest.fixture
def both(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    engine = build_engine(any_ready_url, BOTH, clock=clock)
    yield engine
    engine.close()


def test_opening_a_case_names_the_workflow_when_several_are_loaded(both: Engine) -> None:
    """Without a workflow name the engine refuses to guess, names what is loaded, and writes nothing."""
    with pytest.raises(InvalidInput, match="several workflows") as raised:
        both.open_case(INTAKE, actor=FRONT_DESK)
    assert raised.value.field == "workflow"
    assert "kap" in raised.value.message and "psychotherapy" in raised.value.message
    assert both.count_cases() == 0


def test_an_unknown_workflow_name_is_bad_input(both: Engine) -> None:
    """A workflow name the engine has not loaded is refused with the names it has."""
    with pytest.raises(InvalidInput, match="unknown workflow 'dentistry'; loaded: kap, psychotherapy"):
        both.open_case(INTAKE, actor=FRONT_DESK, workflow="dentistry")


def test_each_case_follows_its_own_workflow(both: Engine) -> None:
    """A KAP case and a psychotherapy case opened side by side each move by their own transitions."""
    kap = both.open_case(INTAKE, actor=FRONT_DESK, workflow="kap")
    therapy = both.open_case(INTAKE, actor=FRONT_DESK, workflow="psychotherapy")
    assert (both.case(kap.case_id).workflow, both.case(therapy.case_id).workflow) == ("kap", "psychotherapy")
    with pytest.raises(UnknownTrigger):
        both.fire(therapy.case_id, "book_evaluation", actor=FRONT_DESK)  # a KAP trigger, unknown here
    kap_triggers = {v.trigger for v in both.available(kap.case_id)}
    therapy_triggers = {v.trigger for v in both.available(therapy.case_id)}
    assert "book_evaluation" in kap_triggers and "book_intake" in therapy_triggers
    assert not kap_triggers & {"book_intake"}
    assert both.verify_audit().ok


def test_appointments_are_booked_with_each_workflows_kinds(both: Engine, clock: FakeClock) -> None:
    """Each workflow books the appointment kinds it declares, through the facts it declares."""
    therapy = both.open_case(INTAKE, actor=FRONT_DESK, workflow="psychotherapy").case_id
    booked = both.book_appointment(therapy, "intake", clock.now() + timedelta(days=3), actor=FRONT_DESK, **who(therapy))
    assert booked.extra["appointment"] == "a1"
    (appointment,) = both.appointments(therapy)
    assert (appointment.kind, appointment.minutes) == ("intake", 60)
    with pytest.raises(InvalidInput):
        both.book_appointment(therapy, "kap_session", clock.now() + timedelta(days=3), actor=THERAPIST,
                              **who(therapy, "kap_session"))


def test_reminders_reach_clients_of_either_workflow(tmp_path: object) -> None:
    """A psychotherapy client gets the appointment reminders its workflow declares, at its intake's address."""
    kit = ReminderKit(str(tmp_path), workflows=BOTH)
    try:
        case_id = kit.engine.open_case(INTAKE, actor=FRONT_DESK, workflow="psychotherapy").case_id
        kit.engine.book_appointment(case_id, "intake", kit.clock.now() + timedelta(days=5), actor=FRONT_DESK,
                                    **who(case_id))
        kit.engine.fire(case_id, "book_intake", actor=FRONT_DESK)
        kit.advance(days=5)
        sent = [m for m in kit.email.sent if m.case_id == case_id]
        assert sent and all(m.recipient == INQUIRY["email"] for m in sent)
        assert all(INQUIRY["first_name"] in m.body for m in sent if m.audience == "client")
    finally:
        kit.close()
