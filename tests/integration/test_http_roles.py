"""The role matrix over HTTP, generated from the KAP workflow: every role with an API key × every endpoint.

For every trigger (fired on a case in one of its source states) and every fact kind, a role the workflow
permits gets 200, or 409 ``transition_blocked`` when a guard says no; any other role gets 403
``not_permitted`` and the case keeps its state and version: the engine appends only the audited refusal.
The ``client`` role is refused outright (403) on every route, on its own case and on another's, and then
nothing at all is written. Each role reads only the fact kinds its workflow grants it (facts and history).
A delegating key cannot act in a role it was not granted. One server per database for the whole module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import serving
from support import INQUIRY, booking, dose_and_discharge, prepare_dosing, to_evaluating, to_ready

from kapflow.app.engine import Engine
from kapflow.audit.signing import Ed25519Signer, generate_key
from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.domain.case import Actor
from kapflow.domain.workflow import WORKER_ROLE
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY as WF

# Every role a key may have (all the workflow's roles but the worker's own), and the one refused outright.
KEY_ROLES = tuple(sorted(WF.roles - {WORKER_ROLE}))
assert WF.client_role is not None
CLIENT_ROLE: str = WF.client_role
STAFF_ROLES = tuple(r for r in KEY_ROLES if r != CLIENT_ROLE)
FIRST_SOURCE = {trigger: WF.transitions_named(trigger)[0].sources[0] for trigger in WF.triggers()}
ALLOWED_TO_FIRE = {trigger: frozenset().union(*(t.roles for t in WF.transitions_named(trigger)))
                   for trigger in WF.triggers()}
REQUIRES = {trigger: sorted({k for t in WF.transitions_named(trigger) for k in t.requires})
            for trigger in WF.triggers()}
DESK = Actor("fd-matrix", "front_desk")


@dataclass
class World:
    """The served API over one database, its fake clock, one API key per role, and cases made to order."""

    engine: Engine
    clock: FakeClock
    url: str
    keys: dict[str, str]

    def client(self, key: str, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[key]}", **headers},
                            timeout=30)

    def case_in(self, state: str, *, opener: Actor = DESK) -> str:
        """A new case driven (through the engine) to ``state``."""
        case_id = self.engine.open_case(INQUIRY, actor=opener).case_id
        _DRIVE[state](self, case_id)
        assert self.engine.case(case_id).state == state
        return case_id


def _book(w: World, case_id: str) -> None:
    w.engine.record(case_id, "appointment", booking(case_id, "evaluation", w.clock.now() + timedelta(days=3)),
                    actor=DESK)
    w.engine.fire(case_id, "book_evaluation", actor=DESK)


def _evaluated(w: World, case_id: str) -> None:
    to_evaluating(w.engine, w.clock, case_id)
    w.engine.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=Actor("np-m", "prescriber"))
    w.engine.fire(case_id, "find_suitable", actor=Actor("np-m", "prescriber"))


def _fire(*steps: tuple[str, str]) -> Callable[[World, str], None]:
    def drive(w: World, case_id: str) -> None:
        for trigger, role in steps:
            w.engine.fire(case_id, trigger, actor=Actor(f"m-{role}", role),
                          data={k: "synthetic: a reason" for k in REQUIRES[trigger]})
    return drive


def _then(*drives: Callable[[World, str], None]) -> Callable[[World, str], None]:
    def drive(w: World, case_id: str) -> None:
        for d in drives:
            d(w, case_id)
    return drive


def _ready(w: World, case_id: str) -> None:
    to_ready(w.engine, w.clock, case_id)


_DRIVE: dict[str, Callable[[World, str], None]] = {
    "inquiry": lambda w, c: None,
    "evaluation_booked": _book,
    "evaluating": lambda w, c: to_evaluating(w.engine, w.clock, c),
    "evaluated": _evaluated,
    "intention_setting": _then(_evaluated, _fire(("start_intention_setting", "therapist"))),
    "ready_for_kap": _ready,
    "dosing": _then(_ready, lambda w, c: prepare_dosing(w.engine, c), _fire(("start_kap_session", "therapist"))),
    "integration_psychotherapy": _then(_ready, lambda w, c: dose_and_discharge(w.engine, w.clock, c)),
    "safety_review": _then(_ready, _fire(("hold_for_safety_review", "prescriber"))),
    "integration_session": _then(_ready, _fire(("start_integration_session", "therapist"))),
    "reassessment": _then(_ready, _fire(("begin_reassessment", "prescriber"))),
    "on_hold": _fire(("hold", "front_desk")),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One engine and one server for the module, on a SQLite file of its own. Who may do what is decided
    before any statement runs, the same on every database; the refusal's audited row on PostgreSQL is
    covered where the write path is (test_engine_flow, test_concurrency, test_http_routes)."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('roles')) / 'kapflow.db'}"
    SqlStore(url).close()
    clock = FakeClock(datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1))
    engine = build_engine(url, clock=clock, settings=Settings())
    keys = {role: engine.create_api_key(f"pms-{role}", role, created_by="test-admin")[0] for role in KEY_ROLES}
    keys["delegating"] = engine.create_api_key("pms-portal", "front_desk", ("front_desk",),
                                               created_by="test-admin")[0]
    try:
        with serving(create_app(engine, RequestAuthenticator(engine))) as base:
            yield World(engine, clock, base, keys)
    finally:
        engine.close()


def _fact_data(w: World, case_id: str, kind: str) -> dict[str, Any]:
    """Data the spec of ``kind`` accepts (so a refusal is about the role or a guard, never the shape)."""
    now = w.clock.now()
    today = now.date().isoformat()
    data: dict[str, dict[str, Any]] = {
        "inquiry": dict(INQUIRY),
        "payment": {"amount": "100.00", "purpose": "other"},
        "prescription": {"prescriber": "NP Sample", "issued_on": today,
                         "expires_on": (now.date() + timedelta(days=180)).isoformat()},
        "consent": {"form_version": "2026-01", "signed_on": today},
        "consent_withdrawn": {"withdrawn_on": today},
        "screening": {"exclusions": [], "flags": []},
        "vitals": {"phase": "other", "systolic": 120, "diastolic": 80},
        "fasting": {"attested": True, "hours": 6},
        "escort": {"name": "Escort Sample", "phone": "+1 555 010 0199"},
        "clinician_present": {"clinician": "Jordan Sample, LCSW"},
        "discharge_check": {"stable": True, "no_driving_acknowledged": True},
        "questionnaire": {"instrument": "GAD-7", "items": [0] * 7},
        "treatment_plan": {"action": "set", "sessions": 3},
        "appointment": booking(case_id, "integration_session", now + timedelta(days=10)),
        "appointment_update": {"appointment": "a1", "action": "reschedule",
                               "starts_at": (now + timedelta(days=5)).isoformat()},
        "prescriber_checkin": {"prescriber": "NP Sample", "note": "synthetic check-in"},
        "adverse_event": {"type": "nausea_or_vomiting", "severity": "mild", "onset": now.isoformat(),
                          "action_taken": "synthetic: observed, comforted"},
        "safety_assessment": {"screen": "other", "screen_result": "no_current_risk",
                              "plan": "synthetic: safety plan reviewed"},
        "charge": {"visit": "a1", "service": "integration_session", "description": "Integration session",
                   "code": "90837", "units": 1, "fee": "165.00", "insurance": True, "date_of_service": today},
        "billing_adjustment": {"action": "void", "charge": "c1", "reason": "synthetic: posted in error"},
        "diagnosis": {"code": "F33.1", "diagnosed_on": today},
        "client_address": {"street": "45 Sample Street", "city": "Eugene", "state": "OR", "postal_code": "97401"},
        "superbill_issued": {"reference": "SB-00000000-1", "first": today, "last": today, "lines": "c1",
                             "diagnoses": "F33.1", "clinician": "np-1", "charged": "165.00", "paid": "0.00",
                             "balance": "165.00", "issued_on": today},
        "good_faith_estimate": {"reference": "GFE-00000000-1", "issued_on": today, "basis": "synthetic",
                                "lines": "integration_session:1:165.00", "total": "165.00"},
    }
    assert set(data) == set(WF.facts), "a fact kind was added to the workflow: give it data here"
    return data[kind]


def _snapshot(w: World, case_id: str) -> tuple[str, int, int]:
    found = w.engine.case(case_id)
    return found.state, found.version, found.event_count


def _assert_refused_and_only_audited(w: World, case_id: str, before: tuple[str, int, int],
                                     answer: httpx.Response, role: str) -> None:
    """403 ``not_permitted`` naming the role; the state and version unchanged; one audited refusal appended."""
    assert answer.status_code == 403, (role, answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "not_permitted" and answer.json()["role"] == role
    state, version, events = before
    assert _snapshot(w, case_id) == (state, version, events + 1)
    last = w.engine.history(case_id)[-1]
    assert (last.kind, last.role, [b["code"] for b in last.blockers]) == ("refused", role, ["not_permitted"])


def _assert_permitted(answer: httpx.Response, role: str) -> None:
    """A permitted role's command: done (200), or refused by a guard (409 ``transition_blocked``)."""
    assert answer.status_code in (200, 409), (role, answer.status_code, answer.text)
    if answer.status_code == 409:
        assert answer.json()["code"] == "transition_blocked", (role, answer.text)


