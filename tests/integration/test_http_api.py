"""The HTTP API on a real uvicorn server on 127.0.0.1, called with httpx, on SQLite and PostgreSQL.

Identity comes from a verified API key, never from the request; errors are RFC 9457 problem details;
a case's ETag is its version and If-Match guards a write; Idempotency-Key replays the first answer.
"""

from __future__ import annotations

import io
import json as jsonlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from http_server import free_port, serving
from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace
from support import FRONT_DESK, INQUIRY

import kapflow.app.queries as queries
from kapflow.bootstrap import build_api, build_engine
from kapflow.config import Settings
from kapflow.http.app import MAX_BODY_BYTES, SpreadConnections, create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.logging import logging_configured

EVALUATION_AT = (datetime.now(UTC) + timedelta(days=30)).replace(hour=15, minute=0, second=0, microsecond=0)


@dataclass
class Api:
    url: str
    keys: dict[str, str]  # role -> API key
    engine: object

    def client(self, role: str | None = None, **headers: str) -> httpx.Client:
        sent = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers={**sent, **headers}, timeout=30)


@pytest.fixture
def api(any_ready_url: str) -> Iterator[Api]:
    engine = build_engine(any_ready_url, settings=Settings())
    keys = {}
    for role in ("front_desk", "prescriber", "billing", "therapist"):
        keys[role], _ = engine.create_api_key(f"pms-{role}", role, created_by="test-admin")
    keys["delegating"], _ = engine.create_api_key("pms-portal", "front_desk", ("front_desk",),
                                                  created_by="test-admin")
    app = create_app(engine, RequestAuthenticator(engine), ready=lambda: None)
    with serving(app) as url:
        yield Api(url, keys, engine)
    engine.close()


def _open(api: Api, key: str = "web-form-0001") -> httpx.Response:
    with api.client("front_desk", **{"Idempotency-Key": key}) as c:
        return c.post("/v1/cases", json={"intake": INQUIRY})


