"""The console on a real uvicorn server, read as a browser would (httpx with cookies), on SQLite and PostgreSQL.

Sign-in with local accounts, the session cookie's flags, CSRF on every form, idle sign-out, the
Content-Security-Policy, minimum-necessary reads (a role's forbidden fields never reach its HTML),
a client's reach, and the case page's forms and refusals. The journeys in a real browser are in
tests/browser/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from console_support import PASSWORD, Console, console_serving, csrf_of, post_form, sign_in
from support import FRONT_DESK, PRESCRIBER, booking, open_case, to_ready

from kapflow.app.engine import Engine
from kapflow.http.console.forms import local_input
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


@pytest.fixture
def console(db_url: str, clock: FakeClock) -> Iterator[Console]:
    """The console on SQLite: for what does not depend on the database (headers, forms, CSRF, sessions)."""
    store = SqlStore(db_url)
    try:
        with console_serving(Engine(store, KAP_PATHWAY, clock=clock)) as served:
            yield served
    finally:
        store.close()


@pytest.fixture
def any_console(engine: Engine) -> Iterator[Console]:
    """The console on each database in turn: for the journeys that read and write cases."""
    with console_serving(engine) as served:
        yield served


def events(engine: Engine, case_id: str) -> int:
    return len(engine.history(case_id))


# ------------------------------------------------------------------ sign-in and the session


def test_every_page_but_sign_in_sends_a_stranger_to_sign_in(console: Console) -> None:
    case_id = open_case(console.engine)
    with console.browser() as b:
        for path in ("/console/", "/console/cases", f"/console/cases/{case_id}", "/console/audit"):
            answer = b.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in", path
        page = b.get("/console/sign-in")
        assert page.status_code == 200 and 'autocomplete="current-password"' in page.text


def test_signing_in_sets_an_httponly_strict_session_cookie_and_shows_my_work(console: Console) -> None:
    with console.browser() as b:
        answer = sign_in(b, console.account("desk-1"))
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "kapflow-session=" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on a loopback address: a Secure cookie would never come back
        work = b.get("/console/")
        assert work.status_code == 200 and "My work" in work.text and "desk-1" in work.text


def test_a_wrong_password_is_refused_in_words_and_leaves_no_session(console: Console) -> None:
    with console.browser() as b:
        answer = sign_in(b, console.account("desk-1"), "not the passphrase")
        assert answer.status_code == 401 and 'role="alert"' in answer.text
        assert "not the passphrase" not in answer.text
        assert b.get("/console/").status_code == 303


def test_repeated_failures_are_rate_limited_and_every_attempt_is_audited(any_console: Console) -> None:
    with any_console.browser() as b:
        for _ in range(5):
            assert sign_in(b, any_console.account("np-1"), "wrong passphrase 1").status_code == 401
        limited = sign_in(b, "np-1")  # the right passphrase, but too many failures just now
        assert limited.status_code == 401 and re.search(r"(?i)too many|try again", limited.text)
        assert b.get("/console/").status_code == 303
    outcomes = [a.outcome for a in any_console.engine.sign_in_attempts(name="np-1")]
    assert outcomes[:5] == ["bad_credentials"] * 5 and outcomes[5] == "rate_limited"


def test_signing_out_ends_the_session_on_the_server(console: Console) -> None:
    with console.signed_in("desk-1") as b:
        stolen = dict(b.cookies)
        answer = post_form(b, "/console/", "/console/sign-out", {})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
        with console.browser() as thief:
            thief.cookies.update(stolen)  # the old cookie, replayed: the session is gone
            assert thief.get("/console/").status_code == 303


def test_a_session_idle_past_the_timeout_must_sign_in_again(any_console: Console, clock: FakeClock) -> None:
    with any_console.signed_in("desk-1") as b:
        clock.advance(minutes=14)
        assert b.get("/console/").status_code == 200  # in use: the idle clock starts again
        clock.advance(minutes=14)
        assert b.get("/console/").status_code == 200
        clock.advance(minutes=15)
        answer = b.get("/console/")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in?expired=true"
        assert "signed out after a while" in b.get(answer.headers["location"]).text


def test_pages_carry_a_content_security_policy_without_unsafe_inline(console: Console) -> None:
    with console.signed_in("desk-1") as b:
        for path in ("/console/sign-in", "/console/", "/console/cases"):
            headers = b.get(path).headers
            policy = headers["content-security-policy"]
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy and headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"
        page = b.get("/console/").text
        assert "<script>" not in page and " style=" not in page and " on" + "click=" not in page


def test_htmx_is_served_from_the_package(console: Console) -> None:
    with console.browser() as b:
        script = b.get("/console/static/htmx.min.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert b.get("/console/static/console.css").status_code == 200


# ------------------------------------------------------------------ CSRF


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_form_without_the_sessions_csrf_token_is_refused_and_writes_nothing(
    console: Console, token: str | None,
) -> None:
    case_id = open_case(console.engine)
    before = events(console.engine, case_id)
    with console.signed_in("desk-1") as b:
        data = {"amount": "250.00", "purpose": "evaluation_fee"} | ({"csrf": token} if token else {})
        answer = b.post(f"/console/cases/{case_id}/facts/payment", data=data)
        assert answer.status_code == 403 and "nothing was changed" in answer.text
        assert events(console.engine, case_id) == before


def test_a_form_posted_from_another_origin_is_refused(console: Console) -> None:
    case_id = open_case(console.engine)
    before = events(console.engine, case_id)
    with console.signed_in("desk-1") as b:
        token = csrf_of(b.get(f"/console/cases/{case_id}").text)
        answer = b.post(f"/console/cases/{case_id}/facts/payment", headers={"Origin": "https://elsewhere.example"},
                        data={"csrf": token, "amount": "250.00", "purpose": "evaluation_fee"})
        assert answer.status_code == 403 and events(console.engine, case_id) == before


def test_the_sign_in_form_needs_its_own_csrf_token(console: Console) -> None:
    with console.browser() as b:
        answer = b.post("/console/sign-in", data={"name": console.account("desk-1"), "password": PASSWORD})
        assert answer.status_code == 403 and b.get("/console/").status_code == 303


# ------------------------------------------------------------------ the case page


def test_front_desk_sees_the_fee_blocker_in_words_until_the_payment_is_recorded(
    any_console: Console, clock: FakeClock,
) -> None:
    case_id = open_case(any_console.engine)
    page = f"/console/cases/{case_id}"
    with any_console.signed_in("desk-1") as b:
        starts = local_input(clock.now() + timedelta(days=3), any_console.engine.app.practice)
        booked = post_form(b, page, f"{page}/facts/appointment", {
            "kind": "evaluation", "starts_at": starts, "clinician": "np-1", "minutes": "60"})
        assert booked.status_code == 303, booked.text
        assert post_form(b, page, f"{page}/triggers/book_evaluation", {}).status_code == 303
        html = b.get(page).text
        assert "evaluation_fee_unpaid" in html and "fee" in html  # beside the disabled start of the evaluation
        paid = post_form(b, page, f"{page}/facts/payment", {"amount": "250.00", "purpose": "evaluation_fee"})
        assert paid.status_code == 303
        after = b.get(paid.headers["location"]).text
        assert "payment recorded" in after and "evaluation_fee_unpaid" not in after.split('id="time-h"')[0]


def test_an_invalid_fact_is_shown_beside_each_field_and_nothing_is_written(console: Console) -> None:
    case_id = open_case(console.engine)
    before = events(console.engine, case_id)
    with console.signed_in("desk-1") as b:
        page = f"/console/cases/{case_id}"
        answer = post_form(b, page, f"{page}/facts/payment", {"amount": "two hundred"})
        assert answer.status_code == 422
        errors = re.findall(r'class="field-error" id="payment-(\w+)-error"', answer.text)
        assert set(errors) == {"amount", "purpose"}  # both at once, each beside its field
        assert 'value="two hundred"' in answer.text  # what was typed is kept
        assert events(console.engine, case_id) == before


def test_a_refused_trigger_shows_every_blocker_and_is_audited(console: Console) -> None:
    case_id = open_case(console.engine)
    with console.signed_in("desk-1") as b:
        page = f"/console/cases/{case_id}"
        answer = post_form(b, page, f"{page}/triggers/book_evaluation", {})
        assert answer.status_code == 409 and "nothing was changed" in answer.text
        assert "evaluation_not_booked" in answer.text
        assert console.engine.history(case_id)[-1].kind == "refused"


def test_a_role_never_receives_the_fields_it_may_not_read(any_console: Console, clock: FakeClock) -> None:
    case_id = open_case(any_console.engine)
    to_ready(any_console.engine, clock, case_id)
    any_console.engine.record(case_id, "vitals", {"phase": "pre_dose", "systolic": 187, "diastolic": 113},
                              actor=PRESCRIBER)
    with any_console.signed_in("np-1") as clinician:
        seen = clinician.get(f"/console/cases/{case_id}").text
        assert "187/113" in seen and "systolic" in seen  # the hold's sentence, and the vitals themselves
    with any_console.signed_in("desk-1") as desk:
        html = desk.get(f"/console/cases/{case_id}").text
        assert "187/113" not in html and "Client-One" in html
        assert "systolic" not in html  # a blocker's code in words names the check, never what it read
    with any_console.signed_in("billing-1") as billing:
        html = billing.get(f"/console/cases/{case_id}").text
        assert "187/113" not in html and "systolic" not in html and "Client-One" in html  # billing reads the intake


def test_an_auditor_reads_everything_writes_nothing_and_sees_its_own_reads(console: Console) -> None:
    case_id = open_case(console.engine)
    before = events(console.engine, case_id)
    with console.signed_in("auditor-1") as b:
        page = b.get(f"/console/cases/{case_id}").text
        assert "Client-One" in page and "<details" not in page  # no form to record anything
        answer = post_form(b, f"/console/cases/{case_id}", f"/console/cases/{case_id}/facts/payment",
                           {"amount": "250.00", "purpose": "evaluation_fee"})
        assert answer.status_code in (403, 409)
        assert console.engine.facts(case_id, "payment") == []
        assert events(console.engine, case_id) == before + 1 and console.engine.history(case_id)[-1].kind == "refused"
        audit = b.get(f"/console/audit/cases/{case_id}").text
        assert "auditor-1" in audit and "console.case" in audit


def test_a_client_reaches_only_its_own_case(any_console: Console) -> None:
    own, other = open_case(any_console.engine), open_case(any_console.engine, last_name="Client-Two")
    any_console.engine.bind_client(own, "client-1", actor=FRONT_DESK)
    with any_console.signed_in("client-1") as b:
        home = b.get("/console/").text
        assert own in home and other not in home
        assert b.get(f"/console/cases/{own}").status_code == 200
        refused = b.get(f"/console/cases/{other}")
        assert refused.status_code == 404 and "Client-Two" not in refused.text
        assert b.get("/console/cases").status_code in (403, 404)
        assert b.get("/console/audit").status_code == 403


def test_the_case_list_pages_and_filters_by_state(any_console: Console) -> None:
    for n in range(3):
        open_case(any_console.engine, last_name=f"Client-{n}")
    with any_console.signed_in("desk-1") as b:
        listed = b.get("/console/cases", params={"state": "inquiry"}).text
        assert all(f"Client-{n}" in listed for n in range(3))
        assert "inquiry (3)" in listed
        assert "Client-0" not in b.get("/console/cases", params={"state": "completed"}).text


def test_an_unknown_case_is_a_page_not_a_problem_document(console: Console) -> None:
    with console.signed_in("desk-1") as b:
        answer = b.get("/console/cases/case-0000000000000000")
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
        assert b.get("/console/cases/not%20an%20id").status_code == 404


def test_a_booking_in_practice_time_lands_at_that_wall_clock_time(console: Console, clock: FakeClock) -> None:
    case_id = open_case(console.engine)
    with console.signed_in("desk-1") as b:
        page = f"/console/cases/{case_id}"
        answer = post_form(b, page, f"{page}/facts/appointment", {
            **{k: v for k, v in booking(case_id, "evaluation", clock.now()).items() if k == "clinician"},
            "kind": "evaluation", "starts_at": "2026-01-09T15:30", "minutes": "60"})
        assert answer.status_code == 303, answer.text
    (appointment,) = console.engine.appointments(case_id)
    assert appointment.starts_at.astimezone(console.engine.app.practice.zone).strftime("%Y-%m-%dT%H:%M") == \
        "2026-01-09T15:30"


def test_a_case_is_found_by_its_id(console: Console) -> None:
    case_id = open_case(console.engine)
    with console.signed_in("desk-1") as b:
        found = b.get("/console/cases", params={"case": f" {case_id} "})
        assert found.status_code == 303 and found.headers["location"] == f"/console/cases/{case_id}"
        assert b.get("/console/cases", params={"case": "case-0000000000000000"}).status_code == 303
        assert b.get("/console/cases/case-0000000000000000").status_code == 404
        assert b.get("/console/cases", params={"case": "not an id"}).status_code == 422


def test_the_case_list_filters_by_pathway_when_the_practice_runs_several(console: Console) -> None:
    with console.signed_in("desk-1") as b:
        page = b.get("/console/cases").text
        assert 'id="f-case"' in page and 'id="f-state"' in page
        assert ('id="f-workflow"' in page) == (len({wf.name for wf in console.engine.workflows.versions()}) > 1)
        assert b.get("/console/cases", params={"workflow": "kap"}).status_code == 200