# ----------------------------------------------------------------------------- commands


@pytest.mark.parametrize("trigger", WF.triggers())
def test_every_role_firing_every_trigger(world: World, trigger: str) -> None:
    source = FIRST_SOURCE[trigger]
    data = {"data": {k: "synthetic: a reason" for k in REQUIRES[trigger]}} if REQUIRES[trigger] else {}
    case_id = world.case_in(source)
    for role in STAFF_ROLES:
        if role in ALLOWED_TO_FIRE[trigger]:
            continue
        before = _snapshot(world, case_id)
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/triggers/{trigger}", json=data)
        _assert_refused_and_only_audited(world, case_id, before, answer, role)
        with world.client(role) as c:  # the check says so too, and writes nothing
            verdict = c.get(f"/v1/cases/{case_id}/triggers/{trigger}").json()
        assert not verdict["allowed"] and "not_permitted" in [b["code"] for b in verdict["blockers"]]
    for role in sorted(ALLOWED_TO_FIRE[trigger] & set(STAFF_ROLES)):
        if world.engine.case(case_id).state != source:
            case_id = world.case_in(source)
        with world.client(role) as c:
            verdict = c.get(f"/v1/cases/{case_id}/triggers/{trigger}").json()
            assert "not_permitted" not in [b["code"] for b in verdict["blockers"]], verdict
            answer = c.post(f"/v1/cases/{case_id}/triggers/{trigger}", json=data)
        _assert_permitted(answer, role)
        if not REQUIRES[trigger]:  # the check (a GET) cannot carry the data a trigger requires
            assert (answer.status_code == 200) == verdict["allowed"], (role, verdict, answer.text)