def test_health_and_readiness_need_no_credential(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(("authorization", "reason"), [
    (None, "missing"),
    ("Basic Zm9vOmJhcg==", "malformed"),
    ("Bearer kfk_0123456789ab_" + "A" * 43, "unknown_key"),
    ("Bearer kfk_nonsense", "malformed"),
    ("Bearer eyJhbGciOiJub25lIn0.e30.", "unknown_key"),  # no OpenID provider configured: keys only
])
def test_no_verified_credential_is_a_401_problem(api: Api, authorization: str | None, reason: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=api.url, headers=headers) as c:
        answer = c.post("/v1/cases", json={"intake": INQUIRY})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    body = answer.json()
    assert body["type"] == "urn:kapflow:problem:unauthenticated" and body["reason"] == reason
    if authorization:
        assert authorization.split()[-1] not in answer.text  # the credential is never echoed
    assert api.engine.count_cases() == 0  # type: ignore[attr-defined]


def test_the_fee_scenario_over_http(api: Api) -> None:
    """Open, book, a blocked start with every blocker, pay, start: the engine's held-in scenario."""
    opened = _open(api)
    assert opened.status_code == 201 and opened.headers["etag"] == '"1"'
    case_id = opened.json()["case_id"]
    assert opened.headers["location"] == f"/v1/cases/{case_id}"
    with api.client("front_desk") as desk, api.client("prescriber") as np:
        booked = desk.post(f"/v1/cases/{case_id}/facts/appointment",
                           json={"kind": "evaluation", "starts_at": EVALUATION_AT.isoformat(),
                                 "clinician": "np-rowan"})
        assert booked.status_code == 200, booked.text
        assert desk.post(f"/v1/cases/{case_id}/triggers/book_evaluation").status_code == 200
        check = np.get(f"/v1/cases/{case_id}/triggers/start_evaluation").json()
        assert not check["allowed"] and "evaluation_fee_unpaid" in [b["code"] for b in check["blockers"]]
        refused = np.post(f"/v1/cases/{case_id}/triggers/start_evaluation")
        assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["code"] == "transition_blocked"
        assert [b["code"] for b in problem["blockers"]] == ["evaluation_fee_unpaid"]
        assert problem["blockers"][0]["message"].startswith("$250 evaluation fee")
        paid = desk.post(f"/v1/cases/{case_id}/facts/payment", json={"amount": "250.00", "purpose": "evaluation_fee"})
        assert paid.status_code == 200
        started = np.post(f"/v1/cases/{case_id}/triggers/start_evaluation")
        assert started.status_code == 200 and started.json()["state"] == "evaluating"
        read = np.get(f"/v1/cases/{case_id}")
        assert read.json()["state"] == "evaluating" and read.headers["etag"] == f'"{read.json()["version"]}"'
        options = np.get(f"/v1/cases/{case_id}/triggers").json()
        assert {o["trigger"] for o in options} and all("blockers" in o for o in options)


def test_the_same_idempotency_key_answers_with_the_first_result(api: Api) -> None:
    first, again = _open(api, "form-7"), _open(api, "form-7")
    assert first.json()["case_id"] == again.json()["case_id"] and again.json()["replayed"]
    assert api.engine.count_cases() == 1  # type: ignore[attr-defined]


def test_if_match_refuses_a_write_on_a_case_that_moved(api: Api) -> None:
    """Two desks complete the same step: the second, sending the version it read, gets 409 and writes nothing."""
    case_id = _open(api).json()["case_id"]
    with api.client("front_desk") as desk:
        etag = desk.get(f"/v1/cases/{case_id}").headers["etag"]
        pay = {"amount": "100.00", "purpose": "evaluation_fee"}
        assert desk.post(f"/v1/cases/{case_id}/facts/payment", json=pay, headers={"If-Match": etag}).status_code == 200
        late = desk.post(f"/v1/cases/{case_id}/facts/payment", json=pay, headers={"If-Match": etag})
        assert late.status_code == 409 and late.json()["code"] == "concurrency_conflict"
        bad = desk.post(f"/v1/cases/{case_id}/facts/payment", json=pay, headers={"If-Match": "yesterday"})
        assert bad.status_code == 422
    assert api.engine.case(case_id).version == 2  # type: ignore[attr-defined]


def test_invalid_data_is_422_naming_the_field_never_the_value(api: Api) -> None:
    case_id = _open(api).json()["case_id"]
    with api.client("front_desk") as desk:
        answer = desk.post(f"/v1/cases/{case_id}/facts/payment", json={"amount": "lots", "purpose": "evaluation_fee"})
        assert answer.status_code == 422 and answer.json()["field"] == "amount" and "lots" not in answer.text
        shape = desk.post("/v1/cases", json={"intake": "Sample Client, born 1985"})
        assert shape.status_code == 422 and "born" not in shape.text


# Providers an embedding application might set, each noting when FastAPI asks it for a tracer, meter or logger.
# Not the API's no-op providers (FastAPI skips those, and takes a provider of any other class for a configured
# one), but handing out their no-op parts.
class _Tracers(trace.TracerProvider):
    def __init__(self, asked: list[str]) -> None:
        self.asked = asked

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        self.asked.append("tracer")
        return trace.NoOpTracer()


class _Meters(metrics.MeterProvider):
    def __init__(self, asked: list[str]) -> None:
        self.asked = asked

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        self.asked.append("meter")
        return metrics.NoOpMeter("kapflow-test")


class _Loggers(otel_logs.LoggerProvider):
    def __init__(self, asked: list[str]) -> None:
        self.asked = asked

    def get_logger(self, *args: Any, **kwargs: Any) -> otel_logs.Logger:
        self.asked.append("logger")
        return otel_logs.NoOpLogger("kapflow-test")


def test_requests_reach_no_opentelemetry_provider_the_process_has(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI traces, measures and logs each request (exception messages and stack traces too) through whatever
    OpenTelemetry providers the process has, or an exporter its environment names: kapflow's app turns that off,
    so what leaves the service about a request is kapflow's own log line, without PHI."""
    asked: list[str] = []
    tracers, meters, loggers = _Tracers(asked), _Meters(asked), _Loggers(asked)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracers)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: meters)
    monkeypatch.setattr(otel_logs, "get_logger_provider", lambda: loggers)
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    case_id = _open(api, key="web-form-otel").json()["case_id"]
    with api.client("front_desk") as desk:
        assert desk.post(f"/v1/cases/{case_id}/facts/payment", json={"amount": "lots"}).status_code == 422
        assert desk.get(f"/v1/cases/{case_id}").status_code == 200
    assert asked == []


