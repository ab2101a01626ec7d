"""A KAP case's billing and care as a FHIR R4B Bundle, on SQLite and PostgreSQL (synthetic data).

The case is treated and billed (an evaluation, an intention-setting session, two KAP sessions), then has
an address, a payment, an integration session missed (its no-show fee voided) and one attended, so the
export meets every status it maps. The Bundle parses back with the R4B models; it holds one ChargeItem per
charge line, one Appointment per booking, one Encounter per visit charged for; it carries CPT, ICD-10-CM
and CMS place-of-service codes with their systems, totals that are the ledger's, only codes FHIR's
required bindings allow, and the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from billing_support import ADDRESS, PRACTICE, book, treated
from fhir.resources.R4B.bundle import Bundle
from support import BILLING, CLIENT, FRONT_DESK, PRESCRIBER

from kapflow.app.engine import Engine
from kapflow.billing_fhir import (
    CPT,
    ICD10CM,
    PLACE_OF_SERVICE,
    REQUIRED_CODES,
    billing_bundle,
    check_codes,
)
from kapflow.domain.billing import FeePolicy
from kapflow.domain.superbill import Practice
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

NO_SHOW_FEE = Decimal("75.00")


@pytest.fixture
def practice() -> Practice:
    return Practice(PRACTICE, {})


@pytest.fixture
def billed(db_url: str, clock: FakeClock, practice: Practice) -> Iterator[Engine]:
    """On SQLite: what these tests check is computed, not stored (the ledger's tests run on both)."""
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, timezone="America/Los_Angeles", documents=practice,
                 fees=FeePolicy(no_show_fee=NO_SHOW_FEE))
    store.close()


def _case(engine: Engine, clock: FakeClock, practice: Practice) -> str:
    """Treated and billed, with an address, a payment, a missed visit (its fee voided) and an attended one."""
    case_id = treated(engine, clock, practice, kap_sessions=2)
    engine.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    engine.record(case_id, "payment", {"amount": "165.00", "purpose": "psychotherapy"}, actor=BILLING)
    missed = book(engine, clock, case_id, "integration_session", 2)
    clock.advance(days=2, minutes=30)
    engine.mark_no_show(case_id, missed, actor=FRONT_DESK)
    fee_line = next(c for c in engine.ledger(case_id).charges if c.visit == missed)
    engine.record(case_id, "billing_adjustment",
                  {"action": "void", "charge": fee_line.id, "reason": "first missed visit waived"}, actor=BILLING)
    attended = book(engine, clock, case_id, "integration_session", 3)
    clock.advance(days=3, minutes=60)
    engine.mark_attended(case_id, attended, actor=FRONT_DESK)
    return case_id


def _export(engine: Engine, case_id: str, practice: Practice, clock: FakeClock) -> str:
    case = engine.case(case_id)
    return billing_bundle(case, engine.workflow_of(case), engine.ledger(case_id), engine.appointments(case_id),
                          practice, engine.app.practice, generated_at=clock.now())


def _resources(bundle: Bundle) -> list[Any]:
    """The entries' resources (typed loosely: a test reads their optional elements as present)."""
    return [entry.resource for entry in bundle.entry or ()]


def _of(bundle: Bundle, kind: str) -> list[Any]:
    return [r for r in _resources(bundle) if r.get_resource_type() == kind]