@pytest.mark.parametrize("kind", sorted(WF.facts))
def test_every_role_recording_every_fact_kind(world: World, kind: str) -> None:
    case_id = world.case_in("evaluating")
    allowed = WF.facts[kind].roles
    for role in (r for r in STAFF_ROLES if r not in allowed):
        before = _snapshot(world, case_id)
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/facts/{kind}", json=_fact_data(world, case_id, kind))
        _assert_refused_and_only_audited(world, case_id, before, answer, role)
    for role in sorted(allowed & set(STAFF_ROLES)):
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/facts/{kind}", json=_fact_data(world, case_id, kind))
        _assert_permitted(answer, role)


@pytest.mark.parametrize("role", KEY_ROLES)
def test_every_role_opening_a_case(world: World, role: str) -> None:
    opened = world.engine.count_cases()
    with world.client(role) as c:
        answer = c.post("/v1/cases", json={"intake": INQUIRY})
    if role in WF.facts[WF.intake_fact].roles and role != CLIENT_ROLE:
        assert answer.status_code == 201, answer.text
        assert world.engine.count_cases() == opened + 1
    else:
        assert answer.status_code == 403, (role, answer.text)
        assert answer.json()["code"] == "not_permitted"
        assert world.engine.count_cases() == opened


# ----------------------------------------------------------------------------- the client, refused outright


