"""The console's journeys in a real browser (Debian's chromium through Playwright) against a real
``kapflow serve`` on 127.0.0.1: front desk, therapist, auditor and client, each page checked with
axe-core (no serious or critical violation) and photographed at 1280 and 375 px.

The database is prepared with the engine's own commands (synthetic clients, one local account per
role), then served by a separate ``kapflow serve`` process, as a practice would run it.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import CLIENT, FRONT_DESK, THERAPIST, open_case, to_ready

from kapflow.audit.signing import Ed25519Signer, generate_key
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.case import Actor
from kapflow.testing import FakeClock

PASSWORD = "synthetic passphrase 0001"
ACCOUNTS = {"desk-1": "front_desk", "therapist-1": "therapist", "auditor-1": "auditor", "client-1": "client",
            "billing-1": "billing"}

OpenPage = Callable[..., Page]
AxeCheck = Callable[..., list[dict[str, Any]]]
Shot = Callable[[Page, str], Path]


class Practice:
    """The prepared database: which case is where."""

    def moved_to(self, url: str) -> Practice:
        self.url = url
        return self

    def __init__(self, url: str) -> None:
        self.url = url
        past = FakeClock(datetime.now(UTC) - timedelta(days=10))  # the story so far happened in the past
        engine = build_engine(url, settings=Settings(), clock=past)
        try:
            for name, role in ACCOUNTS.items():
                engine.add_user(name, role, PASSWORD, totp=False, actor=Actor("admin-1", "front_desk"))
            self.new_inquiry = open_case(engine, last_name="Client-Inquiry")
            self.ready = open_case(engine, last_name="Client-Ready")
            to_ready(engine, past, self.ready)
            self.other = open_case(engine, last_name="Client-Other")
            engine.bind_client(self.ready, "client-1", actor=FRONT_DESK)
            signer_text, _ = generate_key("practice-example")
            engine.checkpoint(Ed25519Signer.from_text(signer_text), origin="practice.example/audit")
        finally:
            engine.close()
        today = build_engine(url, settings=Settings())  # the day's checklist, but for the vitals, just now
        try:
            today.record(self.ready, "fasting", {"attested": True, "hours": 6}, actor=CLIENT)
            today.record(self.ready, "escort", {"name": "Escort Sample", "phone": "+1 555 010 0199"},
                         actor=FRONT_DESK)
            today.record(self.ready, "clinician_present", {"clinician": "Therapist Sample, LCSW"}, actor=THERAPIST)
        finally:
            today.close()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Practice:
    """The practice's database, built once per module: each test works on its own copy."""
    return Practice(f"sqlite:///{tmp_path_factory.mktemp('practice') / 'practice.db'}")


@pytest.fixture
def practice(prepared: Practice, tmp_path: Path) -> Practice:
    source = Path(prepared.url.removeprefix("sqlite:///"))
    for file in source.parent.glob(source.name + "*"):
        shutil.copy2(file, tmp_path / file.name)
    return copy.copy(prepared).moved_to(f"sqlite:///{tmp_path / source.name}")


@pytest.fixture
def served(practice: Practice, kapflow_server: Callable[..., str]) -> str:
    return kapflow_server(practice.url, upgrade=False)  # built by this kapflow: at the newest revision already