def _codings(node: object) -> Iterator[tuple[str, str]]:
    """Every (system, code) pair anywhere in a JSON value."""
    if isinstance(node, Mapping):
        if "system" in node and "code" in node:
            yield str(node["system"]), str(node["code"])
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def test_a_case_exports_as_an_r4b_bundle_of_its_billing_and_care(
    billed: Engine, clock: FakeClock, practice: Practice
) -> None:
    case_id = _case(billed, clock, practice)
    text = _export(billed, case_id, practice, clock)
    bundle = Bundle.model_validate_json(text)
    books, booked = billed.ledger(case_id), billed.appointments(case_id)
    assert bundle.type == "collection"

    missed = {a.id for a in booked if a.status in ("no_show", "cancelled")}
    visits = {c.visit for c in books.charges} - missed
    kinds = [r.get_resource_type() for r in _resources(bundle)]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        "Patient": 1, "EpisodeOfCare": 1, "Location": 1, "CarePlan": 1, "Account": 1, "Invoice": 1,
        "Appointment": len(booked), "Encounter": len(visits), "ChargeItem": len(books.charges),
    }
    assert len(books.charges) >= 6 and len(booked) >= 5 and len(visits) == len(books.charges) - 1

    # Every reference is to an entry of the Bundle, by its urn:uuid; ids are the urns' UUIDs.
    urls = {entry.fullUrl for entry in bundle.entry or ()}
    assert [entry.fullUrl for entry in bundle.entry or ()] == [f"urn:uuid:{r.id}" for r in _resources(bundle)]
    references = [m for m in json.loads(text)["entry"] for m in _references(m["resource"])]
    assert references and set(references) <= urls

    codings = set(_codings(json.loads(text)))
    assert {(CPT, "90837"), (CPT, "90792"), (ICD10CM, "F33.1"), (PLACE_OF_SERVICE, "11")} <= codings

    (patient,) = _of(bundle, "Patient")
    assert (patient.name[0].given, patient.name[0].family) == (["Zoë"], "Ñúñez-Ærø")
    assert str(patient.birthDate) == "1988-04-12"
    (address,) = patient.address
    assert (address.line, address.city, address.state, address.postalCode, address.country) == (
        ["45 Sample Street, Apt 2B"], "Eugene", "OR", "97401", "US")
    assert {t.system for t in patient.telecom} == {"email", "sms"}

    statuses = [a.status for a in _of(bundle, "Appointment")]
    assert {"fulfilled", "noshow"} <= set(statuses)
    assert "attended" in {a.status for a in booked}  # one marked attended, the rest completed by the pathway
    (episode,) = _of(bundle, "EpisodeOfCare")
    assert episode.status == "active"
    (plan,) = _of(bundle, "CarePlan")
    assert (plan.status, plan.intent) == ("active", "plan") and "6 KAP sessions" in plan.description
    assert {a.detail.status for a in plan.activity} == {"in-progress"} and plan.period.end is None

    items = _of(bundle, "ChargeItem")
    by_line = dict(zip((c.id for c in books.charges), items, strict=True))
    for line in books.charges:
        item = by_line[line.id]
        assert item.priceOverride.value == line.fee and item.priceOverride.currency == "USD"
        assert item.quantity.value == line.units
        assert [(c.system, c.code) for c in item.code.coding or ()] == ([(CPT, line.code)] if line.code else [])
        assert item.status == ("aborted" if line.voided else "billable")
        context = str(item.context.reference)
        assert context in urls and (line.visit in missed) == (context == _url_of(bundle, "EpisodeOfCare"))
        if line.code:
            assert [(c.coding[0].system, c.coding[0].code) for c in item.reason] == [(ICD10CM, "F33.1")]
        else:  # a missed visit's fee was for no care: it claims no diagnosis
            assert item.reason is None
    no_show = next(c for c in books.charges if c.visit in missed)
    assert (no_show.code, no_show.fee, no_show.voided) == (None, NO_SHOW_FEE, True)
    assert by_line[no_show.id].code.text and by_line[no_show.id].note

    (invoice,) = _of(bundle, "Invoice")
    assert invoice.totalGross.value == books.charged and invoice.totalNet.value == books.balance
    assert (invoice.totalGross.currency, invoice.totalNet.currency) == ("USD", "USD")
    assert invoice.status == ("balanced" if books.balance == 0 else "issued")
    assert len(invoice.lineItem) == len(books.charges) and books.balance > 0
    assert f"Paid ${books.paid:,.2f}; adjusted (voids and write-offs) ${books.adjusted:,.2f}" in invoice.note[0].text

    # Only codes FHIR R4B's required bindings allow, in the Bundle and each resource as they parse back.
    parsed = json.loads(text)
    for resource in [parsed, *(entry["resource"] for entry in parsed["entry"])]:
        check_codes(resource)
    assert json.loads(bundle.model_dump_json(exclude_none=True)) == json.loads(text)

    # The same inputs, read afresh, give the same bytes.
    assert _export(billed, case_id, practice, clock) == text
    later = clock.now() + timedelta(days=1)
    case = billed.case(case_id)
    assert billing_bundle(case, billed.workflow_of(case), books, booked, practice, billed.app.practice,
                          generated_at=later) != text


def _url_of(bundle: Bundle, kind: str) -> str:
    return next(str(e.fullUrl) for e, r in zip(bundle.entry or (), _resources(bundle), strict=True)
                if r.get_resource_type() == kind)