def _every_route(case_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/v1/cases", None), ("POST", "/v1/cases", {"intake": INQUIRY}),
        ("GET", f"/v1/cases/{case_id}", None), ("GET", f"/v1/cases/{case_id}/facts", None),
        ("GET", f"/v1/cases/{case_id}/history", None), ("GET", f"/v1/cases/{case_id}/triggers", None),
        ("GET", f"/v1/cases/{case_id}/triggers/withdraw", None),
        ("POST", f"/v1/cases/{case_id}/triggers/withdraw", {"data": {"reason": "synthetic: moving away"}}),
        ("POST", f"/v1/cases/{case_id}/facts/fasting", {"attested": True, "hours": 6}),
        *(("GET", f"/v1/cases/{case_id}/{view}", None)
          for view in ("appointments", "reminders", "messages", "audit", "export", "accesses")),
        ("POST", f"/v1/cases/{case_id}/appointments", {"kind": "evaluation", "starts_at": "2030-01-07T15:00:00Z"}),
        *(("POST", f"/v1/cases/{case_id}/appointments/a1/{action}", body)
          for action, body in (("reschedule", {"starts_at": "2030-01-08T15:00:00Z"}), ("cancel", {}),
                               ("no-show", {}))),
        ("POST", f"/v1/cases/{case_id}/client-invitations", None),
        ("POST", f"/v1/cases/{case_id}/client-bindings", {"subject": "idp-subject-x"}),
        ("POST", f"/v1/cases/{case_id}/client-bindings/remove", {"subject": "idp-subject-x"}),
    ]


@pytest.mark.parametrize("whose", ["own", "another's"])
def test_an_unbound_client_is_refused_on_every_case_route_and_nothing_is_written(world: World, whose: str) -> None:
    """The client's own case (opened under the client key's own identity, but never bound to it by the practice)
    or another's: 403, nothing written, not even a refusal, and no read in the access log (the credential is
    refused before any case is touched). Binding is tested in test_http_api.py."""
    opener = Actor("pms-client", CLIENT_ROLE) if whose == "own" else DESK
    case_id = world.case_in("inquiry", opener=opener)
    before, opened = _snapshot(world, case_id), world.engine.count_cases()
    with world.client(CLIENT_ROLE) as c:
        for method, path, body in _every_route(case_id):
            answer = c.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["role"] == CLIENT_ROLE and str(INQUIRY["last_name"]) not in answer.text
    assert _snapshot(world, case_id) == before and world.engine.count_cases() == opened
    assert world.engine.accesses(case_id=case_id) == []


# ----------------------------------------------------------------------------- reads


@pytest.fixture(scope="module")
def full_case(world: World) -> str:
    """A case past its first KAP session: most fact kinds recorded (a screening, vitals, a prescription...)."""
    return world.case_in("integration_psychotherapy")


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_role_reads_only_the_fact_kinds_it_is_granted(world: World, full_case: str, role: str) -> None:
    recorded = {f.kind for f in world.engine.facts(full_case)}
    readable = WF.readable(role)
    assert recorded - readable or role in ("auditor", "prescriber", "therapist")  # the case tells roles apart
    with world.client(role) as c:
        facts = c.get(f"/v1/cases/{full_case}/facts")
        assert facts.status_code == 200
        assert {f["kind"] for f in facts.json()} == recorded & readable
        for kind in sorted(recorded):
            one = c.get(f"/v1/cases/{full_case}/facts", params={"kind": kind}).json()
            assert bool(one) == (kind in readable), (role, kind)
        history = c.get(f"/v1/cases/{full_case}/history").json()
        for event in history:
            kind = event["data"].get("withheld")
            if kind is not None:
                assert kind not in readable and event["data"] == {"withheld": kind}
        withheld = {e["data"]["withheld"] for e in history if "withheld" in e["data"]}
        fact_events = {ev.data.get("kind") or _fact_kind(ev.data) for ev in world.engine.history(full_case)
                       if ev.kind == "fact"}
        assert withheld == {k for k in fact_events if k is not None} - readable
        for path in ("", "/triggers", "/triggers/discharge"):
            assert c.get(f"/v1/cases/{full_case}{path}").status_code == 200
        assert c.get("/v1/cases", params={"limit": 1}).status_code == 200
        case = c.get(f"/v1/cases/{full_case}").json()
        assert (case["client"] is None) == (WF.intake_fact not in readable)


def _fact_kind(data: Any) -> str | None:
    value = data.get("fact_kind") if hasattr(data, "get") else None
    return value if isinstance(value, str) else None


# ----------------------------------------------------------------------------- delegation