def test_a_role_the_workflow_does_not_permit_is_403(api: Api) -> None:
    case_id = _open(api).json()["case_id"]
    with api.client("billing") as billing:
        answer = billing.post(f"/v1/cases/{case_id}/triggers/book_evaluation")
    assert answer.status_code == 403 and answer.json()["code"] == "not_permitted"


def test_a_delegating_key_acts_for_its_user_in_granted_roles_only_and_both_are_audited(api: Api) -> None:
    case_id = _open(api).json()["case_id"]
    behalf = {"Kapflow-On-Behalf-Of": "desk-user-17; role=front_desk"}
    with api.client("delegating", **behalf) as portal:
        pay = portal.post(f"/v1/cases/{case_id}/facts/payment", json={"amount": "250.00", "purpose": "evaluation_fee"})
        assert pay.status_code == 200
    last = api.engine.history(case_id)[-1]  # type: ignore[attr-defined]
    assert (last.actor, last.role, last.data.get("_via")) == ("desk-user-17", "front_desk", "pms-portal")
    with api.client("delegating", **{"Kapflow-On-Behalf-Of": "np-9; role=prescriber"}) as portal:
        refused = portal.post(f"/v1/cases/{case_id}/facts/payment", json={"amount": "1", "purpose": "other"})
    assert refused.status_code == 403
    with api.client("front_desk", **behalf) as plain:  # a key without delegation cannot act for anyone
        assert plain.post(f"/v1/cases/{case_id}/facts/payment",
                          json={"amount": "1", "purpose": "other"}).status_code == 403


def test_a_revoked_key_is_refused(api: Api) -> None:
    key_id = api.keys["billing"].split("_")[1]
    api.engine.revoke_api_key(key_id, revoked_by="test-admin")  # type: ignore[attr-defined]
    with api.client("billing") as billing:
        answer = billing.get("/v1/cases")
    assert answer.status_code == 401 and answer.json()["reason"] == "revoked"


def test_unknown_case_routes_and_oversized_bodies_are_problems_with_security_headers(api: Api) -> None:
    with api.client("front_desk") as desk:
        missing = desk.get("/v1/cases/case-0000000000000000")
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_case"
        nowhere = desk.get("/v1/nowhere")
        assert nowhere.status_code == 404 and nowhere.headers["content-type"] == "application/problem+json"
        big = desk.post("/v1/cases", content=b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}",
                        headers={"content-type": "application/json"})
        assert big.status_code == 413
        for answer in (missing, nowhere, big):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"


def test_each_role_reads_only_the_fact_kinds_its_workflow_grants_it(api: Api) -> None:
    """The front desk reads payments and appointments, not screenings or vitals; billing not the consent."""
    case_id = _open(api).json()["case_id"]
    with api.client("front_desk") as desk, api.client("prescriber") as np, api.client("billing") as billing:
        assert desk.post(f"/v1/cases/{case_id}/facts/payment",
                         json={"amount": "250.00", "purpose": "evaluation_fee"}).status_code == 200
        screening = np.post(f"/v1/cases/{case_id}/facts/screening", json={"exclusions": [], "flags": []})
        assert screening.status_code == 200, screening.text
        assert {f["kind"] for f in desk.get(f"/v1/cases/{case_id}/facts").json()} == {"inquiry", "payment"}
        assert {f["kind"] for f in np.get(f"/v1/cases/{case_id}/facts").json()} >= {"screening", "payment"}
        assert desk.get(f"/v1/cases/{case_id}/facts", params={"kind": "screening"}).json() == []
        history = desk.get(f"/v1/cases/{case_id}/history").json()
        (withheld,) = [ev for ev in history if ev["kind"] == "fact" and "withheld" in ev["data"]]
        assert withheld["data"] == {"withheld": "screening"} and withheld["role"] == "prescriber"
        assert billing.get(f"/v1/cases/{case_id}").json()["client"]  # billing reads the intake (superbills)


