"""The one path every benchmark runs: 8 KAP transitions from inquiry back to ready_for_kap.

    inquiry ─book_evaluation→ evaluation_booked ─start_evaluation→ evaluating ─find_suitable→ evaluated
    ─start_intention_setting→ intention_setting ─complete_intention_setting→ ready_for_kap
    ─start_kap_session→ dosing ─discharge→ integration_psychotherapy ─complete_integration→ ready_for_kap

Every fact the path's guards read is recorded before the first fire (``prepare_case``), so all
eight fires pass. The clock stands still while facts are recorded and the first six fire, then
moves by the observation time (``OBSERVATION``) before ``discharge``: post-dose vitals and the
discharge check recorded at the dosing's instant count as "since the dosing".
SpiffWorkflow runs the same path as ``bench/kap8.bpmn`` (one user task per trigger), and the
plain ``transitions`` and python-statemachine machines use ``STATES`` and ``PATH`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

FRONT_DESK = Actor("fd-bench", "front_desk")
PRESCRIBER = Actor("np-bench", "prescriber")
THERAPIST = Actor("th-bench", "therapist")
CLIENT = Actor("client-bench", "client")

BPMN = Path(__file__).with_name("kap8.bpmn")
BPMN_PROCESS = "kap8"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OBSERVATION = timedelta(minutes=int(KAP_PATHWAY.thresholds["observation_minutes"]))


@dataclass(frozen=True)
class Step:
    trigger: str
    source: str
    dest: str
    actor: Actor
    data: Mapping[str, Any] = field(default_factory=dict)


PATH: tuple[Step, ...] = (
    Step("book_evaluation", "inquiry", "evaluation_booked", FRONT_DESK),
    Step("start_evaluation", "evaluation_booked", "evaluating", PRESCRIBER),
    Step("find_suitable", "evaluating", "evaluated", PRESCRIBER),
    Step("start_intention_setting", "evaluated", "intention_setting", THERAPIST),
    Step("complete_intention_setting", "intention_setting", "ready_for_kap", THERAPIST,
         {"intentions": "notice tension; rest"}),
    Step("start_kap_session", "ready_for_kap", "dosing", THERAPIST),
    Step("discharge", "dosing", "integration_psychotherapy", THERAPIST),
    Step("complete_integration", "integration_psychotherapy", "ready_for_kap", THERAPIST),
)
TRIGGERS: tuple[str, ...] = tuple(s.trigger for s in PATH)
STATES: tuple[str, ...] = tuple(dict.fromkeys([PATH[0].source, *(s.dest for s in PATH)]))
DISCHARGE = TRIGGERS.index("discharge")
"""The clock moves by ``OBSERVATION`` before this step."""

INTAKE: dict[str, Any] = {
    "first_name": "Bench",
    "last_name": "Client",
    "date_of_birth": "1984-02-03",
    "email": "bench.client@example.org",
    "phone": "+1 555 010 0142",
    "concerns": ["depression"],
    "message": "A synthetic client for the benchmark.",
}


def facts_for(now: datetime, clinician: str = "np-bench") -> list[tuple[str, dict[str, Any], Actor]]:
    """Every fact the path's guards read, as (kind, data, actor), recorded at ``now``; the evaluation is with
    ``clinician`` (one of its own per case: a clinician is never booked twice at once)."""
    today = now.date()
    starts = (now + timedelta(days=3)).isoformat()
    return [
        ("appointment", {"kind": "evaluation", "starts_at": starts, "clinician": clinician}, FRONT_DESK),
        ("payment", {"amount": "250.00", "purpose": "evaluation_fee"}, FRONT_DESK),
        ("screening", {"exclusions": [], "flags": []}, PRESCRIBER),
        ("prescription", {"prescriber": "NP Bench", "issued_on": today.isoformat(),
                          "expires_on": (today + timedelta(days=180)).isoformat()}, PRESCRIBER),
        ("consent", {"form_version": "2026-01", "signed_on": today.isoformat()}, THERAPIST),
        ("treatment_plan", {"action": "set", "sessions": 3}, PRESCRIBER),
        ("vitals", {"phase": "pre_dose", "systolic": 122, "diastolic": 78}, THERAPIST),
        ("fasting", {"attested": True, "hours": 6}, CLIENT),
        ("escort", {"name": "Escort Bench", "phone": "+1 555 010 0199"}, FRONT_DESK),
        ("clinician_present", {"clinician": "Th Bench, LCSW"}, THERAPIST),
        ("vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, THERAPIST),
        ("discharge_check", {"stable": True, "no_driving_acknowledged": True}, THERAPIST),
    ]


def new_clock() -> FakeClock:
    return FakeClock(START)


def prepare_case(engine: Engine, clock: FakeClock) -> str:
    """Open a case and record every fact the path needs (13 commits, not timed)."""
    case_id = engine.open_case(INTAKE, actor=FRONT_DESK).case_id
    for kind, data, actor in facts_for(clock.now(), clinician=f"np-{case_id}"):
        engine.record(case_id, kind, data, actor=actor)
    return case_id


def fire_step(engine: Engine, case_ids: Sequence[str], step: Step) -> None:
    """One durable fire of ``step`` on each case (one commit each)."""
    for case_id in case_ids:
        engine.fire(case_id, step.trigger, actor=step.actor, data=step.data)


def fire_path(engine: Engine, clock: FakeClock, case_ids: Sequence[str]) -> int:
    """The whole path on every case, step by step; returns the number of fires."""
    for index, step in enumerate(PATH):
        if index == DISCHARGE:
            clock.advance(OBSERVATION)
        fire_step(engine, case_ids, step)
    return len(PATH) * len(case_ids)


def fire_step_op(engine: Engine, clock: FakeClock, cases: int) -> Callable[[int, int], None]:
    """kapflow's durable step: ``op(step, case)`` fires that step of the path, one commit each."""
    ids = [prepare_case(engine, clock) for _ in range(cases)]

    def op(s: int, c: int) -> None:
        step = PATH[s]
        engine.fire(ids[c], step.trigger, actor=step.actor, data=step.data)

    return op
