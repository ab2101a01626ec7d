"""Bad input gets its typed error and writes nothing; hostile free text is stored verbatim and stays inert."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    AUDITOR,
    CLIENT,
    FRONT_DESK,
    INQUIRY,
    PRESCRIBER,
    THERAPIST,
    dump_database,
    open_case,
    query,
    to_ready,
    who,
)

from kapflow.app.engine import Engine
from kapflow.domain.case import Actor
from kapflow.errors import (
    ConcurrencyConflict,
    InvalidFact,
    InvalidInput,
    KapflowError,
    NotPermitted,
    StorageError,
    UnknownCase,
    UnknownFactKind,
    UnknownTrigger,
)
from kapflow.testing import FakeClock
from kapflow.workflows.measures import answered

SQL_INJECTION = "'); DROP TABLE cases;--"
HTML = "<script>alert(1)</script>"
KIB64 = 64 * 1024


def dump(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (and the schema itself), read outside kapflow."""
    return dump_database(db_url)


@dataclass
class Ready:
    engine: Engine
    db_url: str
    case_id: str


def _ready(engine: Engine, clock: FakeClock, url: str) -> Ready:
    case_id = open_case(engine)
    to_ready(engine, clock, case_id)
    engine.record(case_id, "questionnaire", answered("PHQ-9", 12), actor=CLIENT,
                  idempotency_key="q-0001")
    return Ready(engine, url, case_id)


@pytest.fixture
def ready(engine: Engine, clock: FakeClock, any_db_url: str) -> Ready:
    """A case in ready_for_kap (one idempotent command on record), on a SQLite file and on PostgreSQL."""
    return _ready(engine, clock, any_db_url)


@pytest.fixture
def ready_sqlite(sqlite_engine: Engine, clock: FakeClock, db_url: str) -> Ready:
    """The same case on a SQLite file only: bad input is refused before any statement, whatever the database
    (the tests below that do reach it, a refusal audited and hostile text stored, run on both)."""
    return _ready(sqlite_engine, clock, db_url)


def fire(data: Any = None, *, trigger: str = "hold", **kw: Any) -> Callable[[Engine, str], object]:
    kw.setdefault("actor", FRONT_DESK)
    return lambda e, c: e.fire(c, trigger, data=data, **kw)


WHO = {"clinician": "np-rowan", "room": "room-1"}  # who and where a booking is (each names them)


def record(kind: str, data: Any, **kw: Any) -> Callable[[Engine, str], object]:
    kw.setdefault("actor", PRESCRIBER)
    return lambda e, c: e.record(c, kind, data, **kw)


def bad_open(intake: Any, **kw: Any) -> Callable[[Engine, str], object]:
    kw.setdefault("actor", FRONT_DESK)
    return lambda e, _c: e.open_case(intake, **kw)


VITALS = {"phase": "pre_dose", "systolic": 120, "diastolic": 80}

