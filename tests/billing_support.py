"""A KAP client treated and billed, with the practice and clinician a superbill names (synthetic)."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

from support import FRONT_DESK, INQUIRY, PRESCRIBER, THERAPIST, booking, clinician_of, dose_and_discharge, to_evaluating

from kapflow.app.engine import Engine
from kapflow.domain.billing_documents import Clinician, Party
from kapflow.domain.superbill import Practice
from kapflow.testing import FakeClock

PRACTICE = Party("Sample Cornerstone Therapy, PLLC", ("100 Example Way, Suite 2", "Springfield, OR 97477"),
                 "(555) 010-2000", "12-3456789", "1245319599")
THERAPIST_DETAILS = Clinician("Renée Sample-Øster", "LCSW", "1234567893")
ADDRESS = {"street": "45 Sample Street", "unit": "Apt 2B", "city": "Eugene", "state": "OR",
           "postal_code": "97401"}


def book(engine: Engine, clock: FakeClock, case_id: str, kind: str, days: int) -> str:
    outcome = engine.record(case_id, "appointment", booking(case_id, kind, clock.now() + timedelta(days=days)),
                            actor=FRONT_DESK)
    return str(outcome.extra["appointment"])


def treated(engine: Engine, clock: FakeClock, practice: Practice, *, kap_sessions: int = 2) -> str:
    """A client (with an accented name) evaluated, diagnosed, intentions set, then ``kap_sessions`` sessions."""
    case_id = engine.open_case({**INQUIRY, "first_name": "Zoë", "last_name": "Ñúñez-Ærø"}, actor=FRONT_DESK).case_id
    practice.clinicians[clinician_of(case_id)] = THERAPIST_DETAILS  # type: ignore[index]
    to_evaluating(engine, clock, case_id)
    today = clock.now().date()
    engine.record(case_id, "diagnosis", {"code": "F33.1", "diagnosed_on": today.isoformat()}, actor=PRESCRIBER)
    engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    engine.record(case_id, "prescription", {"prescriber": "NP Sample", "issued_on": today.isoformat(),
                                            "expires_on": (today + timedelta(days=365)).isoformat()}, actor=PRESCRIBER)
    engine.record(case_id, "consent", {"form_version": "2026-01", "signed_on": today.isoformat()}, actor=THERAPIST)
    engine.record(case_id, "treatment_plan", {"action": "set", "sessions": 6}, actor=PRESCRIBER)
    book(engine, clock, case_id, "intention_setting", 2)
    clock.advance(days=2)
    engine.fire(case_id, "start_intention_setting", actor=THERAPIST)
    engine.fire(case_id, "complete_intention_setting", actor=THERAPIST, data={"intentions": "rest"})
    for _ in range(kap_sessions):
        book(engine, clock, case_id, "kap_session", 7)
        clock.advance(days=7)
        dose_and_discharge(engine, clock, case_id)
        clock.advance(minutes=60)
        engine.fire(case_id, "complete_integration", actor=THERAPIST)
    return case_id


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
"""Where a document's first page is kept as a PNG after the run (git-ignored), unless ``$KAPFLOW_SCREENSHOTS``
names a folder (``make screenshots``: docs/images)."""


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> str:
    """The PDF's text as pdftotext lays it out; its first page kept as ``<name>.png`` (``ARTIFACTS``)."""
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    folder = Path(os.environ.get("KAPFLOW_SCREENSHOTS") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(path),
                    str(folder / name)], check=True)
    assert (folder / f"{name}.png").stat().st_size > 10_000
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