def sign_in(page: Page, base: str, name: str, axe_check: AxeCheck) -> None:
    page.goto(f"{base}/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    axe_check(page)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=re.compile("My work|Your care"))).to_be_visible()


def open_form(page: Page, kind: str) -> None:
    details = page.locator(f"#form-{kind}")
    if details.get_attribute("open") is None:
        details.locator("summary").click()


def test_front_desk_books_an_evaluation_sees_the_fee_blocker_and_pays_it(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot,
) -> None:
    page = open_page(1280)
    sign_in(page, served, "desk-1", axe_check)
    screenshot(page, "my-work-front-desk")
    page.get_by_role("link", name="Cases").click()
    axe_check(page)
    page.get_by_role("link", name=practice.new_inquiry).click()
    expect(page.get_by_role("heading", name=re.compile("Client-Inquiry"))).to_be_visible()
    axe_check(page)

    open_form(page, "appointment")
    page.locator("#appointment-kind").select_option("evaluation")
    starts = (datetime.now(UTC) + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    page.locator("#appointment-starts_at").fill(starts.strftime("%Y-%m-%dT%H:%M"))
    page.locator("#appointment-clinician").fill("np-1")
    page.get_by_role("button", name="Record appointment").click()
    expect(page.get_by_role("status")).to_contain_text("appointment recorded")
    page.get_by_role("button", name="Book evaluation").click()
    expect(page.get_by_text("evaluation booked", exact=False).first).to_be_visible()

    start = page.get_by_role("button", name="Start evaluation")
    expect(start).to_be_disabled()
    blockers = page.locator("#why-start_evaluation")
    expect(blockers).to_contain_text("evaluation_fee_unpaid: $250 evaluation fee is due")  # a front desk reads payments
    axe_check(page)
    screenshot(page, "case-fee-unpaid")

    open_form(page, "payment")
    page.locator("#payment-amount").fill("250.00")
    page.locator("#payment-purpose").select_option("evaluation_fee")
    page.get_by_role("button", name="Record payment").click()
    expect(page.get_by_role("status")).to_contain_text("payment recorded")
    expect(page.locator("#why-start_evaluation")).not_to_contain_text("evaluation_fee_unpaid")
    axe_check(page)


def test_a_therapist_sees_the_dose_held_at_150_over_95_and_proceeds_at_138_over_88(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot,
) -> None:
    page = open_page(1280)
    sign_in(page, served, "therapist-1", axe_check)
    page.goto(f"{served}/console/cases/{practice.ready}")
    for systolic, diastolic in ((150, 95), (138, 88)):
        open_form(page, "vitals")
        page.locator("#vitals-phase").select_option("pre_dose")
        page.locator("#vitals-systolic").fill(str(systolic))
        page.locator("#vitals-diastolic").fill(str(diastolic))
        page.get_by_role("button", name="Record vitals").click()
        expect(page.get_by_role("status")).to_contain_text("vitals recorded")
        if systolic == 150:
            expect(page.get_by_role("button", name="Start kap session")).to_be_disabled()
            expect(page.locator("#why-start_kap_session")).to_contain_text("150/95")
            axe_check(page)
            screenshot(page, "case-dose-held")
    start = page.get_by_role("button", name="Start kap session")
    expect(start).to_be_enabled()
    start.click()
    expect(page.locator(".case-head .state")).to_have_text("dosing")
    axe_check(page)
    screenshot(page, "case-dosing")


def test_an_auditor_cannot_write_exports_a_case_and_sees_its_own_view_in_the_access_log(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot, tmp_path: Path,
) -> None:
    page = open_page(1280, accept_downloads=True)
    sign_in(page, served, "auditor-1", axe_check)
    expect(page.get_by_text("Latest signed checkpoint")).to_be_visible()
    screenshot(page, "my-work-auditor")
    page.goto(f"{served}/console/cases/{practice.ready}")
    expect(page.locator("details.fact-form")).to_have_count(0)  # nothing to record: no form at all
    for button in page.locator("ul.actions button").all():
        expect(button).to_be_disabled()
    axe_check(page)
    page.get_by_role("link", name="Audit this case").click()
    expect(page.get_by_role("status")).to_contain_text("intact")
    axe_check(page)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("PDF")).click()
    saved = tmp_path / "history.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")
    page.reload()
    readers = page.locator("section[aria-labelledby=readers-h]")
    expect(readers).to_contain_text("auditor-1")
    expect(readers).to_contain_text("console.case")
    expect(readers).to_contain_text("console.export.pdf")
    screenshot(page, "case-audit")
    page.goto(f"{served}/console/audit")
    axe_check(page)


def test_a_client_account_sees_only_its_own_case(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck,
) -> None:
    page = open_page(375)
    sign_in(page, served, "client-1", axe_check)
    page.get_by_role("link", name=re.compile(practice.ready)).click()
    expect(page.get_by_role("heading", name=re.compile("Client-Ready"))).to_be_visible()
    axe_check(page)
    answer = page.goto(f"{served}/console/cases/{practice.other}")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "Client-Other" not in page.content()
    axe_check(page)


@pytest.mark.parametrize("width", [1280, 375])
def test_billing_finds_its_work_reads_the_ledger_and_is_told_what_a_superbill_lacks(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot, width: int,
) -> None:
    page = open_page(width)
    sign_in(page, served, "billing-1", axe_check)
    expect(page.get_by_text("billed to insurance on no superbill yet").first).to_be_visible()
    screenshot(page, "my-work-billing")
    page.goto(f"{served}/console/cases/{practice.ready}")
    page.get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name=re.compile("Billing: .*Client-Ready"))).to_be_visible()
    expect(page.get_by_role("cell", name="Prescriber evaluation (60 min)")).to_be_visible()
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"the billing page scrolls sideways at {width} px ({wide} px wide)"
    axe_check(page)
    screenshot(page, "billing")
    today = datetime.now(UTC).date()
    page.get_by_label("First date of service").fill((today - timedelta(days=30)).isoformat())
    page.get_by_label("Last date of service").fill(today.isoformat())
    page.get_by_role("button", name="Issue a superbill").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("the practice's details are not set")  # this practice has no [billing] yet
    expect(alert).to_contain_text("the client's address is not recorded")
    axe_check(page)


@pytest.mark.parametrize("width", [320, 375, 640])  # 640: a 1280 px screen at 200% zoom
def test_reading_works_without_javascript_on_narrow_screens(
    practice: Practice, served: str, open_page: OpenPage, axe_check: AxeCheck, screenshot: Shot, width: int,
) -> None:
    page = open_page(width, java_script_enabled=False)
    sign_in(page, served, "therapist-1", axe_check)
    screenshot(page, "my-work-therapist")
    for path in (f"/console/cases/{practice.ready}", "/console/cases", f"/console/audit/cases/{practice.ready}"):
        page.goto(f"{served}{path}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{path} scrolls sideways at {width} px ({wide} px wide)"
    page.goto(f"{served}/console/cases/{practice.ready}")
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(page.locator("svg[role=img]")).to_be_visible()
    axe_check(page)
    screenshot(page, "case-ready")


def test_signing_in_and_opening_a_case_by_keyboard_alone(practice: Practice, served: str, open_page: OpenPage) -> None:
    page = open_page(1280)
    page.goto(f"{served}/console/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "name"
    page.keyboard.type("desk-1")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My work")).to_be_visible()
    reached = []
    while "Cases" not in reached and len(reached) < 8:  # the skip link, then the navigation
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent"))
    assert reached[-1] == "Cases" and "My work" in reached, reached
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    page.get_by_role("link", name=practice.new_inquiry).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Client-Inquiry"))).to_be_visible()
