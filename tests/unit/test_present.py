"""The presentation module every entry point shares: error mappings, case shapes, defanging, event summaries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

import kapflow.errors
from kapflow import present
from kapflow.app.workflows import WorkflowSet
from kapflow.domain.case import AuditEvent, CaseRecord, Outcome
from kapflow.domain.events import EventKind
from kapflow.domain.facts import FactSpec, Text
from kapflow.domain.workflow import ClientFields, FactKind, State, Transition, Workflow
from kapflow.errors import InvalidInput, KapflowError, UnknownCase

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

# The documented tables (kapflow.present's docstring): class name -> (exit code, HTTP status).
DOCUMENTED = {
    "AdapterConfigError": (1, 500),
    "AuditChainBroken": (1, 500),
    "CheckpointFormatError": (2, 422),
    "ConcurrencyConflict": (3, 409),
    "ConfigError": (2, 500),
    "DeliveryFailed": (1, 502),
    "DiagramUnavailable": (1, 501),
    "DocumentIncomplete": (2, 422),
    "DuplicateIdempotencyKey": (1, 503),
    "IdempotencyKeyReused": (2, 422),
    "InvalidFact": (2, 422),
    "InvalidInput": (2, 422),
    "KapflowError": (1, 500),
    "LostRace": (3, 409),
    "MigrationRefused": (3, 409),
    "MoveUndefined": (1, 500),
    "NotPermitted": (3, 403),
    "Refused": (3, 409),
    "SignatureInvalid": (2, 422),
    "Unauthenticated": (1, 401),
    "StorageError": (1, 503),
    "TransitionBlocked": (3, 409),
    "TransitionNotAvailable": (3, 409),
    "UnknownCase": (4, 404),
    "UnknownFactKind": (2, 422),
    "UnknownTrigger": (2, 422),
    "WebhookVerificationError": (1, 401),
    "WorkflowDefinitionError": (1, 500),
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {name: getattr(kapflow.errors, name) for name in kapflow.errors.__all__}
    return {name: value for name, value in found.items()
            if isinstance(value, type) and issubclass(value, BaseException)}


def test_every_exported_exception_has_a_documented_exit_code_and_http_status() -> None:
    """Each exception in kapflow.errors.__all__ maps to the exit code and HTTP status the tables give."""
    classes = _exception_classes()
    assert set(classes) == set(DOCUMENTED), "a new exception needs its row in kapflow.present's tables"
    for name, cls in classes.items():
        err = cls.__new__(cls)  # the mappings look at the class only
        assert (present.exit_code(err), present.http_status(err)) == DOCUMENTED[name], name
        assert f" {present.http_status(err)} " in f" {present.__doc__} ", name


def test_done_and_foreign_exceptions_have_their_codes_and_a_fixed_body() -> None:
    """No error is exit 0; anything not kapflow's is exit 1, HTTP 500, and a body that says nothing of it."""
    assert present.exit_code(None) == 0
    foreign = ValueError("Jane Roe's diagnosis")
    assert (present.exit_code(foreign), present.http_status(foreign)) == (1, 500)
    body = present.error_body(foreign)
    assert body["error"] == "internal_error" and "Jane" not in str(body) and "ValueError" not in str(body)


def test_the_error_body_is_the_errors_own_dict() -> None:
    """Kapflow's errors answer with ``as_dict()``: code, message and structured attributes."""
    for err in (UnknownCase("case-0"), InvalidInput("bad", field="data"), KapflowError("plain")):
        assert present.error_body(err) == err.as_dict()
    assert present.error_body(UnknownCase("case-0"))["case_id"] == "case-0"


# ------------------------------------------------------------------ the case's shape


def referral_workflow(version: str = "1") -> Workflow:
    """A tiny workflow whose intake names the client in fields KAP does not use."""
    spec = FactSpec("referral", (Text("given"), Text("family"), Text("first_name", required=False)))
    staff = frozenset({"staff"})
    return Workflow(
        name="referrals", version=version, initial="open",
        states=(State("open"), State("closed", final=True)),
        transitions=(Transition("close", ("open",), "closed", staff),),
        roles=staff, guards={}, facts={"referral": FactKind(spec, staff)}, thresholds={},
        intake_fact="referral", client=ClientFields(name=("given", "family")),
    )