@pytest.mark.parametrize("role", [r for r in KEY_ROLES if r != "front_desk"])
def test_a_delegating_key_cannot_delegate_a_role_it_was_not_granted(world: World, role: str) -> None:
    """The portal key delegates ``front_desk`` only: acting for someone in any other role is 403 on every route,
    and nothing is written (not even a refusal: the credential is refused before the case is loaded)."""
    case_id = world.case_in("evaluation_booked")
    before, opened = _snapshot(world, case_id), world.engine.count_cases()
    with world.client("delegating", **{"Kapflow-On-Behalf-Of": f"user-17; role={role}"}) as portal:
        for method, path, body in _every_route(case_id):
            answer = portal.request(method, path, json=body)
            assert answer.status_code == 403, (role, method, path, answer.text)
        if role == "prescriber":  # the very trigger that role could fire
            assert portal.post(f"/v1/cases/{case_id}/triggers/start_evaluation").status_code == 403
    assert _snapshot(world, case_id) == before and world.engine.count_cases() == opened
    assert world.engine.accesses(case_id=case_id) == []
    with world.client("delegating", **{"Kapflow-On-Behalf-Of": "user-17; role=front_desk"}) as portal:
        mine = portal.get(f"/v1/cases/{case_id}")
    assert mine.status_code == 200


def test_a_refused_fact_of_a_kind_the_role_may_not_read_is_withheld(world: World) -> None:
    case_id = world.case_in("evaluating")
    with world.client("front_desk") as desk:
        assert desk.post(f"/v1/cases/{case_id}/facts/screening",
                         json=_fact_data(world, case_id, "screening")).status_code == 403
    with world.client("billing") as billing:
        history = billing.get(f"/v1/cases/{case_id}/history").json()
    refused = [e for e in history if e["kind"] == "refused"]
    assert refused and refused[-1]["data"] == {"withheld": "screening"} and refused[-1]["blockers"] == []


# ----------------------------------------------------------------------------- the other endpoints

assert WF.appointments is not None
APPOINTMENT_KINDS = (WF.appointments.booking, WF.appointments.update)
APPOINTMENT_WRITERS = WF.facts[WF.appointments.booking].roles & WF.facts[WF.appointments.update].roles
# Each read the routes gate by ``WF.readable``: the fact kinds its role must read, and its view in the access log.
GATED_READS: dict[str, tuple[tuple[str, ...], str]] = {
    "appointments": (APPOINTMENT_KINDS, "appointments"),
    "reminders": (APPOINTMENT_KINDS, "reminders"),
    "messages": ((WF.intake_fact,), "messages"),
    "audit": (tuple(WF.facts), "audit"),
    "export": (tuple(WF.facts), "export"),
    "accesses": (tuple(WF.facts), "accesses"),
}


def _views_read(w: World, case_id: str, role: str, view: str) -> int:
    return sum(1 for a in w.engine.accesses(case_id=case_id, limit=10_000) if (a.role, a.view) == (role, view))


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_role_reading_every_gated_view(world: World, full_case: str, role: str) -> None:
    """Appointments and reminders for the roles that read the appointment fact kinds, messages for those that
    read the intake, audit, export and accesses for those that read every kind: 200, recorded in the access
    log; any other role 403 ``not_permitted``, nothing written and no access recorded."""
    world.engine.checkpoint(Ed25519Signer.from_text(generate_key("practice-example")[0]),
                            origin="practice.example/kapflow-audit", force=True)  # so that export has a proof
    assert world.engine.appointments(full_case)  # the views are not empty for the roles that may read them
    for route, (kinds, view) in GATED_READS.items():
        before, seen = _snapshot(world, full_case), _views_read(world, full_case, role, view)
        with world.client(role) as c:
            answer = c.get(f"/v1/cases/{full_case}/{route}")
        if set(kinds) <= WF.readable(role):
            assert answer.status_code == 200, (role, route, answer.text)
            assert _views_read(world, full_case, role, view) == seen + 1, (role, route)
        else:
            assert answer.status_code == 403, (role, route, answer.text)
            assert answer.json()["code"] == "not_permitted" and answer.json()["role"] == role
            assert str(INQUIRY["last_name"]) not in answer.text
            assert _views_read(world, full_case, role, view) == seen, (role, route)
        assert _snapshot(world, full_case) == before, (role, route)


def _appointment_write(w: World, case_id: str, action: str) -> tuple[str, dict[str, Any]]:
    """The route and body of ``action`` on the case's first appointment (a1), or of a new booking."""
    if action == "book":
        return "appointments", booking(case_id, "integration_session", w.clock.now() + timedelta(days=10))
    body: dict[str, dict[str, Any]] = {
        "reschedule": {"starts_at": (w.clock.now() + timedelta(days=5)).isoformat(), "reason": "synthetic: moved"},
        "cancel": {"reason": "synthetic: cannot come"}, "no-show": {},
    }
    return f"appointments/a1/{action}", body[action]


