"""Issue 14, item 12: a booking checks the prescription against the visit's date, dosing against the moment.

In New York: a prescription issued 5 March accepts a KAP session booked (on 2 March) for 9 March; one
expiring 20 March refuses a booking, or a reschedule, for 15 April and accepts one for the evening of
20 March (the practice's date, though it is 21 March in UTC). Starting the KAP session still checks now.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support import FRONT_DESK, PRESCRIBER, THERAPIST, one_kap_session, open_case, prepare_dosing, to_ready

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.case import Actor
from kapflow.errors import TransitionBlocked
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

NEW_YORK = ZoneInfo("America/New_York")
KAP = {"clinician": "th-jordan", "room": "dosing-1"}  # who and where a booking is (each names them)


def ny(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NEW_YORK)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(ny(2026, 2, 23, 9))


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    eng = build_engine(f"sqlite:///{tmp_path / 'kapflow.db'}", KAP_PATHWAY,
                       settings=Settings(timezone="America/New_York"), clock=clock)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def case_id(engine: Engine, clock: FakeClock) -> str:
    """A KAP case ready for sessions; on Monday 2 March 2026, 09:00 EST."""
    case = open_case(engine)
    to_ready(engine, clock, case, sessions=3)
    clock.set(ny(2026, 3, 2, 9))
    return case


def prescribe(engine: Engine, case_id: str, issued: str, expires: str) -> None:
    engine.record(case_id, "prescription", {"prescriber": "NP Rowan Sample", "issued_on": issued,
                                            "expires_on": expires}, actor=PRESCRIBER)


def book_session(engine: Engine, case_id: str, starts: datetime) -> str:
    data = {"kind": "kap_session", **KAP, "starts_at": starts.isoformat()}
    return str(engine.record(case_id, "appointment", data, actor=FRONT_DESK).extra["appointment"])


def refused(
    engine: Engine, case_id: str, kind: str, data: dict[str, Any], actor: Actor = PRESCRIBER,
) -> TransitionBlocked:
    """The refusal as ``actor`` is told it: by default a prescriber, who reads the prescription it quotes."""
    before = engine.case(case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.record(case_id, kind, data, actor=actor)
    assert engine.case(case_id).version == before.version
    return info.value


def test_a_prescription_issued_before_the_visit_accepts_the_booking(engine: Engine, case_id: str) -> None:
    """Issued 5 March, recorded on 2 March: a session on 9 March is within it, though today is not."""
    prescribe(engine, case_id, "2026-03-05", "2026-09-01")
    appt = book_session(engine, case_id, ny(2026, 3, 9))
    assert engine.appointments(case_id)[-1].id == appt


def test_a_visit_before_the_prescription_is_issued_is_refused(engine: Engine, case_id: str) -> None:
    prescribe(engine, case_id, "2026-03-05", "2026-09-01")
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "kap_session", **KAP, "starts_at": ny(2026, 3, 4).isoformat()})
    assert [b.code for b in refusal.blockers] == ["prescription_not_yet_valid"]
    message = refusal.blockers[0].message
    assert "2026-03-05" in message and "visit on 2026-03-04" in message and "today" not in message


def test_a_visit_after_the_prescription_expires_is_refused(engine: Engine, case_id: str) -> None:
    """Expiring 20 March: today it is valid, on 15 April it is not."""
    prescribe(engine, case_id, "2026-01-20", "2026-03-20")
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "kap_session", **KAP, "starts_at": ny(2026, 4, 15).isoformat()})
    assert [b.code for b in refusal.blockers] == ["prescription_expired"]
    assert "2026-03-20" in refusal.blockers[0].message and "visit on 2026-04-15" in refusal.blockers[0].message
    assert engine.appointments(case_id)[-1].kind == "evaluation"
    # The front desk, who may not read prescriptions, is told why in words, without the prescription's dates.
    desk = refused(engine, case_id, "appointment",
                   {"kind": "kap_session", **KAP, "starts_at": ny(2026, 4, 15).isoformat()}, actor=FRONT_DESK)
    assert [(b.code, b.message) for b in desk.blockers] == [("prescription_expired", "prescription expired")]


def test_the_visit_date_is_the_practice_s(engine: Engine, case_id: str) -> None:
    """20 March at 22:30 in New York is 21 March in UTC: still the last day of the prescription."""
    prescribe(engine, case_id, "2026-01-20", "2026-03-20")
    book_session(engine, case_id, ny(2026, 3, 20, 22, 30))
    refusal = refused(engine, case_id, "appointment",
                      {"kind": "kap_session", **KAP, "starts_at": ny(2026, 3, 21, 0, 30).isoformat()})
    assert [b.code for b in refusal.blockers] == ["prescription_expired"]


def test_a_reschedule_checks_the_new_visit_date(engine: Engine, case_id: str) -> None:
    prescribe(engine, case_id, "2026-01-20", "2026-03-20")
    appt = book_session(engine, case_id, ny(2026, 3, 19))
    refusal = refused(engine, case_id, "appointment_update",
                      {"appointment": appt, "action": "reschedule", "starts_at": ny(2026, 4, 15).isoformat()})
    assert [b.code for b in refusal.blockers] == ["prescription_expired"]
    engine.record(case_id, "appointment_update",
                  {"appointment": appt, "action": "reschedule", "starts_at": ny(2026, 3, 20).isoformat()},
                  actor=FRONT_DESK)
    assert engine.appointments(case_id)[-1].starts_at == ny(2026, 3, 20)


def test_only_kap_sessions_depend_on_the_prescription(engine: Engine, case_id: str) -> None:
    prescribe(engine, case_id, "2026-01-20", "2026-03-20")
    data = {"kind": "integration_session", **KAP, "starts_at": ny(2026, 4, 15).isoformat()}
    engine.record(case_id, "appointment", data, actor=FRONT_DESK)
    appt = engine.appointments(case_id)[-1]
    engine.record(case_id, "appointment_update",
                  {"appointment": appt.id, "action": "reschedule", "starts_at": ny(2026, 4, 16).isoformat()},
                  actor=FRONT_DESK)
    engine.record(case_id, "appointment_update", {"appointment": appt.id, "action": "cancel"}, actor=FRONT_DESK)


def test_dosing_checks_the_moment_itself(engine: Engine, clock: FakeClock, case_id: str) -> None:
    """The 9 March booking is accepted; starting the session on 2 March is not, on 9 March it is;
    after 20 March the expired prescription stops the next one."""
    prescribe(engine, case_id, "2026-03-05", "2026-03-20")
    book_session(engine, case_id, ny(2026, 3, 9))
    prepare_dosing(engine, case_id)
    with pytest.raises(TransitionBlocked) as info:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    assert [b.code for b in info.value.blockers] == ["prescription_not_yet_valid"]
    assert "after today" in info.value.blockers[0].message
    clock.set(ny(2026, 3, 9))
    one_kap_session(engine, clock, case_id)
    book_session(engine, case_id, ny(2026, 3, 20, 22))
    clock.set(ny(2026, 3, 21, 10))
    prepare_dosing(engine, case_id)
    codes = [b.code for b in engine.check(case_id, "start_kap_session").blockers]
    assert codes == ["prescription_expired"]
