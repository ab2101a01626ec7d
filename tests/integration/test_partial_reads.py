"""A case read in part decides as one read whole: the same commands, run on a store whose every command reads its
case cold (past the index of its facts, once it is long enough), on one that keeps its records (read in part once,
then the earlier texts read through the kept record), and on a database in memory (always read whole), give the
same outcomes and refusals, blocker by blocker.

Any sequence of the pathway's facts, bookings, attendances, payments, triggers and the passing of time: long enough
(seventy actions and more) that the index is written, the snapshots come due with it, and the guards' windows,
latest facts and payments by purpose reach facts the index covers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CLIENT, FRONT_DESK, INQUIRY, PRESCRIBER, THERAPIST, booking

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.domain.entries import INDEX_FROM
from kapflow.errors import KapflowError
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

START = FakeClock().now()

FIRES: dict[str, tuple[Actor, dict[str, Any]]] = {
    "book_evaluation": (FRONT_DESK, {}),
    "start_evaluation": (PRESCRIBER, {}),
    "find_suitable": (PRESCRIBER, {}),
    "start_intention_setting": (THERAPIST, {}),
    "complete_intention_setting": (THERAPIST, {"intentions": "ground; rest"}),
    "start_kap_session": (THERAPIST, {}),
    "discharge": (THERAPIST, {}),
    "complete_integration": (THERAPIST, {}),
}

Step = tuple[str, int]

records = st.tuples(st.sampled_from(["vitals_pre", "vitals_post", "fasting", "escort", "clinician", "discharge_check",
                                     "screening", "prescription", "consent", "plan"]), st.just(0))
actions = st.one_of(
    records, records, records,  # most actions add a fact: the case grows past its index
    st.tuples(st.sampled_from(["pay_evaluation", "pay_session"]), st.integers(1, 3)),
    st.tuples(st.sampled_from(["book_evaluation_visit", "book_session", "book_integration"]), st.integers(1, 9)),
    st.tuples(st.sampled_from(["attended", "no_show"]), st.integers(1, 12)),
    st.tuples(st.sampled_from(sorted(FIRES)), st.just(0)),
    st.tuples(st.just("advance"), st.sampled_from([30, 120, 60 * 24, 60 * 24 * 7])),
)


def act(engine: Engine, clock: FakeClock, case_id: str, step: Step) -> Any:
    """One action on the case; its outcome, or the error it was refused with (the case's id taken out)."""
    name, n = step
    today = clock.now().date().isoformat()
    records: dict[str, Callable[[], Any]] = {
        "vitals_pre": lambda: ("vitals", {"phase": "pre_dose", "systolic": 118 + n, "diastolic": 76}, THERAPIST),
        "vitals_post": lambda: ("vitals", {"phase": "post_dose", "systolic": 117, "diastolic": 75}, THERAPIST),
        "fasting": lambda: ("fasting", {"attested": True, "hours": 6}, CLIENT),
        "escort": lambda: ("escort", {"name": "Escort Sample", "phone": "+1 555 010 0199"}, FRONT_DESK),
        "clinician": lambda: ("clinician_present", {"clinician": "Jordan Sample, LCSW"}, THERAPIST),
        "discharge_check": lambda: ("discharge_check", {"stable": True, "no_driving_acknowledged": True}, THERAPIST),
        "screening": lambda: ("screening", {"exclusions": [], "flags": []}, PRESCRIBER),
        "prescription": lambda: ("prescription", {"prescriber": "NP Rowan Sample", "issued_on": today,
                                                  "expires_on": (clock.now() + timedelta(days=180)).date()
                                                  .isoformat()}, PRESCRIBER),
        "consent": lambda: ("consent", {"form_version": "2026-01", "signed_on": today}, THERAPIST),
        "plan": lambda: ("treatment_plan", {"action": "set", "sessions": 3}, PRESCRIBER),
        "pay_evaluation": lambda: ("payment", {"amount": f"{100 * n}.00", "purpose": "evaluation_fee"}, FRONT_DESK),
        "pay_session": lambda: ("payment", {"amount": f"{55 * n}.00", "purpose": "psychotherapy"}, FRONT_DESK),
        "book_evaluation_visit": lambda: ("appointment", booking(case_id, "evaluation", clock.now() + timedelta(
            days=n)), FRONT_DESK),
        "book_session": lambda: ("appointment", booking(case_id, "kap_session", clock.now() + timedelta(days=n)),
                                 FRONT_DESK),
        "book_integration": lambda: ("appointment", booking(case_id, "integration_session", clock.now() + timedelta(
            days=n)), FRONT_DESK),
        "attended": lambda: ("appointment_update", {"appointment": f"a{n}", "action": "attended"}, THERAPIST),
        "no_show": lambda: ("appointment_update", {"appointment": f"a{n}", "action": "no_show"}, FRONT_DESK),
    }
    try:
        if name == "advance":
            clock.advance(minutes=n)
            return None
        if name in FIRES:
            actor, data = FIRES[name]
            found = engine.fire(case_id, name, actor=actor, data=data)
        else:
            kind, data, actor = records[name]()
            found = engine.record(case_id, kind, data, actor=actor)
        return {k: v for k, v in found.as_dict().items() if k != "case_id"}
    except KapflowError as exc:
        return type(exc).__name__, str(exc).replace(case_id, "CASE")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=st.lists(actions, min_size=INDEX_FROM + 40, max_size=INDEX_FROM + 80))
def test_a_case_read_in_part_decides_as_one_read_whole(steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        stores = [SqlStore(f"sqlite:///{folder}/cold.db", recent_cases=0), SqlStore(f"sqlite:///{folder}/kept.db"),
                  SqlStore("sqlite://")]
        try:
            clocks = [FakeClock(START) for _ in stores]
            engines = [Engine(store, KAP_PATHWAY, clock=clock) for store, clock in zip(stores, clocks, strict=True)]
            ids = [engine.open_case(dict(INQUIRY), actor=FRONT_DESK).case_id for engine in engines]
            for n, step in enumerate(steps):
                outcomes = [act(e, c, i, step) for e, c, i in zip(engines, clocks, ids, strict=True)]
                assert outcomes[0] == outcomes[2] and outcomes[1] == outcomes[2], (n, step)
            for engine, case_id in zip(engines[:2], ids[:2], strict=True):
                assert engine.verify_audit(case_id).ok
        finally:
            for store in stores:
                store.close()
