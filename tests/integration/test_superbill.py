"""A superbill from a KAP case's own ledger, diagnoses and address, on SQLite and PostgreSQL.

The engine gathers what insurers require (the practice and clinician from the settings, the client from
the intake and the address fact, each insurance line with place of service 11, its CPT code, units, fee
and diagnosis pointers, the totals and the no-charge statement), records the superbill on the case, and
makes the same document again from that record. The PDF is read back with pdftotext, and its first page
kept as a PNG (``$KAPFLOW_SCREENSHOTS``). Every gap is named at once and nothing is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from billing_support import ADDRESS, PRACTICE, THERAPIST_DETAILS, pdf_text, treated
from http_server import serving
from support import (
    BILLING,
    CLIENT,
    FRONT_DESK,
    INQUIRY,
    PRESCRIBER,
    assert_audited,
    clinician_of,
)
from typer.testing import CliRunner, Result

from kapflow.app.engine import Engine
from kapflow.cli import app as cli_app
from kapflow.domain.errors import DocumentIncomplete, InvalidFact, NotPermitted
from kapflow.domain.superbill import Practice
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                                reason="poppler-utils (pdftotext, pdftoppm) is not installed: "
                                       "apt-get install poppler-utils")

@pytest.fixture
def practice() -> Practice:
    return Practice(PRACTICE, {})


@pytest.fixture
def billed(db_url: str, clock: FakeClock, practice: Practice) -> Iterator[Engine]:
    """On SQLite; the first test runs on each backend (``billed_anywhere``)."""
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, timezone="America/Los_Angeles", documents=practice)
    store.close()


@pytest.fixture
def billed_anywhere(any_ready_url: str, clock: FakeClock, practice: Practice) -> Iterator[Engine]:
    store = SqlStore(any_ready_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, timezone="America/Los_Angeles", documents=practice)
    store.close()


def test_a_superbill_carries_what_insurers_require(
    billed_anywhere: Engine, clock: FakeClock, practice: Practice, tmp_path: Path
) -> None:
    case_id = treated(billed_anywhere, clock, practice)
    billed_anywhere.record(case_id, "diagnosis", {"code": "f41.1", "diagnosed_on": clock.now().date().isoformat()},
                  actor=PRESCRIBER)  # anxiety, made at the second session: it points to that line only
    billed_anywhere.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    billed_anywhere.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)
    books = billed_anywhere.ledger(case_id)
    insured = [c for c in books.charges if c.insurance]
    first, last = insured[0].date_of_service, insured[-1].date_of_service
    version = billed_anywhere.case(case_id).version

    issued = billed_anywhere.issue_superbill(case_id, first=first - timedelta(days=30), last=last, actor=BILLING)
    view = issued.view
    assert [(line.code, line.place_of_service, line.units, f"{line.fee}", line.diagnosis_pointers)
            for line in view.lines] == [("90837", "11", 1, "165.00", ("A",))] * 2 + [
                ("90837", "11", 1, "165.00", ("A", "B"))]
    assert [d.code for d in view.diagnoses] == ["F33.1", "F41.1"]  # "f41.1" was kept in its usual form
    assert (f"{view.charged}", f"{view.paid}", f"{view.balance}") == ("495.00", "165.00", "330.00")
    assert billed_anywhere.case(case_id).version == version + 1  # recorded on the case: one fact
    record = billed_anywhere.superbills(case_id)[0]
    assert (record.reference, record.lines) == (issued.outcome.extra["reference"], ("c2", "c3", "c4"))
    codes = {item.code for item in billed_anywhere.work("billing", BILLING.id) if item.case_id == case_id}
    assert codes == {"balance_due"}  # every visit is on a superbill now; $330 is still due

    pdf = billed_anywhere.document_pdf(view)
    text = pdf_text(pdf, tmp_path, "superbill-kap")
    for expected in (
        "Sample Cornerstone Therapy, PLLC", "100 Example Way, Suite 2", "Springfield, OR 97477", "(555) 010-2000",
        "12-3456789", "1245319599", "Renée Sample-Øster", "LCSW", "1234567893", "Zoë Ñúñez-Ærø", "04/12/1988",
        "45 Sample Street, Apt 2B", "Eugene, OR 97401", "+1 555 010 0101", "F33.1", "F41.1",
        "Major depressive disorder, recurrent, moderate", "90837", "$495.00", "$165.00", "$330.00",
        "provided at no", first.strftime("%m/%d/%Y"), last.strftime("%m/%d/%Y"),
    ):
        assert expected in text, expected
    assert "90792" not in text  # the self-pay evaluation is not billed_anywhere to insurance
    assert text.count(" 11 ") >= 3  # place of service on every line

    billed_anywhere.record(case_id, "payment", {"amount": "330.00", "purpose": "psychotherapy"}, actor=BILLING)
    again = billed_anywhere.superbill(case_id, record.reference)  # as issued, whatever was paid since
    assert f"{again.paid}" == "165.00" and billed_anywhere.document_pdf(again) == pdf
    assert_audited(billed_anywhere, case_id)


def test_every_gap_is_named_and_nothing_is_written(billed: Engine, clock: FakeClock, practice: Practice) -> None:
    case_id = treated(billed, clock, practice, kap_sessions=1)
    practice.clinicians.clear()  # type: ignore[attr-defined]
    version = billed.case(case_id).version
    today = clock.now().date()
    with pytest.raises(DocumentIncomplete) as refused:
        billed.issue_superbill(case_id, first=today - timedelta(days=60), last=today, actor=BILLING)
    missing = " | ".join(refused.value.missing)
    assert "is not in the settings: add [billing.clinicians.np-" in missing
    assert "the client's address is not recorded: record a client_address fact" in missing
    assert len(refused.value.missing) == 2
    assert billed.case(case_id).version == version

    billed.record(case_id, "client_address", ADDRESS, actor=FRONT_DESK)
    practice.clinicians[clinician_of(case_id)] = THERAPIST_DETAILS  # type: ignore[index]
    with pytest.raises(DocumentIncomplete, match="no service billed to insurance has a date of service"):
        billed.issue_superbill(case_id, first=date(2020, 1, 1), last=date(2020, 1, 31), actor=BILLING)
    with pytest.raises(NotPermitted):
        billed.issue_superbill(case_id, first=today - timedelta(days=60), last=today, actor=FRONT_DESK)
    assert billed.case(case_id).version == version + 1  # the address only


def test_a_diagnosis_made_after_the_service_is_refused_on_the_superbill(
    billed: Engine, clock: FakeClock, practice: Practice
) -> None:
    case_id = treated(billed, clock, practice, kap_sessions=1)
    billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    last = billed.ledger(case_id).charges[-1].date_of_service
    clock.advance(days=10)
    billed.record(case_id, "diagnosis", {"code": "F43.10", "diagnosed_on": clock.now().date().isoformat()},
                  actor=PRESCRIBER)
    with pytest.raises(DocumentIncomplete) as refused:
        billed.issue_superbill(case_id, first=last - timedelta(days=30), last=last, actor=BILLING,
                               diagnoses=["F43.10"])
    assert "diagnosis 1 of those chosen was made after the last date of service" in refused.value.missing[0]
    assert "F43.10" not in str(refused.value)  # a diagnosis is the client's: not in an error body
    assert any("no diagnosis was made on or before" in m for m in refused.value.missing)
    assert billed.issue_superbill(case_id, first=last - timedelta(days=30), last=last, actor=BILLING,
                                  diagnoses=["F33.1"]).view.diagnoses[0].code == "F33.1"


def test_a_diagnosis_must_be_a_billable_icd10cm_code(billed: Engine, clock: FakeClock) -> None:
    case_id = billed.open_case(INQUIRY, actor=FRONT_DESK).case_id
    today = clock.now().date().isoformat()
    for code, says in (("F32", "category, not a billable code"), ("F99.99", "not an ICD-10-CM code"),
                       ("hello", "not an ICD-10-CM code")):
        with pytest.raises(InvalidFact, match=says):
            billed.record(case_id, "diagnosis", {"code": code, "diagnosed_on": today}, actor=PRESCRIBER)
    tomorrow = (clock.now().date() + timedelta(days=1)).isoformat()
    with pytest.raises(InvalidFact, match="in the future"):
        billed.record(case_id, "diagnosis", {"code": "F33.1", "diagnosed_on": tomorrow}, actor=PRESCRIBER)
    billed.record(case_id, "diagnosis", {"code": "f431 0".replace(" ", ""), "diagnosed_on": today}, actor=PRESCRIBER)
    assert [f.data["code"] for f in billed.facts(case_id, "diagnosis")] == ["F43.10"]


def test_the_api_issues_a_superbill_and_serves_its_pdf(billed: Engine, clock: FakeClock, practice: Practice) -> None:
    case_id = treated(billed, clock, practice, kap_sessions=1)
    today = clock.now().date()
    keys = {role: billed.create_api_key(f"pms-{role}", role, created_by="test-admin")[0]
            for role in ("billing", "front_desk")}
    with serving(create_app(billed, RequestAuthenticator(billed))) as base:
        def client(role: str) -> httpx.Client:
            return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys[role]}"}, timeout=30)

        with client("billing") as desk:
            gap = desk.post(f"/v1/cases/{case_id}/superbills",
                            json={"first": (today - timedelta(days=60)).isoformat(), "last": today.isoformat()})
            assert gap.status_code == 422, gap.text
            body = gap.json()
            assert body["code"] == "document_incomplete" and len(body["missing"]) == 1
            assert "client's address is not recorded" in body["missing"][0]
            billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
            made = desk.post(f"/v1/cases/{case_id}/superbills",
                             json={"first": (today - timedelta(days=60)).isoformat(), "last": today.isoformat()})
            assert made.status_code == 201, made.text
            assert made.json()["lines"] == ["c2", "c3"] and made.json()["charged"] == "330.00"
            pdf = desk.get(made.headers["Location"])
            assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF")
            assert [s["reference"] for s in desk.get(f"/v1/cases/{case_id}/superbills").json()] == [
                made.json()["reference"]]
        with client("front_desk") as front:
            assert front.get(made.headers["Location"]).status_code == 403  # a superbill lists diagnoses
            refused = front.post(f"/v1/cases/{case_id}/superbills",
                                 json={"first": today.isoformat(), "last": today.isoformat()})
            assert refused.status_code == 403
    assert {a.view for a in billed.accesses(case_id=case_id)} == {"superbill", "superbills"}


def test_the_cli_writes_a_private_superbill_and_reprints_it(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    store = SqlStore(db_url)
    practice = Practice(PRACTICE, {})
    engine = Engine(store, KAP_PATHWAY, clock=clock, documents=practice)
    case_id = treated(engine, clock, practice, kap_sessions=1)
    engine.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    store.close()
    settings = tmp_path / "kapflow.toml"
    settings.write_text(f"""
