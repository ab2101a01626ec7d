"""The API's appointments, reminders, messages, audit and workflow routes on a real uvicorn, on SQLite and PostgreSQL.

Each route answers its role and refuses the others (403), an unknown case is 404, a taken clinician 409,
bad data 422; every read of a case is in the access log; the front desk never gets a kind it may not read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from xml.sax.saxutils import quoteattr

import httpx
import pytest
from http_server import serving
from support import FRONT_DESK, INQUIRY, PRESCRIBER, booking, open_case, to_evaluating

from kapflow.app.engine import Engine
from kapflow.audit.signing import Ed25519Signer, generate_key
from kapflow.domain.events import TimerStatus
from kapflow.domain.workflow import Workflow
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.testing import FakeClock, ReminderKit
from kapflow.workflows.kap import KAP_PATHWAY

ROLES = ("front_desk", "billing", "prescriber", "auditor")
SCREENING = {"exclusions": [], "flags": ["liver_disease"]}  # a clinical flag the front desk may not read
MARKER = "liver_disease"


@dataclass
class Api:
    url: str
    keys: dict[str, str]
    kit: ReminderKit

    @property
    def engine(self) -> Engine:
        return self.kit.engine

    @property
    def clock(self) -> FakeClock:
        return self.kit.clock

    def client(self, role: str, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[role]}", **headers},
                            timeout=30)

    def views(self, case_id: str) -> list[tuple[str, str]]:
        return [(r.role, r.view) for r in self.engine.accesses(case_id=case_id)]


@contextmanager
def _serving(url: str, workflow: Workflow = KAP_PATHWAY) -> Iterator[Api]:
    kit = ReminderKit(url=url, workflows=workflow)
    keys = {role: kit.engine.create_api_key(f"pms-{role}", role, created_by="test-admin")[0] for role in ROLES}
    try:
        with serving(create_app(kit.engine, RequestAuthenticator(kit.engine))) as base:
            yield Api(base, keys, kit)
    finally:
        kit.close()


@pytest.fixture
def api(any_ready_url: str) -> Iterator[Api]:
    with _serving(any_ready_url) as served:
        yield served


@pytest.fixture
def narrow_api(any_ready_url: str) -> Iterator[Api]:
    """The KAP pathway with billing reading payments only: a role that reads no appointment or intake."""
    narrowed = replace(KAP_PATHWAY, version="1-narrow",
                       read_access={**KAP_PATHWAY.read_access, "billing": frozenset({"payment"})})
    with _serving(any_ready_url, narrowed) as served:
        yield served


def _book(api: Api, case_id: str, days: int = 3, **extra: object) -> httpx.Response:
    body = booking(case_id, "evaluation", api.clock.now() + timedelta(days=days), **extra)
    with api.client("front_desk") as desk:
        return desk.post(f"/v1/cases/{case_id}/appointments", json=body)


def test_book_list_reschedule_cancel_and_no_show(api: Api) -> None:
    """The front desk books, moves, cancels and marks a no-show; each answer is the outcome with the new ETag."""
    case_id = open_case(api.engine)
    booked = _book(api, case_id)
    assert booked.status_code == 201, booked.text
    assert booked.json()["appointment"] == "a1" and booked.headers["etag"] == f'"{booked.json()["version"]}"'
    later = (api.clock.now() + timedelta(days=4)).isoformat()
    with api.client("front_desk") as desk:
        moved = desk.post(f"/v1/cases/{case_id}/appointments/a1/reschedule",
                          json={"starts_at": later, "reason": "client asked"},
                          headers={"If-Match": booked.headers["etag"]})
        assert moved.status_code == 200, moved.text
        listed = desk.get(f"/v1/cases/{case_id}/appointments")
        assert listed.status_code == 200
        [appt] = listed.json()
        assert appt["id"] == "a1" and appt["status"] == "booked" and appt["kind"] == "evaluation"
        assert appt["starts_at"].startswith(later[:16].replace("+00:00", ""))
        assert desk.post(f"/v1/cases/{case_id}/appointments/a1/cancel", json={"reason": "ill"}).status_code == 200
        assert _book(api, case_id, days=5).json()["appointment"] == "a2"
        assert desk.post(f"/v1/cases/{case_id}/appointments/a2/no-show").status_code == 200
        statuses = [a["status"] for a in desk.get(f"/v1/cases/{case_id}/appointments").json()]
    assert statuses == ["cancelled", "no_show"]
    assert api.views(case_id).count(("front_desk", "appointments")) == 2


def test_a_taken_clinician_is_a_409_problem_and_bad_data_422(api: Api) -> None:
    first, second = open_case(api.engine), open_case(api.engine)
    assert _book(api, first, clinician="np-shared").status_code == 201
    taken = _book(api, second, clinician="np-shared")
    assert taken.status_code == 409 and taken.headers["content-type"] == "application/problem+json"
    assert taken.json()["code"] == "transition_blocked"
    assert [b["code"] for b in taken.json()["blockers"]] == ["clinician_unavailable"]
    with api.client("front_desk") as desk:
        no_zone = desk.post(f"/v1/cases/{second}/appointments",
                            json={"kind": "evaluation", "starts_at": "next tuesday", "clinician": "np-x"})
        assert no_zone.status_code == 422 and "next tuesday" not in no_zone.text
        unknown_kind = desk.post(f"/v1/cases/{second}/appointments",
                                 json={"kind": "séance", "starts_at": (api.clock.now() + timedelta(days=3)).isoformat(),
                                       "clinician": "np-x"})
        assert unknown_kind.status_code == 422
        missing = desk.post(f"/v1/cases/{second}/appointments", json={"starts_at": "2030-01-07T10:00:00+00:00"})
        assert missing.status_code == 422 and missing.json()["code"] == "invalid_input"
        stale = desk.post(f"/v1/cases/{first}/appointments/a1/cancel", json={}, headers={"If-Match": '"1"'})
        assert stale.status_code == 409 and stale.json()["code"] == "concurrency_conflict"
        assert desk.get("/v1/cases/no-such-case/appointments").status_code == 404
        assert desk.post("/v1/cases/no-such-case/appointments/a1/no-show").status_code == 404
    assert len(api.engine.appointments(second)) == 0


def test_the_same_idempotency_key_books_once(api: Api) -> None:
    case_id = open_case(api.engine)
    body = booking(case_id, "evaluation", api.clock.now() + timedelta(days=3))
    with api.client("front_desk", **{"Idempotency-Key": "book-1"}) as desk:
        first = desk.post(f"/v1/cases/{case_id}/appointments", json=body)
        again = desk.post(f"/v1/cases/{case_id}/appointments", json=body)
    assert first.status_code == again.status_code == 201 and again.json()["replayed"]
    assert len(api.engine.appointments(case_id)) == 1


def test_roles_that_may_not_are_refused_with_403(api: Api) -> None:
    """Billing may not book; the front desk and billing may not verify or export the audit history."""
    case_id = open_case(api.engine)
    _book(api, case_id)
    with api.client("billing") as billing, api.client("front_desk") as desk:
        assert billing.get(f"/v1/cases/{case_id}/appointments").status_code == 200
        assert billing.post(f"/v1/cases/{case_id}/appointments",
                            json=booking(case_id, "evaluation", api.clock.now() + timedelta(days=6))
                            ).status_code == 403
        for client in (billing, desk):
            for path in ("audit", "export"):
                refused = client.get(f"/v1/cases/{case_id}/{path}")
                assert refused.status_code == 403 and refused.json()["code"] == "not_permitted", path
                assert "auditor" in refused.json()["allowed"] and "front_desk" not in refused.json()["allowed"]
    assert ("front_desk", "audit") not in api.views(case_id)  # a refused read is not a read


def test_a_role_reading_no_appointments_sees_no_reminders_or_messages(narrow_api: Api) -> None:
    """A role whose workflow grants it neither the appointment kinds nor the intake gets 403 on all three."""
    case_id = open_case(narrow_api.engine)
    assert _book(narrow_api, case_id).status_code == 201
    with narrow_api.client("billing") as billing:
        for path in ("appointments", "reminders", "messages"):
            refused = billing.get(f"/v1/cases/{case_id}/{path}")
            assert refused.status_code == 403 and refused.json()["code"] == "not_permitted", path
            assert "front_desk" in refused.json()["allowed"] and "billing" not in refused.json()["allowed"]
    assert [view for role, view in narrow_api.views(case_id) if role == "billing"] == []


def test_reminders_and_messages_never_show_an_address_or_body(api: Api) -> None:
    case_id = open_case(api.engine)
    _book(api, case_id)
    api.kit.advance(days=2, hours=20)  # the evaluation's reminders go out
    with api.client("front_desk") as desk:
        reminders = desk.get(f"/v1/cases/{case_id}/reminders")
        messages = desk.get(f"/v1/cases/{case_id}/messages")
        assert desk.get("/v1/cases/no-such-case/messages").status_code == 404
    assert reminders.status_code == messages.status_code == 200
    rows = reminders.json()
    statuses = {r["reminder"]: r["status"] for r in rows}
    assert statuses and set(statuses.values()) <= {s.value for s in TimerStatus} | {"pending", "claimed"}
    assert "done" in statuses.values() and all("lease_until" not in r and "outcome" in r for r in rows)
    sent = messages.json()
    assert sent and {"email", "calendar"} & {m["channel"] for m in sent}
    assert all(set(m) >= {"channel", "audience", "status", "attempts", "created_at", "subject"} for m in sent)
    assert all({"recipient", "body", "payload"}.isdisjoint(m) for m in sent)
    assert INQUIRY["email"] not in messages.text and INQUIRY["phone"] not in messages.text
    assert {"reminders", "messages"} <= {view for _, view in api.views(case_id)}


def test_audit_verification_and_exports_for_the_roles_reading_everything(api: Api) -> None:
    case_id = open_case(api.engine)
    to_evaluating(api.engine, api.clock, case_id)
    api.engine.record(case_id, "screening", SCREENING, actor=PRESCRIBER)
    with api.client("auditor") as auditor:
        assert auditor.get(f"/v1/cases/{case_id}/export").status_code == 422  # no checkpoint signed yet
        api.engine.checkpoint(Ed25519Signer.from_text(generate_key("test-practice")[0]),
                              origin="example.org/kapflow-test")
        report = auditor.get(f"/v1/cases/{case_id}/audit")
        assert report.status_code == 200 and report.json()["ok"] is True and report.json()["events"] >= 5
        jsonl = auditor.get(f"/v1/cases/{case_id}/export")
        assert jsonl.headers["content-type"] == "application/x-ndjson"
        assert case_id in jsonl.headers["content-disposition"]
        lines = [json.loads(line) for line in jsonl.text.splitlines()]
        assert lines[0]["case_id"] == case_id and MARKER in jsonl.text
        table = auditor.get(f"/v1/cases/{case_id}/export", params={"format": "csv"})
        assert table.headers["content-type"].startswith("text/csv")
        assert len(list(csv.reader(io.StringIO(table.text)))) > 3
        fhir = auditor.get(f"/v1/cases/{case_id}/export", params={"format": "fhir"})
        assert fhir.headers["content-type"] == "application/fhir+json" and fhir.json()["resourceType"] == "Bundle"
        assert auditor.get(f"/v1/cases/{case_id}/export", params={"format": "xml"}).status_code == 422
        assert auditor.get("/v1/cases/no-such-case/audit").status_code == 404
    with api.client("prescriber") as np:
        assert np.get(f"/v1/cases/{case_id}/audit").status_code == 200
    views = api.views(case_id)
    assert ("auditor", "audit") in views and views.count(("auditor", "export")) == 3


def test_the_front_desk_never_receives_a_kind_it_may_not_read(api: Api) -> None:
    """Screening data recorded on the case reaches no route the front desk may call."""
    case_id = open_case(api.engine)
    to_evaluating(api.engine, api.clock, case_id)
    api.engine.record(case_id, "screening", SCREENING, actor=PRESCRIBER)
    with api.client("front_desk") as desk:
        answers = [desk.get(f"/v1/cases/{case_id}/{path}")
                   for path in ("appointments", "reminders", "messages", "history", "facts")]
        assert all(a.status_code == 200 for a in answers)
        assert all(MARKER not in a.text for a in answers)
        assert desk.get(f"/v1/cases/{case_id}/export").status_code == 403


def test_workflows_and_their_diagrams(api: Api) -> None:
    with api.client("front_desk") as desk:
        listed = desk.get("/v1/workflows")
        assert listed.status_code == 200
        [kap] = [wf for wf in listed.json() if wf["current"]]
        assert kap["initial"] in kap["states"] and "appointment" in kap["fact_kinds"] and kap["triggers"]
        mmd = desk.get(f"/v1/workflows/{kap['name']}/{kap['version']}/diagram.mmd")
        assert mmd.status_code == 200 and mmd.headers["content-type"].startswith("text/plain")
        assert "stateDiagram-v2" in mmd.text and f"[*] --> {kap['initial']}" in mmd.text
        svg = desk.get(f"/v1/workflows/{kap['name']}/{kap['version']}/diagram.svg")  # pure Python: no Graphviz
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.startswith("<svg ") and 'role="img"' in svg.text and "style" not in svg.text
        assert all(f"data-state={quoteattr(s)}" in svg.text for s in kap["states"])
        unknown = desk.get(f"/v1/workflows/{kap['name']}/no-such-version/diagram.mmd")
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    with httpx.Client(base_url=api.url) as anonymous:
        assert anonymous.get("/v1/workflows").status_code == 401


def test_a_front_desk_key_books_over_http_for_a_case_opened_over_http(api: Api) -> None:
    """The actor recorded on the booking is the key's service, never a name from the body."""
    with api.client("front_desk") as desk:
        case_id = desk.post("/v1/cases", json={"intake": INQUIRY}).json()["case_id"]
    body = {**booking(case_id, "evaluation", api.clock.now() + timedelta(days=3)), "actor": "someone-else"}
    with api.client("front_desk") as desk:
        answer = desk.post(f"/v1/cases/{case_id}/appointments", json=body)
    assert answer.status_code == 201
    last = api.engine.history(case_id)[-1]
    assert last.role == FRONT_DESK.role and last.actor != "someone-else"