def case_with(intake: dict[str, Any], *, workflow: str = "referrals", version: str = "1") -> CaseRecord:
    facts = {"facts": [{"kind": "referral", "at": AT.isoformat(), "by": "st-1", "data": intake}], "moves": []}
    return CaseRecord(
        id="case-0123456789abcdef", workflow=workflow, workflow_version=version, state="open", previous_state=None,
        version=1, event_count=1, head_hash="0" * 64, facts=facts, opened_at=AT, updated_at=AT,
    )


def test_the_case_shape_names_the_client_from_the_workflows_client_fields() -> None:
    """The client is the workflow's ``client.name`` fields of its intake, joined: not first_name/last_name."""
    wf = referral_workflow()
    case = case_with({"given": "Ada", "family": "Lovelace", "first_name": "Wrong", "last_name": "Wrong"})
    shape = present.case_shape(case, wf)
    assert shape["client"] == "Ada Lovelace"
    assert shape == {
        "id": case.id, "client": "Ada Lovelace", "state": "open", "previous_state": None, "version": 1,
        "workflow": "referrals", "workflow_version": "1", "events": 1,
        "opened_at": "2026-03-02T09:30:00.000000+00:00", "updated_at": "2026-03-02T09:30:00.000000+00:00",
    }
    assert present.client_name(case_with({"given": "Ada", "family": ""}), wf) == "Ada"
    assert present.client_name(case, None) == ""


def test_a_case_is_shown_with_its_version_or_else_its_workflows_current_one() -> None:
    """The version a case is on names its client; a version not loaded falls back to the current; else none."""
    loaded = WorkflowSet([referral_workflow("1"), referral_workflow("2")])
    assert present.case_workflow(loaded, case_with({}, version="1")) is loaded.get("referrals", "1")
    assert present.case_workflow(loaded, case_with({}, version="0")) is loaded.current("referrals")
    assert present.case_workflow(loaded, case_with({}, workflow="elsewhere")) is None


def test_the_fact_summary_counts_each_kind_and_keeps_the_latest() -> None:
    """One entry per kind: how many, the last one's time, author and data."""
    assert present.fact_summary(case_with({"given": "Ada", "family": "L"})) == [
        {"kind": "referral", "count": 1, "last_at": "2026-03-02T09:30:00.000000+00:00", "last_by": "st-1",
         "latest": {"given": "Ada", "family": "L"}},
    ]


# ------------------------------------------------------------------ defanging


def test_defang_escapes_c1_controls_and_nothing_else() -> None:
    """U+0080-U+009F become \\u escapes; markup, newlines, accents and other text stay as stored."""
    assert present.defang("call \x9b31m back") == "call \\u009b31m back"
    assert all(present.defang(chr(code)) == f"\\u{code:04x}" for code in range(0x80, 0xA0))
    for text in ("[bold]x[/bold] :smile: <b>", "line\nnext\ttab", "Zoë \u00a0 日本", "\x1b[31m"):
        assert present.defang(text) == text


# ------------------------------------------------------------------ events and outcomes


def event(kind: str, data: dict[str, Any] | None = None, *, trigger: str | None = None, source: str | None = None,
          dest: str | None = None) -> AuditEvent:
    return AuditEvent(
        case_id="case-1", case_seq=1, at=AT, actor="st-1", role="staff", kind=kind, trigger=trigger,
        from_state=source, to_state=dest, workflow="referrals", workflow_version="1", data=data or {}, blockers=(),
        idempotency_key=None, prev_hash="0" * 64, hash="1" * 64,
    )


