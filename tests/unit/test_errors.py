"""kapflow's exceptions: one base, JSON-ready bodies carrying their structured attributes."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

import kapflow.errors
from kapflow.domain import errors as e
from kapflow.domain.errors import Blocker, KapflowError

BLOCKERS = (
    Blocker(
        "evaluation_fee_unpaid",
        "$250 evaluation fee is due before the evaluation (paid so far: $100)",
        "evaluation_fee_paid",
        (("paid", "100"), ("due", "250")),
    ),
    Blocker("consent_missing", "the client must sign the KAP informed consent form", "consent_signed"),
)
WHERE = {"case_id": "case-7f3a", "trigger": "start_kap_session", "state": "ready_for_kap"}

# class -> (an instance, the structured attributes it must carry, in their JSON form)
CASES: dict[type[KapflowError], tuple[KapflowError, dict[str, Any]]] = {
    KapflowError: (KapflowError("something went wrong"), {}),
    e.InvalidInput: (e.InvalidInput("data: must be an object", field="data"), {"field": "data"}),
    e.InvalidFact: (
        e.InvalidFact("payment", "amount", "must be greater than zero"),
        {"kind": "payment", "field": "amount", "reason": "must be greater than zero"},
    ),
    e.UnknownTrigger: (
        e.UnknownTrigger("teleport", ["resume", "hold"]),
        {"field": "trigger", "trigger": "teleport", "known": ["hold", "resume"]},
    ),
    e.UnknownFactKind: (
        e.UnknownFactKind("diary", ["payment", "inquiry"]),
        {"field": "kind", "kind": "diary", "known": ["inquiry", "payment"]},
    ),
    e.DocumentIncomplete: (
        e.DocumentIncomplete("superbill", ["the client's address is not recorded"]),
        {"field": "superbill", "document": "superbill", "missing": ["the client's address is not recorded"]},
    ),
    e.IdempotencyKeyReused: (
        e.IdempotencyKeyReused("sha256:0f3a"),
        {"field": "idempotency_key", "key_digest": "sha256:0f3a"},
    ),
    e.UnknownCase: (e.UnknownCase("case-404"), {"case_id": "case-404"}),
    e.Refused: (e.Refused("refused", **WHERE), WHERE),
    e.NotPermitted: (
        e.NotPermitted(**WHERE, role="client", allowed=["therapist", "prescriber"]),
        {**WHERE, "role": "client", "allowed": ["prescriber", "therapist"]},
    ),
    e.TransitionNotAvailable: (
        e.TransitionNotAvailable(**WHERE, available=["withdraw", "hold"]),
        {**WHERE, "available": ["hold", "withdraw"]},
    ),
    e.TransitionBlocked: (
        e.TransitionBlocked(**WHERE, blockers=BLOCKERS),
        {**WHERE, "blockers": [b.as_dict() for b in BLOCKERS]},
    ),
    e.MigrationRefused: (
        e.MigrationRefused(case_id="case-7f3a", state="dosing", from_version="1", to_version="2",
                           reasons=BLOCKERS[:1]),
        {"case_id": "case-7f3a", "trigger": "migrate", "state": "dosing", "from_version": "1",
         "to_version": "2", "reasons": [BLOCKERS[0].as_dict()]},
    ),
    e.ConcurrencyConflict: (
        e.ConcurrencyConflict("case-7f3a", 3, 4),
        {"case_id": "case-7f3a", "expected_version": 3, "actual_version": 4},
    ),
    e.WorkflowDefinitionError: (
        e.WorkflowDefinitionError("mini", ["state 'b' is defined twice", "the workflow has no final state"]),
        {"workflow": "mini", "problems": ["state 'b' is defined twice", "the workflow has no final state"]},
    ),
    e.StorageError: (e.StorageError("the database could not be reached; try again"), {}),
    e.AuditChainBroken: (
        e.AuditChainBroken("case-7f3a", 7, "hash does not match the row"),
        {"case_id": "case-7f3a", "seq": 7, "reason": "hash does not match the row"},
    ),
    e.CheckpointFormatError: (
        e.CheckpointFormatError("checkpoint", "the tree size has a leading zero"),
        {"part": "checkpoint", "reason": "the tree size has a leading zero"},
    ),
    e.Unauthenticated: (
        e.Unauthenticated("expired", "the bearer token expired: get a new one from the identity provider"),
        {"reason": "expired"},
    ),
    e.SignatureInvalid: (
        e.SignatureInvalid("kapflow.example/audit", "c74f20a3", "unknown_key"),
        {"key_name": "kapflow.example/audit", "key_id": "c74f20a3", "reason": "unknown_key"},
    ),
    kapflow.errors.MoveUndefined: (
        kapflow.errors.MoveUndefined("discharge", "inquiry"),
        {"trigger": "discharge", "state": "inquiry"},
    ),
    kapflow.errors.LostRace: (
        kapflow.errors.LostRace("case-7f3a"),
        {"case_id": "case-7f3a", "expected_version": None, "actual_version": None},
    ),
    kapflow.errors.DuplicateIdempotencyKey: (kapflow.errors.DuplicateIdempotencyKey(), {}),
    kapflow.errors.ConfigError: (
        kapflow.errors.ConfigError("kapflow.toml", ["unknown setting 'colour'"]),
        {"source": "kapflow.toml", "problems": ["unknown setting 'colour'"]},
    ),
    kapflow.errors.AdapterConfigError: (
        kapflow.errors.AdapterConfigError("caldav", "the URL has no scheme"),
        {"adapter": "caldav", "problem": "the URL has no scheme"},
    ),
    kapflow.errors.DeliveryFailed: (
        kapflow.errors.DeliveryFailed("email", "mailbox unavailable", permanent=True),
        {"channel": "email", "reason": "mailbox unavailable", "permanent": True},
    ),
    kapflow.errors.WebhookVerificationError: (
        kapflow.errors.WebhookVerificationError("bad_signature", "no signature matches"),
        {"reason": "bad_signature"},
    ),
    kapflow.errors.DiagramUnavailable: (kapflow.errors.DiagramUnavailable("install graphviz for PNG"), {}),
}


AS_DICT_BUGS: dict[type, Any] = {}


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, Blocker):
        return value.as_dict()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _params(with_bugs: bool) -> list[Any]:
    return [
        pytest.param(cls, marks=AS_DICT_BUGS[cls] if with_bugs and cls in AS_DICT_BUGS else (), id=cls.__name__)
        for cls in CASES
    ]


ROOT = Path(__file__).resolve().parents[2]
HOMES = {ROOT / "kapflow" / "errors.py", ROOT / "kapflow" / "domain" / "errors.py"}


def _exception_classes_in_the_tree() -> dict[str, Path]:
    """Every class in kapflow/, workflows/ and adapters/ that derives from KapflowError, by its bases' names."""
    classes: dict[str, tuple[Path, list[str]]] = {}
    for folder in ("kapflow", "workflows", "adapters"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                    classes[node.name] = (path, bases)
    found = {"KapflowError"}
    grew = True
    while grew:
        more = {name for name, (_, bases) in classes.items() if found & set(bases)} - found
        found |= more
        grew = bool(more)
    return {name: classes[name][0] for name in found}


def test_every_kapflow_error_lives_in_the_one_tree() -> None:
    """Every exception kapflow defines is defined in kapflow/errors.py or kapflow/domain/errors.py."""
    stray = {name: str(path.relative_to(ROOT)) for name, path in _exception_classes_in_the_tree().items()
             if path not in HOMES}
    assert stray == {}


def test_every_kapflow_error_is_covered() -> None:
    """The table above has an instance of every KapflowError subclass, and the tree names them all."""
    assert set(_subclasses(KapflowError)) | {KapflowError} >= set(CASES)
    assert {c.__name__ for c in CASES} == set(_exception_classes_in_the_tree())


def test_the_docstring_draws_every_exception() -> None:
    """kapflow.errors' docstring draws each exception of the tree on a line of its own."""
    drawn = kapflow.errors.__doc__ or ""
    assert all(f" {cls.__name__} " in drawn or drawn.count(f"\n    {cls.__name__}\n") for cls in CASES)


@pytest.mark.parametrize("cls", _params(with_bugs=False))
def test_as_dict_is_json_ready(cls: type[KapflowError]) -> None:
    """as_dict() serialises to JSON and carries the class's code and the message."""
    exc, _ = CASES[cls]
    assert type(exc) is cls
    body = exc.as_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["error"] == cls.code
    assert body["message"] == exc.message == str(exc)


@pytest.mark.parametrize("cls", _params(with_bugs=False))
def test_structured_attributes_on_the_exception(cls: type[KapflowError]) -> None:
    """Each exception carries its structured attributes for programs to read."""
    exc, expected = CASES[cls]
    assert {key: _jsonable(getattr(exc, key)) for key in expected} == expected


@pytest.mark.parametrize("cls", _params(with_bugs=True))
def test_structured_attributes_in_as_dict(cls: type[KapflowError]) -> None:
    """The JSON body carries every structured attribute too."""
    exc, expected = CASES[cls]
    body = exc.as_dict()
    assert {key: body[key] for key in expected} == expected


def test_codes_are_unique() -> None:
    """No two error classes share a code."""
    codes = [cls.code for cls in CASES]
    assert len(codes) == len(set(codes))


def test_tree_matches_the_docstring() -> None:
    """The hierarchy is the one drawn in kapflow.errors."""
    for cls in (e.InvalidFact, e.UnknownTrigger, e.UnknownFactKind, e.IdempotencyKeyReused):
        assert issubclass(cls, e.InvalidInput)
    for cls in (e.NotPermitted, e.TransitionNotAvailable, e.TransitionBlocked, e.MigrationRefused):
        assert issubclass(cls, e.Refused)
    assert issubclass(kapflow.errors.LostRace, e.ConcurrencyConflict)
    assert issubclass(kapflow.errors.DuplicateIdempotencyKey, e.StorageError)
    for cls in CASES:
        assert issubclass(cls, KapflowError)
        assert issubclass(cls, Exception)


def test_public_module_exports_every_error() -> None:
    """kapflow.errors exports every exception of the tree (the domain's re-exported), in a sorted __all__."""
    assert {c.__name__ for c in CASES} | {"Blocker"} == set(kapflow.errors.__all__)
    assert kapflow.errors.__all__ == sorted(kapflow.errors.__all__)
    domain = {name for name, obj in vars(e).items() if isinstance(obj, type) and issubclass(obj, KapflowError)}
    assert all(getattr(kapflow.errors, name) is getattr(e, name) for name in domain)


def test_transition_blocked_lists_every_blocker() -> None:
    """The message of TransitionBlocked counts and names every blocker with its code and sentence."""
    exc = e.TransitionBlocked(**WHERE, blockers=BLOCKERS)
    assert exc.message.startswith("'start_kap_session' is blocked (2): ")
    for b in BLOCKERS:
        assert f"{b.code}: {b.message}" in exc.message
    assert exc.blockers == BLOCKERS


def test_workflow_definition_error_counts_problems() -> None:
    """The message of WorkflowDefinitionError counts and lists every problem."""
    exc, _ = CASES[e.WorkflowDefinitionError]
    assert exc.message == (
        "workflow 'mini' is invalid (2 problems): state 'b' is defined twice; the workflow has no final state"
    )


def test_lists_in_messages_are_sorted() -> None:
    """Known triggers, allowed roles and available triggers are listed in sorted order."""
    assert CASES[e.UnknownTrigger][0].message.endswith("known triggers: hold, resume")
    assert CASES[e.NotPermitted][0].message.endswith("allowed roles: prescriber, therapist")
    assert CASES[e.TransitionNotAvailable][0].message.endswith("triggers from here: hold, withdraw")
    none = e.TransitionNotAvailable(**WHERE, available=[])
    assert none.message.endswith("triggers from here: none")


def test_concurrency_conflict_without_versions() -> None:
    """A conflict found without version numbers still explains itself and serialises."""
    exc = e.ConcurrencyConflict("case-7f3a", None, None)
    assert "reload the case and retry" in exc.message
    assert json.loads(json.dumps(exc.as_dict()))["expected_version"] is None


def test_blocker_as_dict() -> None:
    """A blocker's body has its code, message, guard and the facts as an object."""
    assert BLOCKERS[0].as_dict() == {
        "code": "evaluation_fee_unpaid",
        "message": "$250 evaluation fee is due before the evaluation (paid so far: $100)",
        "guard": "evaluation_fee_paid",
        "facts": {"paid": "100", "due": "250"},
    }