def test_a_client_reaches_only_the_case_the_practice_bound_its_identity_to(any_ready_url: str) -> None:
    """Staff bind a client's subject to its case (audited, hashed); the client reads that case and no other."""
    engine = build_engine(any_ready_url, settings=Settings())
    client_key, client = engine.create_api_key("client-portal", "client", created_by="test-admin")
    desk_key, _ = engine.create_api_key("pms-desk", "front_desk", created_by="test-admin")
    billing_key, _ = engine.create_api_key("pms-billing", "billing", created_by="test-admin")
    mine, other = (engine.open_case(INQUIRY, actor=FRONT_DESK).case_id for _ in range(2))
    subject = client.name  # the key's service name is the actor a client key acts as

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with serving(create_app(engine, RequestAuthenticator(engine))) as url, httpx.Client(base_url=url) as http:
        assert http.get(f"/v1/cases/{mine}", headers=auth(client_key)).status_code == 403  # not bound yet
        assert http.post(f"/v1/cases/{mine}/client-bindings", json={"subject": subject},
                         headers=auth(billing_key)).status_code == 403  # billing is not staff of the case
        bound = http.post(f"/v1/cases/{mine}/client-bindings", json={"subject": subject}, headers=auth(desk_key))
        assert bound.status_code == 200 and bound.json() == {"bound": True}
        assert http.get(f"/v1/cases/{mine}", headers=auth(client_key)).status_code == 200
        facts = http.get(f"/v1/cases/{mine}/facts", headers=auth(client_key)).json()
        assert {f["kind"] for f in facts} == {"inquiry"}
        for refused in (f"/v1/cases/{other}", "/v1/cases", "/v1/cases/case-0000000000000000"):
            answer = http.get(refused, headers=auth(client_key))
            assert answer.status_code == 403 and INQUIRY["last_name"] not in answer.text, refused
        assert http.get("/v1/whoami", headers=auth(client_key)).json()["role"] == "client"
        removed = http.post(f"/v1/cases/{mine}/client-bindings/remove", json={"subject": subject},
                            headers=auth(desk_key))
        assert removed.json() == {"unbound": True}
        assert http.get(f"/v1/cases/{mine}", headers=auth(client_key)).status_code == 403
    kinds = [(ev.kind, ev.actor) for ev in engine.history(mine)[-2:]]
    assert kinds == [("client_bound", "pms-desk"), ("client_unbound", "pms-desk")]
    assert subject not in str([ev.data for ev in engine.history(mine)])  # only its hash is kept
    assert engine.verify_audit(mine).ok
    engine.close()

def test_every_read_of_a_case_is_in_the_access_log_with_the_service_and_the_person(api: Api) -> None:
    case_id = _open(api).json()["case_id"]
    behalf = {"Kapflow-On-Behalf-Of": "desk-user-17; role=front_desk"}
    with api.client("delegating", **behalf) as portal, api.client("prescriber") as np:
        assert portal.get(f"/v1/cases/{case_id}").status_code == 200
        assert np.get(f"/v1/cases/{case_id}/history").status_code == 200
        assert np.get("/v1/cases/case-0000000000000000").status_code == 404  # a failed read reads nothing
    seen = [(a.actor, a.role, a.via, a.view) for a in api.engine.accesses(case_id=case_id)]  # type: ignore[attr-defined]
    assert seen == [("desk-user-17", "front_desk", "pms-portal", "case"),
                    ("pms-prescriber", "prescriber", "pms-prescriber", "history")]


