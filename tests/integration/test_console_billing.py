"""The console's billing page: a case's ledger, its superbills, issuing one; for the roles that read money.

Billing sees the charges posted as visits completed, the statement and the balance, issues a superbill for
a range of dates (every gap listed when it cannot be made, nothing recorded), and downloads it. The front
desk sees the ledger but not the superbills (they list diagnoses); a forged form changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from billing_support import ADDRESS, PRACTICE, treated
from console_support import Console, console_serving, csrf_of
from support import BILLING, CLIENT

from kapflow.app.engine import Engine
from kapflow.domain.superbill import Practice
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


@pytest.fixture
def practice() -> Practice:
    return Practice(PRACTICE, {})


@pytest.fixture
def billed(db_url: str, clock: FakeClock, practice: Practice) -> Iterator[Engine]:
    store = SqlStore(db_url)
    yield Engine(store, KAP_PATHWAY, clock=clock, documents=practice)
    store.close()


@pytest.fixture
def console(billed: Engine) -> Iterator[Console]:
    with console_serving(billed) as served:
        yield served


def test_billing_sees_the_ledger_and_issues_a_superbill(
    billed: Engine, clock: FakeClock, practice: Practice, console: Console
) -> None:
    case_id = treated(billed, clock, practice, kap_sessions=1)
    billed.record(case_id, "payment", {"amount": "100.00", "purpose": "psychotherapy"}, actor=BILLING)
    today = clock.now().date()
    span = {"first": (today - timedelta(days=60)).isoformat(), "last": today.isoformat()}
    with console.signed_in("billing-1") as b:
        case_page = b.get(f"/console/cases/{case_id}").text
        assert f'href="/console/cases/{case_id}/billing">Billing</a>' in case_page
        page = b.get(f"/console/cases/{case_id}/billing")
        assert page.status_code == 200
        text = page.text
        for expected in ("Prescriber evaluation", "Integration psychotherapy (KAP session)", "90837", "$250.00",
                         "<strong>$230.00</strong>", "payment (psychotherapy)", "None issued yet."):
            assert expected in text, expected
        assert re.search(r'<label for="sb-first">First date of service</label>\s*<input id="sb-first" name="first" '
                         r'type="date" required', text)

        gap = b.post(f"/console/cases/{case_id}/superbills", data={"csrf": csrf_of(text), **span})
        assert gap.status_code == 422
        assert "the client&#39;s address is not recorded" in gap.text and "nothing was recorded" in gap.text
        assert billed.superbills(case_id) == []

        billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
        forged = b.post(f"/console/cases/{case_id}/superbills", data={"csrf": "forged", **span})
        assert forged.status_code == 403 and billed.superbills(case_id) == []
        made = b.post(f"/console/cases/{case_id}/superbills", data={"csrf": csrf_of(text), **span})
        assert made.status_code == 303, made.text
        listed = b.get(made.headers["location"]).text
        reference = billed.superbills(case_id)[0].reference
        assert f"Superbill {reference} issued." in listed
        link = f"/console/cases/{case_id}/superbills/{reference}.pdf"
        assert f'href="{link}"' in listed
        pdf = b.get(link)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        bad = b.post(f"/console/cases/{case_id}/superbills", data={"csrf": csrf_of(text), "first": "soon",
                                                                    "last": span["last"]})
        assert bad.status_code == 422 and "first: give a date" in bad.text
    views = [a.view for a in billed.accesses(case_id=case_id)]
    assert "console.billing" in views and "console.superbill" in views


def test_the_front_desk_sees_the_ledger_but_not_the_superbills(
    billed: Engine, clock: FakeClock, practice: Practice, console: Console
) -> None:
    case_id = treated(billed, clock, practice, kap_sessions=1)
    billed.record(case_id, "client_address", ADDRESS, actor=CLIENT)
    today = clock.now().date()
    reference = billed.issue_superbill(case_id, first=today - timedelta(days=60), last=today,
                                       actor=BILLING).record.reference
    with console.signed_in("desk-1") as b:
        text = b.get(f"/console/cases/{case_id}/billing").text
        assert "Charges" in text and "Superbills" not in text and "F33.1" not in text
        assert b.get(f"/console/cases/{case_id}/superbills/{reference}.pdf").status_code == 403
        refused = b.post(f"/console/cases/{case_id}/superbills",
                         data={"csrf": csrf_of(text), "first": today.isoformat(), "last": today.isoformat()})
        assert refused.status_code in (403, 422)
    assert len(billed.superbills(case_id)) == 1
