"""A practice-management system embedding kapflow: the calls a front-desk app and a clinic app make.

Run it:  python examples/practice_management.py [DATABASE_URL]
(default: a SQLite file in a temporary folder). All data is synthetic.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kapflow import Actor, Engine, KapflowError, TransitionBlocked, build_engine
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

FRONT_DESK = Actor("fd-morgan", "front_desk")
PRESCRIBER = Actor("np-casey", "prescriber")
THERAPIST = Actor("th-riley", "therapist")


class FrontDeskApp:
    """What the practice's web app does when staff click buttons."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def inquiry_form_submitted(self, form: dict[str, Any], request_id: str) -> str:
        # The form's request id doubles as the idempotency key: a double-click opens one case.
        return self.engine.open_case(form, actor=FRONT_DESK, idempotency_key=request_id).case_id

    def book_evaluation(self, case_id: str, starts_at: datetime, prescriber: str = "np-rowan") -> None:
        # A prescriber is never booked twice at once: a taken time is refused (clinician_unavailable).
        self.engine.book_appointment(case_id, "evaluation", starts_at, actor=FRONT_DESK, clinician=prescriber)
        self.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)

    def take_payment(self, case_id: str, amount: str, receipt: str) -> None:
        self.engine.record(
            case_id, "payment", {"amount": amount, "purpose": "evaluation_fee", "reference": receipt},
            actor=FRONT_DESK, idempotency_key=f"payment-{receipt}",
        )

    def why_blocked(self, case_id: str, trigger: str) -> list[str]:
        """The sentences to show staff next to a greyed-out button."""
        return [f"{b.code}: {b.message}" for b in self.engine.check(case_id, trigger).blockers]


def run(url: str) -> int:
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    engine = build_engine(url, KAP_PATHWAY, clock=clock)
    app = FrontDeskApp(engine)

    form = {
        "first_name": "Sample",
        "last_name": "Client-Embed",
        "date_of_birth": "1985-06-30",
        "email": "client.embed@example.org",
        "concerns": ["anxiety", "ptsd"],
    }
    case_id = app.inquiry_form_submitted(form, "web-form-0001")
    assert app.inquiry_form_submitted(form, "web-form-0001") == case_id  # a retried request: same case
    print(f"opened {case_id}")

    app.book_evaluation(case_id, clock.now() + timedelta(days=4))
    print("evaluation booked; can the evaluation start?")
    for line in app.why_blocked(case_id, "start_evaluation"):
        print("  blocked:", line)

    try:
        engine.fire(case_id, "start_evaluation", actor=PRESCRIBER)
    except TransitionBlocked as refused:
        print(f"  refused and audited: {[b.code for b in refused.blockers]}")

    app.take_payment(case_id, "250.00", "R-1001")
    app.take_payment(case_id, "250.00", "R-1001")  # the card terminal retried: recorded once
    clock.advance(days=4)
    engine.fire(case_id, "start_evaluation", actor=PRESCRIBER)
    print(f"state now: {engine.case(case_id).state}")

    try:
        engine.fire(case_id, "start_kap_session", actor=THERAPIST)
    except KapflowError as err:
        print(f"  {err.code}: {err.message}")

    report = engine.verify_audit(case_id)
    print(f"history: {len(engine.history(case_id))} events; audit chain ok: {report.ok}")
    return 0 if report.ok else 1


def main() -> int:
    if len(sys.argv) > 1:
        return run(sys.argv[1])
    with tempfile.TemporaryDirectory() as folder:
        return run(f"sqlite:///{Path(folder) / 'practice.db'}")


if __name__ == "__main__":
    raise SystemExit(main())
