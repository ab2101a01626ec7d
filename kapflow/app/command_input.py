"""A command's input, checked before its transaction opens: bad input writes nothing.

Also the command's fingerprint (what an idempotency key is bound to) and the
stored outcome a repeated key is answered with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kapflow.domain.case import Actor, Outcome
from kapflow.domain.errors import InvalidInput
from kapflow.domain.payload import JSONObject, canonical_json, check_identifier, check_payload


def check_command(
    op: str, case_id: str, name: str, actor: Actor, data: Mapping[str, Any] | None,
    key: str | None, expected_version: int | None,
) -> tuple[JSONObject, str | None, str]:
    """Check a command's input before any transaction: (payload, idempotency key, fingerprint)."""
    check_identifier(case_id, "case_id")
    check_actor_shape(actor)
    check_version_arg(expected_version)
    payload = check_payload(data)
    if key is None:
        return payload, None, ""  # no key, nothing to compare a repeat with
    return payload, check_identifier(key, "idempotency_key"), fingerprint_of(op, case_id, name, "", actor, payload)


def check_actor_shape(actor: object) -> None:
    """An ``Actor`` whose id is an identifier (its role is checked against the workflow later)."""
    if not isinstance(actor, Actor):
        raise InvalidInput("actor must be an Actor(id, role)", field="actor")
    check_identifier(actor.id, "actor.id")


def check_version_arg(expected: object) -> None:
    """``expected_version`` is None or a version a read could have returned (1 or more)."""
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 1):
        raise InvalidInput(
            "expected_version must be a whole number from 1, the version you read", field="expected_version"
        )


def instant_text(moment: datetime) -> str:
    """An appointment's start as text for its fact (the fact's spec then insists on a time zone)."""
    if not isinstance(moment, datetime):
        raise InvalidInput("starts_at must be a datetime with a time zone", field="starts_at")
    return moment.isoformat()


def fingerprint_of(op: str, case_id: str, name: str, extra: str, actor: Actor, data: JSONObject) -> str:
    """What an idempotency key is bound to: a repeat must be this same command, by this same actor."""
    body = canonical_json([op, case_id, name, extra, actor.id, actor.role, data])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def outcome_from_json(text: str) -> Outcome:
    """The outcome stored with an idempotency key, as returned to a repeat (``replayed=True``)."""
    d = json.loads(text)
    base = {"case_id", "kind", "state", "version", "case_seq", "trigger", "from_state", "replayed"}
    return Outcome(
        case_id=d["case_id"], kind=d["kind"], state=d["state"], version=d["version"],
        case_seq=d["case_seq"], trigger=d["trigger"], from_state=d["from_state"], replayed=True,
        extra={k: v for k, v in d.items() if k not in base},
    )