[billing.practice]
name = "{PRACTICE.name}"
address = {list(PRACTICE.address_lines)!r}
phone = "{PRACTICE.phone}"
tax_id = "{PRACTICE.tax_id}"
npi = "{PRACTICE.npi}"

[billing.clinicians.{clinician_of(case_id)}]
name = "{THERAPIST_DETAILS.name}"
credentials = "{THERAPIST_DETAILS.credentials}"
npi = "{THERAPIST_DETAILS.npi}"
""".replace("'", '"'), encoding="utf-8")
    today = clock.now().date()

    def kapflow(*args: str) -> Result:
        return CliRunner().invoke(cli_app, ["--config", str(settings), "--db", db_url, *args],
                                  env={"COLUMNS": "80"})

    out = tmp_path / "superbill.pdf"
    made = kapflow("billing", "superbill", case_id, "--from", (today - timedelta(days=60)).isoformat(),
                   "--to", today.isoformat(), "--actor", "billing-1", "--role", "billing", "--output", str(out))
    assert made.exit_code == 0, made.output
    assert "issued superbill SB-" in made.output and "$330.00 charged" in made.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "Renée Sample-Øster" in pdf_text(out.read_bytes(), tmp_path, "superbill-cli")
    reference = made.output.split("superbill ")[1].split()[0]
    again = tmp_path / "again.pdf"
    assert kapflow("billing", "reprint", case_id, reference, "--output", str(again)).exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    ledger = kapflow("billing", "ledger", case_id)
    assert ledger.exit_code == 0 and "balance $330.00" in ledger.output
    assert max(len(line) for line in ledger.output.splitlines()) <= 80
    bad = kapflow("billing", "superbill", case_id, "--from", "2026-13-01", "--to", today.isoformat(),
                  "--actor", "billing-1", "--role", "billing", "--output", str(tmp_path / "x.pdf"))
    assert bad.exit_code == 2 and "from: give a date as YYYY-MM-DD" in bad.output