SUMMARIES = {
    EventKind.OPENED: (event("opened", {"intake_kind": "referral"}, dest="open"), "referral", "-> open"),
    EventKind.TRANSITION: (event("transition", trigger="close", source="open", dest="closed"), "close",
                           "open -> closed"),
    EventKind.FACT: (event("fact", {"kind": "referral"}, source="open", dest="open"), "referral", ""),
    EventKind.MIGRATED: (event("migrated", {"from_version": "1", "to_version": "2"}, trigger="migrate",
                               source="open", dest="open"), "migrate", ""),
    EventKind.REFUSED: (event("refused", trigger="close", source="open", dest="open"), "close", ""),
    EventKind.REMINDER: (event("reminder", {"reminder": "follow_up", "outcome": "skipped"}), "follow_up: skipped", ""),
    EventKind.DELIVERY_FAILED: (event("delivery_failed", {"channel": "email", "attempts": 8}),
                                "email gave up after 8", ""),
    EventKind.MESSAGE_DROPPED: (event("message_dropped", {"channel": "email", "reason": "its deadline passed"}),
                                "email message dropped: its deadline passed", ""),
    EventKind.CLIENT_INVITED: (event("client_invited", {"expires_at": "2026-01-12T09:00:00.000000+00:00"}),
                               "client invited to bind its identity", ""),
    EventKind.CLIENT_BOUND: (event("client_bound", {"subject_sha256": "0" * 64}), "client identity bound", ""),
    EventKind.CLIENT_UNBOUND: (event("client_unbound", {"subject_sha256": "0" * 64}), "client identity unbound", ""),
}


@pytest.mark.parametrize("kind", list(EventKind))
def test_each_event_kind_has_its_summary(kind: EventKind) -> None:
    """What each kind of audit event says in a line, and the move (only an opening or a transition moves)."""
    ev, what, move = SUMMARIES[kind]
    summary = present.event_summary(ev)
    assert (summary.what, summary.move()) == (what, move)
    assert summary.as_dict()["move"] == move


def test_a_move_can_break_before_its_arrow_and_an_unknown_kind_shows_its_trigger() -> None:
    """A narrow column puts the arrow on a new line; a kind this kapflow does not know still summarises."""
    assert present.event_summary(SUMMARIES[EventKind.TRANSITION][0]).move("\n") == "open\n-> closed"
    assert present.event_summary(event("archived", trigger="archive")).what == "archive"


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (Outcome("case-1", "opened", "open", 1, 1), "case-1: opened (state open), version 1"),
        (Outcome("case-1", "transition", "closed", 3, 3, trigger="close", from_state="open", replayed=True),
         "case-1: close: open -> closed, version 3 [replayed: this key was used before]"),
        (Outcome("case-1", "fact", "open", 2, 2, extra={"fact_kind": "referral"}),
         "case-1: recorded referral (state open), version 2"),
        (Outcome("case-1", "migrated", "open", 4, 4, extra={"from_version": "1", "to_version": "2"}),
         "case-1: moved from version 1 to 2 (open), version 4"),
    ],
)
def test_an_outcome_is_one_line(outcome: Outcome, text: str) -> None:
    """Each kind of outcome in the line the command line prints."""
    assert present.outcome_text(outcome) == text


def test_the_outbox_shape_leaves_out_the_message() -> None:
    """A message's body and payload may name the client: the outbox's shape has neither."""
    row = {"id": 1, "case_id": "case-1", "status": "sent", "body": "Dear Ada", "payload": {"to": "ada@x"}}
    assert present.outbox_shape(row) == {"id": 1, "case_id": "case-1", "status": "sent"}


def test_case_summaries_are_the_workflows_views_of_the_case() -> None:
    """A workflow's ``summaries`` are computed from the case's facts and shown by name; one that cannot be
    computed is shown as unavailable; a workflow with none (or no workflow) shows none."""
    def count(facts: Any) -> dict[str, object]:
        return {"referrals": len(facts.of_kind("referral"))}

    def broken(facts: Any) -> dict[str, object]:
        raise KeyError("score")

    wf = replace(referral_workflow(), summaries={"count": count, "broken": broken})
    case = case_with({"given": "Ada", "family": "Lovelace"})
    assert present.case_summaries(case, wf) == {"count": {"referrals": 1}, "broken": {"unavailable": "KeyError"}}
    assert present.case_summaries(case, referral_workflow()) == {}
    assert present.case_summaries(case, None) == {}