def test_case_pages_follow_a_cursor_and_filter_by_state_and_workflow(api: Api) -> None:
    ids = [_open(api, f"form-page-{n}").json()["case_id"] for n in range(5)]
    with api.client("front_desk") as desk:
        seen, cursor = [], None
        while True:
            page = desk.get("/v1/cases", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [c["id"] for c in page["cases"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids  # oldest first, each once, across pages
        assert desk.get("/v1/cases", params={"workflow": "psychotherapy"}).json()["cases"] == []
        assert len(desk.get("/v1/cases", params={"state": "inquiry", "workflow": "kap"}).json()["cases"]) == 5
        bad = desk.get("/v1/cases", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["field"] == "cursor"


def test_each_request_is_one_log_line_by_route_template_with_its_actor_and_no_phi(api: Api) -> None:
    stream = io.StringIO()
    with logging_configured(json=True, stream=stream):
        case_id = _open(api).json()["case_id"]
        with api.client("front_desk") as desk:
            desk.get(f"/v1/cases/{case_id}", params={"q": INQUIRY["last_name"]})
    lines = [jsonlib.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line["event"] == "request"]
    assert [(r["method"], r["route"], r["status"], r["actor"]) for r in requests] == [
        ("POST", "/v1/cases", 201, "pms-front_desk"), ("GET", "/v1/cases/{case_id}", 200, "pms-front_desk")]
    assert INQUIRY["last_name"] not in stream.getvalue() and INQUIRY["email"] not in stream.getvalue()


def test_cors_is_off_unless_origins_are_configured(any_ready_url: str) -> None:
    engine = build_engine(any_ready_url, settings=Settings())
    preflight = {"Origin": "https://pms.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    try:
        with serving(create_app(engine, RequestAuthenticator(engine))) as url:
            assert "access-control-allow-origin" not in httpx.options(f"{url}/v1/cases", headers=preflight).headers
        app = create_app(engine, RequestAuthenticator(engine), cors_origins=["https://pms.example"])
        with serving(app) as url:
            allowed = httpx.options(f"{url}/v1/cases", headers=preflight)
            assert allowed.headers["access-control-allow-origin"] == "https://pms.example"
            other = httpx.options(f"{url}/v1/cases", headers={**preflight, "Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
    finally:
        engine.close()


def test_an_auditor_asks_who_looked_at_a_case(api: Api) -> None:
    case_id = _open(api).json()["case_id"]
    auditor_key, _ = api.engine.create_api_key("audit-desk", "auditor", created_by="test-admin")  # type: ignore[attr-defined]
    with api.client("front_desk") as desk:
        desk.get(f"/v1/cases/{case_id}")
        assert desk.get(f"/v1/cases/{case_id}/accesses").status_code == 403  # the front desk may not
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {auditor_key}"}) as auditor:
        seen = auditor.get(f"/v1/cases/{case_id}/accesses", params={"since": "2020-01-01T00:00:00Z"}).json()
    assert [(a["actor"], a["view"]) for a in seen] == [("pms-front_desk", "case")]


def test_a_client_redeems_an_invitation_once_and_reaches_its_case(any_ready_url: str) -> None:
    """Staff make an invitation; the signed-in client redeems it (its own identity is bound); a second use,
    and a staff credential, cannot."""
    engine = build_engine(any_ready_url, settings=Settings())
    client_key, _ = engine.create_api_key("client-app", "client", created_by="test-admin")
    desk_key, _ = engine.create_api_key("pms-desk", "front_desk", created_by="test-admin")
    case_id = engine.open_case(INQUIRY, actor=FRONT_DESK).case_id

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with serving(create_app(engine, RequestAuthenticator(engine))) as url, httpx.Client(base_url=url) as http:
        made = http.post(f"/v1/cases/{case_id}/client-invitations", headers=auth(desk_key))
        assert made.status_code == 201 and made.json()["code"].startswith("kfi_")
        code = made.json()["code"]
        assert http.post(f"/v1/cases/{case_id}/client-invitations", headers=auth(client_key)).status_code == 403
        staff = http.post("/v1/client-invitations/accept", json={"code": code}, headers=auth(desk_key))
        assert staff.status_code == 403  # only the client role redeems (and the code is not used up by it)
        accepted = http.post("/v1/client-invitations/accept", json={"code": code}, headers=auth(client_key))
        assert accepted.status_code == 200 and accepted.json() == {"case_id": case_id}
        assert http.get(f"/v1/cases/{case_id}", headers=auth(client_key)).status_code == 200
        again = http.post("/v1/client-invitations/accept", json={"code": code}, headers=auth(client_key))
        assert again.status_code == 401 and again.json()["reason"] == "invitation_invalid" and code not in again.text
    kinds = [ev.kind for ev in engine.history(case_id)]
    assert kinds[-2:] == ["client_invited", "client_bound"] and engine.verify_audit().ok
    assert code not in str([ev.data for ev in engine.history(case_id)])
    engine.close()


def test_a_chunked_body_is_held_to_the_size_limit_too(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"intake": {"first_name": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024
        yield b'"}}'

    with api.client("front_desk") as desk:
        answer = desk.post("/v1/cases", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["code"] == "request_too_large"
    assert api.engine.count_cases() == 0  # type: ignore[attr-defined]


def test_cases_held_back_by_one_blocker_are_listed_a_bounded_scan_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Booked but unpaid evaluations are held back by the fee; paid ones and plain inquiries are not."""
    monkeypatch.setattr(queries, "SCAN_BUDGET", 3)  # so the scan's bound shows with a handful of cases
    engine: Any = api.engine
    unpaid = []
    for n in range(4):
        case_id = _open(api, f"form-blocked-{n}").json()["case_id"]
        starts = (EVALUATION_AT + timedelta(hours=n)).isoformat()
        engine.record(case_id, "appointment", {"kind": "evaluation", "starts_at": starts, "clinician": "np-rowan"},
                      actor=FRONT_DESK)
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        if n % 2:
            engine.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
        else:
            unpaid.append(case_id)
    _open(api, "form-plain")
    with api.client("front_desk") as desk:
        seen, cursor, pages = [], None, 0
        while True:
            params = {"blocker": "evaluation_fee_unpaid", "limit": 10, **({"cursor": cursor} if cursor else {})}
            page = desk.get("/v1/cases", params=params).json()
            seen += [c["id"] for c in page["cases"]]
            cursor, pages = page["next_cursor"], pages + 1
            if cursor is None:
                break
        assert seen == unpaid and pages >= 2  # five cases, three looked at per page
        assert desk.get("/v1/cases", params={"blocker": "no such thing!"}).status_code == 422


def test_stopping_the_server_finishes_the_request_in_flight(tmp_path: Path) -> None:
    """SIGTERM's path (uvicorn's should_exit) lets a request that is already running answer before it stops."""
    db = tmp_path / "kapflow.db"
    engine = build_engine(f"sqlite:///{db}", settings=Settings())
    key, _ = engine.create_api_key("pms-desk", "front_desk", created_by="test-admin")
    config = uvicorn.Config(create_app(engine, RequestAuthenticator(engine)), host="127.0.0.1", port=free_port(),
                            log_level="warning", lifespan="off", timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the open command waits for SQLite's write lock
    answers: list[httpx.Response] = []
    request = threading.Thread(target=lambda: answers.append(httpx.post(
        f"http://127.0.0.1:{config.port}/v1/cases", json={"intake": INQUIRY},
        headers={"Authorization": f"Bearer {key}"}, timeout=30)))
    request.start()
    deadline = time.monotonic() + 30
    while not server.server_state.tasks:  # until the request is in the server, waiting on the lock
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.01)
    server.should_exit = True  # what SIGTERM sets
    time.sleep(0.3)  # the server is shutting down now, with the request still running
    blocker.execute("ROLLBACK")
    blocker.close()
    request.join(timeout=30)
    thread.join(timeout=30)
    assert answers and answers[0].status_code == 201 and engine.count_cases() == 1
    engine.close()


def test_a_service_of_several_processes_closes_a_kept_alive_connection_now_and_then(any_ready_url: str) -> None:
    """Every ``requests_per_connection``-th answer on a connection says ``Connection: close`` and the connection
    ends; the client's next request opens another (which another process may accept). One process: never."""
    engine = build_engine(any_ready_url, settings=Settings())
    ports: list[int] = []
    app = create_app(engine, RequestAuthenticator(engine), requests_per_connection=3)

    async def noting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ports.append(scope["client"][1])
        await app(scope, receive, send)

    try:
        with serving(noting) as url, httpx.Client(base_url=url) as http:
            said = [http.get("/healthz").headers.get("connection") for _ in range(7)]
        assert said == [None, None, "close", None, None, "close", None]
        assert len(set(ports[:3])) == len(set(ports[3:6])) == 1 and len({ports[0], ports[3], ports[6]}) == 3
        ports.clear()
        with serving(create_app(engine, RequestAuthenticator(engine))) as url, httpx.Client(base_url=url) as http:
            assert all(http.get("/healthz").headers.get("connection") is None for _ in range(150))
    finally:
        engine.close()
    with pytest.raises(ValueError, match="at least one answer"):
        create_app(engine, RequestAuthenticator(engine), requests_per_connection=-1)


def test_kapflow_serve_spreads_connections_only_with_several_processes(any_ready_url: str) -> None:
    """``build_api`` (each ``kapflow serve`` process's app) closes connections now and then with ``processes`` > 1."""
    spreading = []
    for n in (1, 2):
        app = build_api(any_ready_url, Settings(), processes=n)
        spreading.append(any(m.cls is SpreadConnections for m in app.user_middleware))
        app.state.authenticator._engine.close()  # the engine build_api made for it
    assert spreading == [False, True]
