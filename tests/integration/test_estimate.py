"""Good faith estimates (No Surprises Act): recorded with the plan that asks for one, before its services.

Setting the KAP plan (6 sessions, 2 integration sessions) records, in the same transaction, an estimate of
the intention-setting session, each session's two parts (the ketamine portion at no charge) and the
integration sessions, at the fees of the case's workflow version; extending it records another for the
added sessions; ending it early records none. The PDF carries the disclaimer and the dispute notice, is read
back with pdftotext, and its first page kept as a PNG. The client downloads their own from the console.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from billing_support import ADDRESS, PRACTICE, THERAPIST_DETAILS, book, pdf_text
from console_support import console_serving
from support import CLIENT, FRONT_DESK, INQUIRY, PRESCRIBER, assert_audited, clinician_of, to_evaluating

from kapflow.app.engine import Engine
from kapflow.domain.errors import DocumentIncomplete
from kapflow.domain.superbill import Practice
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not "
                                "installed: apt-get install poppler-utils")


@pytest.fixture
def practice() -> Practice:
    return Practice(PRACTICE, {})


@pytest.fixture
def billed(db_url: str, clock: FakeClock, practice: Practice) -> Iterator[Engine]:
    """On SQLite: what these tests check is computed, not stored (the ledger's tests run on both)."""
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, documents=practice)
    store.close()


def evaluated(engine: Engine, clock: FakeClock, practice: Practice) -> str:
    case_id = engine.open_case({**INQUIRY, "first_name": "Zoë"}, actor=FRONT_DESK).case_id
    practice.clinicians[clinician_of(case_id)] = THERAPIST_DETAILS  # type: ignore[index]
    to_evaluating(engine, clock, case_id)
    engine.record(case_id, "diagnosis", {"code": "F33.1", "diagnosed_on": clock.now().date().isoformat()},
                  actor=PRESCRIBER)
    engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    engine.fire(case_id, "find_suitable", actor=PRESCRIBER)
    return case_id


def test_setting_the_plan_records_an_estimate_in_the_same_transaction(
    billed: Engine, clock: FakeClock, practice: Practice, tmp_path: Path
) -> None:
    case_id = evaluated(billed, clock, practice)
    book(billed, clock, case_id, "intention_setting", 5)
    outcome = billed.record(case_id, "treatment_plan", {"action": "set", "sessions": 6, "integration_sessions": 2},
                            actor=PRESCRIBER)
    history = billed.history(case_id)
    assert [e.data.get("kind") for e in history[-2:]] == ["treatment_plan", "good_faith_estimate"]
    assert outcome.version == billed.case(case_id).version
    (estimate,) = billed.estimates(case_id)
    assert [(s, q, f"{f}") for s, q, f in estimate.lines] == [
        ("intention_setting", 1, "165.00"), ("ketamine_support", 6, "0.00"), ("integration_psychotherapy", 6, "165.00"),
        ("integration_session", 2, "165.00")]
    assert estimate.total == Decimal("1485.00") and estimate.basis == "treatment plan set: 6 KAP sessions"
    told = [t for t in billed.timers(case_id) if t["reminder"] == "estimate_ready"]
    assert [(t["status"], datetime.fromisoformat(str(t["due_at"]))) for t in told] == [("pending", history[-1].at)]

    with pytest.raises(DocumentIncomplete, match="client's address is not recorded"):
        billed.estimate(case_id, estimate.reference)
    billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    view = billed.estimate(case_id, estimate.reference)
    assert view.expected_from is not None and [d.code for d in view.diagnoses] == ["F33.1"]
    assert billed.estimate(case_id, estimate.reference, "front_desk").diagnoses == ()  # not theirs to read
    text = pdf_text(billed.document_pdf(view), tmp_path, "good-faith-estimate-kap")
    for expected in ("Good Faith Estimate", "Zoë", PRACTICE.name, THERAPIST_DETAILS.name, "90837", "$1,485.00",
                     "$990.00", "not a contract", "$400", "1-800-985-3059", "www.cms.gov/nosurprises",
                     "Ketamine support and monitoring", "no charge", estimate.reference):
        assert expected in " ".join(text.split()), expected

    billed.record(case_id, "treatment_plan", {"action": "extend", "sessions": 2}, actor=PRESCRIBER)
    billed.record(case_id, "treatment_plan", {"action": "end_early", "reason": "goals met"}, actor=PRESCRIBER)
    estimates = billed.estimates(case_id)
    assert len(estimates) == 2  # ending the plan early asks for no estimate
    assert [(s, q) for s, q, _ in estimates[1].lines] == [("ketamine_support", 2), ("integration_psychotherapy", 2)]
    assert estimates[1].basis == "treatment plan extended by 2 KAP sessions" and estimates[1].total == Decimal("330")
    assert_audited(billed, case_id)


def test_an_estimate_keeps_the_fees_it_was_given_with(billed: Engine, clock: FakeClock, practice: Practice) -> None:
    """The estimate records each fee: a later fee schedule (a new workflow version) does not change it."""
    case_id = evaluated(billed, clock, practice)
    billed.record(case_id, "treatment_plan", {"action": "set", "sessions": 3}, actor=PRESCRIBER)
    facts = billed.facts(case_id, "good_faith_estimate")
    assert facts[0].data["lines"] == ("intention_setting:1:165.00 ketamine_support:3:0.00 "
                                      "integration_psychotherapy:3:165.00")
    assert facts[0].data["total"] == "660.00"


def test_the_client_downloads_their_own_estimate_from_the_console(
    billed: Engine, clock: FakeClock, practice: Practice
) -> None:
    case_id = evaluated(billed, clock, practice)
    other = billed.open_case(INQUIRY, actor=FRONT_DESK).case_id
    book(billed, clock, case_id, "intention_setting", 5)
    billed.record(case_id, "treatment_plan", {"action": "set", "sessions": 6}, actor=PRESCRIBER)
    billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    billed.bind_client(case_id, "client-1", actor=FRONT_DESK)
    reference = billed.estimates(case_id)[0].reference
    with console_serving(billed) as console, console.signed_in("client-1") as b:
        home = b.get("/console/").text
        link = f"/console/cases/{case_id}/estimates/{reference}.pdf"
        assert f'href="{link}"' in home and "treatment plan set: 6 KAP sessions" in home
        pdf = b.get(link)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert b.get(f"/console/cases/{other}/estimates/{reference}.pdf").status_code == 404  # as if not there
        assert b.get(f"/console/cases/{case_id}/billing").status_code == 403  # the ledger page is staff's
    assert_audited(billed, case_id)