@pytest.mark.parametrize("action", ["book", "reschedule", "cancel", "no-show"])
def test_every_role_writing_every_appointment_command(world: World, action: str) -> None:
    """The roles that may record both appointment fact kinds: 2xx, or 409 ``transition_blocked``; any other
    403 ``not_permitted`` with only the audited refusal written (the appointments unchanged)."""
    case_id = world.case_in("evaluation_booked")
    route, body = _appointment_write(world, case_id, action)
    for role in (r for r in STAFF_ROLES if r not in APPOINTMENT_WRITERS):
        before, booked = _snapshot(world, case_id), world.engine.appointments(case_id)
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/{route}", json=body)
        _assert_refused_and_only_audited(world, case_id, before, answer, role)
        assert world.engine.appointments(case_id) == booked
    for role in sorted(APPOINTMENT_WRITERS & set(STAFF_ROLES)):
        case_id = world.case_in("evaluation_booked")  # a fresh one each: a1 booked, not yet moved or cancelled
        route, body = _appointment_write(world, case_id, action)
        version = world.engine.case(case_id).version
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/{route}", json=body)
        assert answer.status_code in (200, 201, 409), (role, action, answer.status_code, answer.text)
        if answer.status_code == 409:
            assert answer.json()["code"] == "transition_blocked", (role, action, answer.text)
        else:
            assert world.engine.case(case_id).version > version, (role, action)


CLIENT_ROUTES = ["client-invitations", "client-bindings", "client-bindings/remove"]


@pytest.mark.parametrize("route", CLIENT_ROUTES)
def test_only_staff_invite_bind_and_unbind_a_client(world: World, route: str) -> None:
    """The workflow's staff roles: 2xx, one event; any other role: 403 ``not_permitted`` and no event at all."""
    case_id = world.case_in("inquiry")
    subject = f"idp-subject-{route.replace('/', '-')}"
    if route == "client-bindings/remove":
        assert world.engine.bind_client(case_id, subject, actor=DESK)
    body = {} if route == "client-invitations" else {"subject": subject}
    for role in (r for r in STAFF_ROLES if r not in WF.staff_roles):
        before = _snapshot(world, case_id)
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/{route}", json=body)
        assert answer.status_code == 403, (role, route, answer.text)
        assert answer.json()["code"] == "not_permitted" and answer.json()["role"] == role
        assert _snapshot(world, case_id) == before, (role, route)
        assert world.engine.client_bound(case_id, subject) == (route == "client-bindings/remove")
    for role in sorted(WF.staff_roles & set(STAFF_ROLES)):
        if route == "client-bindings/remove":
            world.engine.bind_client(case_id, subject, actor=DESK)
        else:
            world.engine.unbind_client(case_id, subject, actor=DESK)
        events = _snapshot(world, case_id)[2]
        with world.client(role) as c:
            answer = c.post(f"/v1/cases/{case_id}/{route}", json=body)
        assert answer.status_code == (201 if route == "client-invitations" else 200), (role, route, answer.text)
        if route == "client-invitations":
            assert answer.json()["code"].startswith("kfi_")
        else:
            assert answer.json() == {"unbound" if route.endswith("remove") else "bound": True}
            assert world.engine.client_bound(case_id, subject) == (route == "client-bindings")
        assert _snapshot(world, case_id)[2] == events + 1, (role, route)


@pytest.mark.parametrize("role", KEY_ROLES)
def test_every_role_reads_the_workflows_and_their_diagrams(world: World, role: str) -> None:
    """The workflow's definition is the practice's: every authenticated role (the client too) reads it."""
    with world.client(role) as c:
        listed = c.get("/v1/workflows")
        assert listed.status_code == 200, (role, listed.text)
        assert (WF.name, WF.version) in {(wf["name"], wf["version"]) for wf in listed.json()}
        mermaid = c.get(f"/v1/workflows/{WF.name}/{WF.version}/diagram.mmd")
        assert mermaid.status_code == 200 and "stateDiagram-v2" in mermaid.text, (role, mermaid.text)
        drawn = c.get(f"/v1/workflows/{WF.name}/{WF.version}/diagram.svg")
        assert drawn.status_code == 200 and drawn.text.startswith("<svg "), (role, drawn.status_code, drawn.text)