def _references(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_the_binding_check_catches_a_code_fhir_does_not_allow() -> None:
    check_codes({"resourceType": "Appointment", "status": "fulfilled",
                 "participant": [{"status": "accepted", "required": "required"}]})
    with pytest.raises(ValueError, match=r"Appointment\.status is 'attended'"):
        check_codes({"resourceType": "Appointment", "status": "attended"})
    with pytest.raises(ValueError, match=r"Appointment\.participant\.status is 'maybe'"):
        check_codes({"resourceType": "Appointment", "status": "booked", "participant": [{"status": "maybe"}]})
    with pytest.raises(ValueError, match=r"Invoice\.lineItem\.priceComponent\.type is 'rebate'"):
        check_codes({"resourceType": "Invoice", "status": "issued",
                     "lineItem": [{"priceComponent": [{"type": "base"}, {"type": "rebate"}]}]})
    with pytest.raises(ValueError, match=r"Bundle\.type is 'bag'"):
        check_codes({"resourceType": "Bundle", "type": "bag"})


def test_the_binding_table_covers_every_status_the_export_sets() -> None:
    bound = {f"{kind}.{path}" for kind, path in REQUIRED_CODES}
    assert {"Appointment.status", "Encounter.status", "ChargeItem.status", "Invoice.status", "Account.status",
            "EpisodeOfCare.status", "CarePlan.status", "CarePlan.intent", "Bundle.type"} <= bound
    assert REQUIRED_CODES[("ChargeItem", "status")] == {
        "planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"}


def test_a_plan_ended_early_is_revoked_and_superbilled_lines_are_billed(
    billed: Engine, clock: FakeClock, practice: Practice
) -> None:
    """Ended before its sessions were all given: FHIR's ``revoked`` ("terminated prior to reaching
    completion"), its period ending that day, its activities stopped. The lines on a superbill issued are
    ``billed``; the self-pay evaluation, on none, stays ``billable``."""
    case_id = treated(billed, clock, practice, kap_sessions=1)
    billed.record(case_id, "treatment_plan", {"action": "end_early", "reason": "client moving away"},
                  actor=PRESCRIBER)
    billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    books = billed.ledger(case_id)
    billed.issue_superbill(case_id, first=books.charges[0].date_of_service, last=clock.now().date(), actor=BILLING)
    bundle = Bundle.model_validate_json(_export(billed, case_id, practice, clock))
    (plan,) = _of(bundle, "CarePlan")
    assert plan.status == "revoked" and str(plan.period.end) == clock.now().date().isoformat()
    assert {a.detail.status for a in plan.activity} == {"stopped"}
    items = _of(bundle, "ChargeItem")
    assert [i.status for i in items] == ["billed" if c.insurance else "billable" for c in books.charges]
    assert {i.status for i in items} == {"billed", "billable"}


def test_the_api_and_the_cli_give_the_bundle_to_the_roles_that_read_it(
    billed: Engine, clock: FakeClock, practice: Practice, tmp_path: Path
) -> None:
    import httpx
    from http_server import serving
    from typer.testing import CliRunner

    from kapflow.cli import app as cli_app
    from kapflow.http.app import create_app
    from kapflow.http.identity import RequestAuthenticator

    case_id = treated(billed, clock, practice, kap_sessions=1)
    keys = {role: billed.create_api_key(f"pms-{role}", role, created_by="test-admin")[0]
            for role in ("billing", "front_desk")}
    with serving(create_app(billed, RequestAuthenticator(billed))) as base:
        answer = httpx.get(f"{base}/v1/cases/{case_id}/billing.fhir.json",
                           headers={"Authorization": f"Bearer {keys['billing']}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/fhir+json"
        assert Bundle.model_validate_json(answer.text).type == "collection"
        refused = httpx.get(f"{base}/v1/cases/{case_id}/billing.fhir.json",
                            headers={"Authorization": f"Bearer {keys['front_desk']}"}, timeout=30)
        assert refused.status_code == 403  # the Bundle carries diagnoses
    out = tmp_path / "bundle.json"
    url = str(billed.app.store.engine.url.render_as_string(hide_password=False))  # type: ignore[attr-defined]
    done = CliRunner().invoke(cli_app, ["--db", url, "billing", "fhir", case_id, "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert out.stat().st_mode & 0o777 == 0o600 and json.loads(out.read_text())["resourceType"] == "Bundle"