BAD: list[tuple[str, Callable[[Engine, str], object], type[KapflowError]]] = [
    # unknown things
    ("unknown-case-fire", lambda e, _c: e.fire("case-0000000000000000", "hold", actor=FRONT_DESK,
                                               data={"reason": "x"}), UnknownCase),
    ("unknown-case-record", lambda e, _c: e.record("case-nope", "fasting", {"attested": True}, actor=CLIENT),
     UnknownCase),
    ("unknown-case-check", lambda e, _c: e.check("case-nope", "hold"), UnknownCase),
    ("unknown-case-history", lambda e, _c: e.history("case-nope"), UnknownCase),
    ("unknown-case-verify", lambda e, _c: e.verify_audit("case-nope"), UnknownCase),
    ("unknown-trigger", fire({"reason": "x"}, trigger="teleport"), UnknownTrigger),
    ("unknown-trigger-check", lambda e, c: e.check(c, "teleport"), UnknownTrigger),
    ("unknown-trigger-sql", fire(trigger=SQL_INJECTION), UnknownTrigger),
    ("unknown-fact-kind", record("horoscope", {"sign": "leo"}), UnknownFactKind),
    ("unknown-fact-kind-sql", record(SQL_INJECTION, {}), UnknownFactKind),
    # malformed facts
    ("fact-missing-field", record("vitals", {"phase": "pre_dose", "systolic": 120}), InvalidFact),
    ("fact-wrong-type", record("vitals", {**VITALS, "systolic": "high"}), InvalidFact),
    ("fact-bool-as-int", record("vitals", {**VITALS, "systolic": True}), InvalidFact),
    ("fact-out-of-range", record("vitals", {**VITALS, "systolic": 400}), InvalidFact),
    ("fact-cross-check", record("vitals", {**VITALS, "diastolic": 130}), InvalidFact),
    ("fact-extra-field", record("vitals", {**VITALS, "mood": "ok"}), InvalidFact),
    ("fact-bad-choice", record("vitals", {**VITALS, "phase": "during"}), InvalidFact),
    ("fact-negative-money", record("payment", {"amount": "-250", "purpose": "evaluation_fee"},
                                   actor=FRONT_DESK), InvalidFact),
    ("fact-money-3-decimals", record("payment", {"amount": "250.001", "purpose": "evaluation_fee"},
                                     actor=FRONT_DESK), InvalidFact),
    ("fact-money-nan", record("payment", {"amount": "NaN", "purpose": "evaluation_fee"}, actor=FRONT_DESK),
     InvalidFact),
    ("fact-rx-expires-before-issue", record("prescription", {"prescriber": "NP", "issued_on": "2026-03-01",
                                                             "expires_on": "2026-02-01"}), InvalidFact),
    ("fact-bad-date", record("prescription", {"prescriber": "NP", "issued_on": "2026-02-30",
                                              "expires_on": "2026-04-01"}), InvalidFact),
    ("fact-naive-moment", record("appointment", {**WHO, "kind": "evaluation", "starts_at": "2026-02-01T10:00:00"},
                                 actor=FRONT_DESK), InvalidFact),
    ("fact-minutes-for-kind", record("appointment", {**WHO, "kind": "kap_session", "minutes": 30,
                                                     "starts_at": "2026-02-01T10:00:00+00:00"},
                                     actor=FRONT_DESK), InvalidFact),
    ("fact-item-over-max", record("questionnaire", {"instrument": "GAD-7", "items": [3, 3, 3, 4, 3, 3, 3]},
                                  actor=CLIENT),
     InvalidFact),
    ("fact-plan-without-sessions", record("treatment_plan", {"action": "set"}), InvalidFact),
    ("fact-blank-text", record("escort", {"name": "   ", "phone": "+1 555 010 0100"}, actor=CLIENT),
     InvalidFact),
    ("fact-bad-phone", record("escort", {"name": "E", "phone": "call me"}, actor=CLIENT), InvalidFact),
    ("fact-not-a-mapping", record("fasting", ["attested"], actor=CLIENT), InvalidInput),
    ("intake-no-contact", bad_open({k: v for k, v in INQUIRY.items() if k not in ("email", "phone")}),
     InvalidFact),
    ("intake-born-in-future", bad_open({**INQUIRY, "date_of_birth": "2031-01-01"}), InvalidFact),
    ("intake-bad-email", bad_open({**INQUIRY, "email": "not-an-email"}), InvalidFact),
    ("intake-unknown-concern", bad_open({**INQUIRY, "concerns": ["boredom"]}), InvalidFact),
    # text policy
    ("text-over-64kib", fire({"reason": "x" * (KIB64 + 1)}), InvalidInput),
    ("text-over-64kib-multibyte", fire({"reason": "é" * (KIB64 // 2 + 1)}), InvalidInput),
    ("text-over-64kib-in-fact", record("screening", {"exclusions": [], "flags": [], "note": "n" * (KIB64 + 1)}),
     InvalidInput),
    ("text-over-64kib-intake", bad_open({**INQUIRY, "message": "m" * (KIB64 + 1)}), InvalidInput),
    ("payload-over-256kib", fire({"reason": "x", **{f"n{i}": "y" * 60_000 for i in range(5)}}), InvalidInput),
    ("nul-in-data", fire({"reason": "before\x00after"}), InvalidInput),
    ("nul-in-fact", record("screening", {"exclusions": [], "flags": [], "note": "a\x00b"}), InvalidInput),
    ("nul-in-key", fire({"reason": "x", "k\x00": "v"}), InvalidInput),
    ("escape-in-data", fire({"reason": "\x1b[31mred"}), InvalidInput),
    ("bell-in-intake", bad_open({**INQUIRY, "message": "ring\x07"}), InvalidInput),
    ("del-in-nested", fire({"reason": "x", "notes": ["ok", {"deep": "bad\x7f"}]}), InvalidInput),
    # non-JSON types
    ("datetime-in-data", fire({"reason": "x", "when": datetime(2026, 1, 1, tzinfo=UTC)}), InvalidInput),
    ("date-in-data", fire({"reason": "x", "when": date(2026, 1, 1)}), InvalidInput),
    ("decimal-in-data", fire({"reason": "x", "amount": Decimal("1.5")}), InvalidInput),
    ("set-in-data", fire({"reason": "x", "tags": {"a", "b"}}), InvalidInput),
    ("bytes-in-data", fire({"reason": b"bytes"}), InvalidInput),
    ("object-in-data", fire({"reason": object()}), InvalidInput),
    ("nan-in-data", fire({"reason": "x", "n": float("nan")}), InvalidInput),
    ("inf-in-data", fire({"reason": "x", "n": float("inf")}), InvalidInput),
    ("int-key-in-data", fire({"reason": "x", 1: "one"}), InvalidInput),
    ("too-deep", fire({"reason": "x", "d": [[[[[[[[[["deep"]]]]]]]]]]}), InvalidInput),
    ("data-not-a-mapping", fire(["reason", "x"]), InvalidInput),
    ("fact-datetime-object", record("appointment", {**WHO, "kind": "evaluation",
                                                    "starts_at": datetime(2026, 2, 1, tzinfo=UTC)},
                                    actor=FRONT_DESK), InvalidInput),
    # actors
    ("actor-empty-id", fire({"reason": "x"}, actor=Actor("", "front_desk")), InvalidInput),
    ("actor-space-in-id", fire({"reason": "x"}, actor=Actor("fd avery", "front_desk")), InvalidInput),
    ("actor-sql-id", fire({"reason": "x"}, actor=Actor(SQL_INJECTION, "front_desk")), InvalidInput),
    ("actor-long-id", fire({"reason": "x"}, actor=Actor("a" * 201, "front_desk")), InvalidInput),
    ("actor-leading-dash", fire({"reason": "x"}, actor=Actor("-fd", "front_desk")), InvalidInput),
    ("actor-none-id", fire({"reason": "x"}, actor=Actor(None, "front_desk")), InvalidInput),  # type: ignore[arg-type]
    ("actor-unknown-role", fire({"reason": "x"}, actor=Actor("fd-avery", "janitor")), InvalidInput),
    ("actor-unknown-role-record", record("fasting", {"attested": True}, actor=Actor("c1", "CLIENT")),
     InvalidInput),
    ("actor-unknown-role-open", bad_open(INQUIRY, actor=Actor("fd-avery", "admin")), InvalidInput),
    ("actor-bad-id-open", bad_open(INQUIRY, actor=Actor("fd/avery", "front_desk")), InvalidInput),
    # idempotency keys
    ("key-empty", fire({"reason": "x"}, idempotency_key=""), InvalidInput),
    ("key-space", fire({"reason": "x"}, idempotency_key="key 1"), InvalidInput),
    ("key-sql", fire({"reason": "x"}, idempotency_key=SQL_INJECTION), InvalidInput),
    ("key-long", fire({"reason": "x"}, idempotency_key="k" * 201), InvalidInput),
    ("key-int", fire({"reason": "x"}, idempotency_key=12345), InvalidInput),
    ("key-bad-record", record("fasting", {"attested": True}, actor=CLIENT, idempotency_key="k\tk"), InvalidInput),
    ("key-bad-open", bad_open(INQUIRY, idempotency_key="<key>"), InvalidInput),
    # case ids
    ("case-id-empty", lambda e, _c: e.fire("", "hold", actor=FRONT_DESK, data={"reason": "x"}), InvalidInput),
    ("case-id-path", lambda e, _c: e.fire("../../etc/passwd", "hold", actor=FRONT_DESK), InvalidInput),
    ("case-id-sql", lambda e, _c: e.record(SQL_INJECTION, "fasting", {"attested": True}, actor=CLIENT),
     InvalidInput),
    ("case-id-long", lambda e, _c: e.case("c" * 201), InvalidInput),
    ("case-id-none", lambda e, _c: e.history(None), InvalidInput),  # type: ignore[arg-type]
    ("case-id-html", lambda e, _c: e.check(HTML, "hold"), InvalidInput),
    # listing
    ("cases-limit-zero", lambda e, _c: e.cases(limit=0), InvalidInput),
    ("cases-negative-offset", lambda e, _c: e.cases(offset=-1), InvalidInput),
    ("cases-limit-text", lambda e, _c: e.cases(limit="3"), InvalidInput),  # type: ignore[arg-type]
    ("cases-limit-float", lambda e, _c: e.cases(limit=1.5), InvalidInput),  # type: ignore[arg-type]
    ("cases-limit-bool", lambda e, _c: e.cases(limit=True), InvalidInput),
    ("cases-offset-huge", lambda e, _c: e.cases(offset=10**20), InvalidInput),
    ("cases-state-surrogate", lambda e, _c: e.cases(state="\ud800"), InvalidInput),
    ("cases-state-not-text", lambda e, _c: e.cases(state=3), InvalidInput),  # type: ignore[arg-type]
    ("count-state-surrogate", lambda e, _c: e.count_cases(state="\ud800"), InvalidInput),
    # numbers and instants no database or calendar can hold
    ("data-huge-int", fire({"reason": "x", "n": 10**5000}), InvalidInput),
    ("data-int-over-64-bits", fire({"reason": "x", "n": [2**63]}), InvalidInput),
    ("fact-huge-int", record("vitals", {**VITALS, "systolic": 10**5000}), InvalidInput),
    ("appointment-year-9999-west", record("appointment", {**WHO, "kind": "evaluation",
                                                          "starts_at": "9999-12-31T23:59:00-14:00"},
                                          actor=FRONT_DESK), InvalidFact),
    ("appointment-year-9999-utc", record("appointment", {**WHO, "kind": "evaluation",
                                                         "starts_at": "9999-12-31T23:30:00+00:00"},
                                         actor=FRONT_DESK), InvalidFact),
    ("appointment-before-1900", record("appointment", {**WHO, "kind": "evaluation",
                                                       "starts_at": "1899-12-31T23:59:59+00:00"},
                                       actor=FRONT_DESK), InvalidFact),
    ("appointment-over-100-years", record("appointment", {**WHO, "kind": "evaluation",
                                                          "starts_at": "2127-01-01T00:00:00+00:00"},
                                          actor=FRONT_DESK), InvalidFact),
    ("vitals-year-1-east", record("vitals", {**VITALS, "measured_at": "0001-01-01T00:00:00+14:00"}), InvalidFact),
    ("day-before-1900", record("prescription", {"prescriber": "NP", "issued_on": "1899-12-31",
                                                "expires_on": "2026-04-01"}), InvalidFact),
    ("day-year-9999", record("prescription", {"prescriber": "NP", "issued_on": "2026-01-01",
                                              "expires_on": "9999-12-31"}), InvalidFact),
    ("book-year-9999", lambda e, c: e.book_appointment(c, "kap_session", datetime(9999, 12, 31, 23, tzinfo=UTC),
                                                       actor=FRONT_DESK, **who(c, "kap_session")), InvalidFact),
    ("book-naive", lambda e, c: e.book_appointment(c, "kap_session", datetime(2026, 3, 1, 9),
                                                   actor=FRONT_DESK, **who(c, "kap_session")), InvalidFact),
    ("reschedule-year-1", lambda e, c: e.reschedule_appointment(c, "a1", datetime(1, 1, 1, tzinfo=UTC),
                                                               actor=FRONT_DESK), InvalidFact),
    # odd shapes that used to escape as TypeError or UnicodeEncodeError
    ("actor-role-list", fire({"reason": "x"}, actor=Actor("fd-1", ["front_desk"])), InvalidInput),  # type: ignore[arg-type]
    ("actor-role-list-record", record("fasting", {"attested": True},
                                      actor=Actor("c-1", ["client"])), InvalidInput),  # type: ignore[arg-type]
    ("actor-role-list-check", lambda e, c: e.check(c, "hold", actor=Actor("fd-1", ["front_desk"])),  # type: ignore[arg-type]
     InvalidInput),
    ("trigger-surrogate-with-key", fire(trigger="\ud800", idempotency_key="k-surrogate"), InvalidInput),
    ("trigger-not-text-with-key", fire(trigger=7, idempotency_key="k-int"), InvalidInput),  # type: ignore[arg-type]
    ("kind-surrogate-with-key", record("\ud800", {}, idempotency_key="k-surrogate"), InvalidInput),
    ("open-workflow-not-text", bad_open(INQUIRY, workflow=["kap"]), InvalidInput),
]


@pytest.mark.parametrize(("call", "error"), [pytest.param(c, e, id=i) for i, c, e in BAD])
def test_bad_input_gets_typed_error_and_writes_nothing(
    ready_sqlite: Ready, call: Callable[[Engine, str], object], error: type[KapflowError]
) -> None:
    """The call raises exactly the expected kapflow error and every table stays byte-identical."""
    ready = ready_sqlite
    before = dump(ready.db_url)
    case_before = ready.engine.case(ready.case_id)
    with pytest.raises(KapflowError) as info:
        call(ready.engine, ready.case_id)
    assert type(info.value) is error, repr(info.value)
    assert info.value.message
    assert dump(ready.db_url) == before
    assert ready.engine.case(ready.case_id) == case_before
    assert ready.engine.verify_audit().ok


def test_error_messages_do_not_echo_free_text(ready: Ready) -> None:
    """Errors about rejected text name the field and the rule, never the text itself."""
    secret = "Sample-Secret-Diagnosis"
    for call in (
        fire({"reason": secret + "\x00"}),
        record("screening", {"exclusions": [], "flags": [], "note": secret + "\x1b"}),
        fire({"reason": secret * 3000}),
    ):
        with pytest.raises(InvalidInput) as info:
            call(ready.engine, ready.case_id)
        assert secret not in str(info.value) and secret not in repr(info.value.as_dict())
        assert info.value.field


@pytest.mark.parametrize("where", ["fire-data", "fact", "intake"])
def test_lone_surrogate_is_invalid_input(ready: Ready, where: str) -> None:
    """A lone UTF-16 surrogate in free text is rejected as InvalidInput, writing nothing."""
    bad = "half\ud800"
    calls = {
        "fire-data": fire({"reason": bad}),
        "fact": record("screening", {"exclusions": [], "flags": [], "note": bad}),
        "intake": bad_open({**INQUIRY, "message": bad}),
    }
    before = dump(ready.db_url)
    with pytest.raises(InvalidInput):
        calls[where](ready.engine, ready.case_id)
    assert dump(ready.db_url) == before


@pytest.mark.parametrize("command", ["fire", "record"])
def test_non_actor_object_is_invalid_input(ready: Ready, command: str) -> None:
    """An actor that is not an Actor (here a tuple) is InvalidInput, writing nothing."""
    not_actor: Any = ("fd-avery", "front_desk")
    before = dump(ready.db_url)
    with pytest.raises(InvalidInput):
        if command == "fire":
            ready.engine.fire(ready.case_id, "hold", actor=not_actor, data={"reason": "x"})
        else:
            ready.engine.record(ready.case_id, "fasting", {"attested": True}, actor=not_actor)
    assert dump(ready.db_url) == before


def test_non_integer_expected_version_is_invalid_input(ready: Ready) -> None:
    """expected_version given as text is InvalidInput, not a confusing ConcurrencyConflict."""
    v = ready.engine.case(ready.case_id).version
    with pytest.raises(KapflowError) as info:
        ready.engine.fire(ready.case_id, "hold", actor=FRONT_DESK, data={"reason": "x"}, expected_version=str(v))  # type: ignore[arg-type]
    assert not isinstance(info.value, ConcurrencyConflict)
    assert isinstance(info.value, InvalidInput)


@pytest.mark.parametrize("where", ["actor", "idempotency_key", "case_id"])
def test_identifier_with_trailing_newline_is_invalid_input(ready: Ready, where: str) -> None:
    """An id, actor or key ending in a newline is rejected like any other control character."""
    actor = Actor("fd-avery\n", "front_desk") if where == "actor" else FRONT_DESK
    key = "key-1\n" if where == "idempotency_key" else None
    case_id = ready.case_id + "\n" if where == "case_id" else ready.case_id
    before = dump(ready.db_url)
    with pytest.raises(KapflowError) as info:
        ready.engine.fire(case_id, "hold", actor=actor, data={"reason": "x"}, idempotency_key=key)
    assert type(info.value) is InvalidInput
    assert dump(ready.db_url) == before


def test_text_at_the_64kib_limit_and_allowed_whitespace_are_accepted(ready: Ready) -> None:
    """Exactly 64 KiB of text, and tab/newline/carriage return, are accepted and read back unchanged."""
    at_limit = "x" * KIB64
    multiline = "line one\r\n\tline two\n"
    out = ready.engine.fire(ready.case_id, "hold", actor=FRONT_DESK, data={"reason": at_limit, "note": multiline})
    assert out.state == "on_hold"
    assert ready.engine.history(ready.case_id)[-1].data == {"reason": at_limit, "note": multiline}


def test_wrong_role_is_an_audited_refusal_that_changes_nothing_else(ready: Ready) -> None:
    """A wrong role is not bad input: exactly one refused row is added; state, version, facts and keys stay."""
    e, case_id = ready.engine, ready.case_id
    before_dump, before = dump(ready.db_url), e.case(case_id)
    with pytest.raises(NotPermitted):
        e.fire(case_id, "start_kap_session", actor=CLIENT, data={"note": HTML}, idempotency_key="try-1")
    with pytest.raises(NotPermitted):
        e.record(case_id, "prescription", {"prescriber": "Self", "issued_on": "2026-01-01",
                                           "expires_on": "2027-01-01"}, actor=THERAPIST)
    after_dump, after = dump(ready.db_url), e.case(case_id)
    assert (after.state, after.previous_state, after.version, after.facts, after.updated_at) == (
        before.state, before.previous_state, before.version, before.facts, before.updated_at,
    )
    assert after.event_count == before.event_count + 2
    for table, rows in before_dump.items():  # keys, timers, outbox: a refusal writes none of them
        if table not in ("cases", "audit_events"):
            assert after_dump[table] == rows, table
    new_rows = after_dump["audit_events"][len(before_dump["audit_events"]):]
    assert after_dump["audit_events"][: len(before_dump["audit_events"])] == before_dump["audit_events"]
    assert len(new_rows) == 2
    refusals = e.history(case_id)[-2:]
    assert [(r.kind, r.actor, r.role, r.trigger) for r in refusals] == [
        ("refused", CLIENT.id, "client", "start_kap_session"),
        ("refused", THERAPIST.id, "therapist", None),
    ]
    assert [r.blockers[0]["code"] for r in refusals] == ["not_permitted", "not_permitted"]
    assert refusals[0].idempotency_key == "try-1" and refusals[0].data == {"note": HTML}
    assert refusals[1].data == {"fact_kind": "prescription"}
    assert len(e.facts(case_id, "prescription")) == 1
    assert e.verify_audit().ok


def test_open_case_by_a_role_that_may_not_writes_nothing(ready: Ready) -> None:
    """An auditor opening a case is NotPermitted; there is no case to audit it on, so nothing is written."""
    before = dump(ready.db_url)
    with pytest.raises(NotPermitted):
        ready.engine.open_case(INQUIRY, actor=AUDITOR)
    assert dump(ready.db_url) == before


HOSTILE = [
    SQL_INJECTION,
    HTML,
    "Robert'); DROP TABLE audit_events; --",
    "\" OR 1=1 --",
    "<img src=x onerror=alert('x')>",
    "'; UPDATE cases SET state='completed' WHERE '1'='1",
    "%s %d {0} {reason} $(rm -rf /) `id`",
    "Ünïcødé — 患者 — مريض — 🧠💊",
    "\\x00 is only text here; so is \\n",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_free_text_is_stored_verbatim(ready: Ready, text: str) -> None:
    """SQL and HTML in free text are stored and read back byte-for-byte; the tables are intact."""
    e, case_id = ready.engine, ready.case_id
    schema_before = dump(ready.db_url)["schema"]
    cases_before = len(e.cases())

    opened = e.open_case({**INQUIRY, "message": text, "last_name": text[:100]}, actor=CLIENT)
    e.fire(case_id, "hold", actor=FRONT_DESK, data={"reason": text, text: text})
    e.record(case_id, "screening", {"exclusions": [], "flags": [], "note": text}, actor=PRESCRIBER)

    intake = e.facts(opened.case_id, "inquiry")[0].data
    assert intake["message"] == text and intake["last_name"] == text[:100]
    assert e.history(case_id)[-2].data == {"reason": text, text: text}
    assert e.facts(case_id, "screening")[-1].data["note"] == text
    rows = query(ready.db_url, "SELECT data FROM audit_events WHERE case_id = :c ORDER BY case_seq", c=case_id)
    stored = [json.loads(r[0]) for r in rows]
    assert stored[-2] == {"reason": text, text: text}
    assert stored[-1]["fact"]["note"] == text

    assert dump(ready.db_url)["schema"] == schema_before
    assert len(e.cases()) == cases_before + 1
    assert e.case(case_id).state == "on_hold"
    assert e.verify_audit().ok


def test_far_future_booking_with_calendars_on_is_invalid_input(any_ready_url: str, clock: FakeClock) -> None:
    """With calendars on, a booking at 9999-12-31 23:00 UTC is InvalidFact, not an OverflowError; nothing written."""
    from kapflow.store.sql import SqlStore
    from kapflow.workflows.kap import KAP_PATHWAY

    with Engine(SqlStore(any_ready_url), KAP_PATHWAY, clock=clock, calendar_sync=True) as e:
        case_id = open_case(e)
        before = dump(any_ready_url)
        with pytest.raises(InvalidFact) as info:
            e.book_appointment(case_id, "evaluation", datetime(9999, 12, 31, 23, tzinfo=UTC), actor=FRONT_DESK,
                               **who(case_id))
        assert info.value.field == "starts_at" and "1900-01-01" in info.value.message
        assert dump(any_ready_url) == before
        # A date inside the window still books, and book_evaluation then fires.
        e.book_appointment(case_id, "evaluation", clock.now() + timedelta(days=3), actor=FRONT_DESK, **who(case_id))
        assert e.fire(case_id, "book_evaluation", actor=FRONT_DESK).state == "evaluation_booked"


@pytest.mark.parametrize(("years", "accepted"), [(99, True), (101, False)])
def test_the_date_window_follows_the_clock(ready: Ready, years: int, accepted: bool) -> None:
    """An appointment up to 100 years after the engine's clock is accepted; one past that is refused."""
    starts = ready.engine.clock.now().replace(year=ready.engine.clock.now().year + years)
    # An integration session: a KAP session that far ahead is refused by its prescription, on the visit's day.
    call = record("appointment", {**WHO, "kind": "integration_session", "starts_at": starts.isoformat()},
                  actor=FRONT_DESK)
    if accepted:
        call(ready.engine, ready.case_id)
    else:
        with pytest.raises(InvalidFact):
            call(ready.engine, ready.case_id)


# ------------------------------------------------------------------ a small fuzz of the cases above

ODD_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["\ud800", "a\udfff", "", " ", "\x00", "hold"]))
ODD_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([10**5000, -(10**5000), 2**63, -(2**63) - 1]),
    st.floats(), st.booleans(),
)
ODD_ANY = st.one_of(ODD_TEXT, ODD_NUMBERS, st.none(), st.lists(st.text(max_size=3), max_size=2))
OFFSETS = [timezone(timedelta(hours=h)) for h in (-14, -5, 0, 9, 14)]
ODD_INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=st.sampled_from(OFFSETS))


def _fuzz_calls() -> st.SearchStrategy[Callable[[Engine, str], object]]:
    """Calls of the public API with the odd values the cases above are made of."""
    return st.one_of(
        st.builds(lambda n: fire({"reason": "x", "n": n}), ODD_NUMBERS),
        st.builds(lambda t, k: fire(trigger=t, idempotency_key=k), ODD_TEXT, st.sampled_from([None, "k-fuzz"])),
        st.builds(lambda role: fire({"reason": "x"}, actor=Actor("fd-1", role)), ODD_ANY),
        st.builds(lambda m: record("appointment", {**WHO, "kind": "kap_session", "starts_at": m.isoformat()},
                                   actor=FRONT_DESK), ODD_INSTANTS),
        st.builds(lambda m: record("vitals", {**VITALS, "measured_at": m.isoformat()}), ODD_INSTANTS),
        st.builds(lambda m: lambda e, c: e.book_appointment(c, "kap_session", m, actor=FRONT_DESK,
                                                            **who(c, "kap_session")), ODD_INSTANTS),
        st.builds(lambda d: record("prescription", {"prescriber": "NP", "issued_on": d.isoformat(),
                                                    "expires_on": "2026-04-01"}), st.dates()),
        st.builds(lambda s, n, o: lambda e, _c: e.cases(state=s, limit=n, offset=o), ODD_ANY, ODD_ANY, ODD_ANY),
        st.builds(lambda s: lambda e, _c: e.count_cases(state=s), ODD_ANY),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=_fuzz_calls())
def test_fuzzed_odd_values_get_kapflow_errors_only(ready: Ready, call: Callable[[Engine, str], object]) -> None:
    """Odd numbers, instants, names, roles and pages succeed or raise a kapflow error, never a storage error."""
    try:
        call(ready.engine, ready.case_id)
    except StorageError as exc:  # a caller's value misreported as the database's fault ("retry later")
        pytest.fail(f"bad input reported as a storage error: {exc!r}")
    except KapflowError:
        pass


def _fact_calls() -> st.SearchStrategy[Callable[[Engine, str], object]]:
    """Every fact kind of the KAP pathway, recorded by each of its recorders, with odd values in its fields."""
    from kapflow.workflows.kap import KAP_PATHWAY

    def call(kind: str, role: str, fields: dict[str, Any]) -> Callable[[Engine, str], object]:
        return record(kind, fields, actor=Actor("fuzz-1", role))

    return st.sampled_from(sorted(KAP_PATHWAY.facts)).flatmap(
        lambda kind: st.builds(
            call,
            st.just(kind),
            st.sampled_from(sorted(KAP_PATHWAY.facts[kind].roles) or sorted(KAP_PATHWAY.roles)),  # engine-posted: none
            st.dictionaries(
                st.sampled_from([f.name for f in KAP_PATHWAY.facts[kind].spec.fields] + ["unknown"]),
                st.one_of(ODD_ANY, ODD_INSTANTS.map(lambda m: m.isoformat()), st.dates().map(str)),
                max_size=6,
            ),
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=_fact_calls())
def test_fuzzed_facts_of_every_kind_get_kapflow_errors_only(
    ready: Ready, call: Callable[[Engine, str], object]
) -> None:
    """Any fact kind with odd field values is recorded, or refused with a kapflow error: never anything else."""
    try:
        call(ready.engine, ready.case_id)
    except StorageError as exc:
        pytest.fail(f"bad input reported as a storage error: {exc!r}")
    except KapflowError:
        pass
    assert ready.engine.verify_audit(ready.case_id).ok
