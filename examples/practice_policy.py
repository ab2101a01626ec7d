"""A practice tightens its blood-pressure limit: a new workflow version, while cases in flight keep theirs.

Then it moves the cases in flight that can move to the new version (a dry run first, then the
migration, audited); a client already dosed at a pressure the new limit refuses stays on version 1.

Run it:  python examples/practice_policy.py [DATABASE_URL]
All data is synthetic.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from kapflow import Actor, Engine, TransitionBlocked, build_engine
from kapflow.domain.versions import diff_workflows
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

FRONT_DESK = Actor("fd-morgan", "front_desk")
PRESCRIBER = Actor("np-casey", "prescriber")
THERAPIST = Actor("th-riley", "therapist")

# Version 2 of the practice's pathway: hold dosing above 135/85 instead of 140/90.
STRICTER = KAP_PATHWAY.with_thresholds("2", max_systolic=135, max_diastolic=85)


def ready_client(engine: Engine, clock: FakeClock, last_name: str) -> str:
    """Open a case and bring it to the pre-dose checklist, vitals 138/86 (between the two limits)."""
    case_id = engine.open_case(
        {"first_name": "Sample", "last_name": last_name, "date_of_birth": "1979-02-11", "phone": "+1 555 010 0150"},
        actor=FRONT_DESK,
    ).case_id
    today = clock.now().date()
    steps: list[tuple[str, str, dict[str, object], Actor]] = [
        ("record", "appointment", {"kind": "evaluation", "starts_at": clock.now().isoformat(),
                                   "clinician": f"np-{case_id}"}, FRONT_DESK),
        ("fire", "book_evaluation", {}, FRONT_DESK),
        ("record", "payment", {"amount": 250, "purpose": "evaluation_fee"}, FRONT_DESK),
        ("fire", "start_evaluation", {}, PRESCRIBER),
        ("record", "screening", {"exclusions": [], "flags": []}, PRESCRIBER),
        ("fire", "find_suitable", {}, PRESCRIBER),
        ("record", "prescription", {"prescriber": "NP Casey Sample", "issued_on": _iso(today),
                                    "expires_on": _iso(today + timedelta(days=90))}, PRESCRIBER),
        ("record", "consent", {"form_version": "v3", "signed_on": _iso(today)}, THERAPIST),
        ("record", "treatment_plan", {"action": "set", "sessions": 4}, PRESCRIBER),
        ("fire", "start_intention_setting", {}, THERAPIST),
        ("fire", "complete_intention_setting", {"intentions": "steadiness"}, THERAPIST),
        ("record", "vitals", {"phase": "pre_dose", "systolic": 138, "diastolic": 86}, THERAPIST),
        ("record", "fasting", {"attested": True}, THERAPIST),
        ("record", "escort", {"name": "Escort Sample", "phone": "+1 555 010 0151"}, FRONT_DESK),
        ("record", "clinician_present", {"clinician": "Riley Sample, LMFT"}, THERAPIST),
    ]
    for verb, name, data, actor in steps:
        if verb == "record":
            engine.record(case_id, name, data, actor=actor)
        else:
            engine.fire(case_id, name, actor=actor, data=data)
    return case_id


def _iso(day: date) -> str:
    return day.isoformat()


def run(url: str) -> int:
    clock = FakeClock(datetime(2026, 4, 6, 9, 0, tzinfo=UTC))
    first = build_engine(url, KAP_PATHWAY, clock=clock)
    early = ready_client(first, clock, "Client-Early")
    dosed = ready_client(first, clock, "Client-Dosed")
    try_dosing(first, dosed)

    # The practice deploys version 2; the engine keeps version 1 loaded for cases already on it.
    engine = build_engine(url, [KAP_PATHWAY, STRICTER], clock=clock)
    late = ready_client(engine, clock, "Client-Late")
    print(diff_workflows(KAP_PATHWAY, STRICTER).text())

    # Which cases in flight could move to version 2? The dry run writes nothing.
    plans = engine.plan_migration(STRICTER)
    for plan in plans:
        verdict = "can move" if plan.ok else f"cannot move: {plan.verdict.text()}"
        print(f"dry run: {plan.case_id} ({plan.state}, v{plan.verdict.from_version}): {verdict}")
    # Move those that can, each in its own audited transaction; the dosed case stays on version 1.
    for plan in plans:
        if plan.ok:
            moved = engine.migrate_case(plan.case_id, STRICTER, actor=FRONT_DESK, expected_version=plan.version)
            print(f"{plan.case_id}: migrated to v{STRICTER.version} (case version {moved.version})")

    for case_id in (early, late):
        try_dosing(engine, case_id)
    return 0 if engine.verify_audit().ok else 1


def try_dosing(engine: Engine, case_id: str) -> None:
    version = engine.case(case_id).workflow_version
    try:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
        print(f"{case_id} (workflow v{version}): dosing started at 138/86")
    except TransitionBlocked as refused:
        reasons = "; ".join(b.message for b in refused.blockers)
        print(f"{case_id} (workflow v{version}): held: {reasons}")


def main() -> int:
    if len(sys.argv) > 1:
        return run(sys.argv[1])
    with tempfile.TemporaryDirectory() as folder:
        return run(f"sqlite:///{Path(folder) / 'policy.db'}")


if __name__ == "__main__":
    raise SystemExit(main())
