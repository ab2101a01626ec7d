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
from kapflow.domain.payload import (
    MAX_INT,
    JSONObject,
    canonical_json,
    check_identifier,
    check_payload,
    check_text,
)


def check_command(
    op: str, case_id: str, name: str, actor: Actor, data: Mapping[str, Any] | None,
    key: str | None, expected_version: int | None,
) -> tuple[JSONObject, str | None, str]:
    """Check a command's input before any transaction: (payload, idempotency key, fingerprint)."""
    check_identifier(case_id, "case_id")
    check_name(name, "trigger" if op == "fire" else "kind")
    check_actor_shape(actor)
    check_version_arg(expected_version)
    payload = check_payload(data)
    if key is None:
        return payload, None, ""  # no key, nothing to compare a repeat with
    return payload, check_identifier(key, "idempotency_key"), fingerprint_of(op, case_id, name, "", actor, payload)


def check_name(name: object, field: str) -> str:
    """A trigger or fact kind's name: text that obeys the text policy (the workflow then says if it knows it)."""
    if not isinstance(name, str):
        raise InvalidInput(f"{field}: must be text naming a {field} of the workflow", field=field)
    return check_text(name, field)


def check_actor_shape(actor: object) -> None:
    """An ``Actor`` whose id is an identifier and whose role is text (checked against the workflow later)."""
    if not isinstance(actor, Actor):
        raise InvalidInput("actor must be an Actor(id, role)", field="actor")
    check_identifier(actor.id, "actor.id")
    if not isinstance(actor.role, str):
        raise InvalidInput("actor.role: must be the text of one role, e.g. Actor('fd-1', 'front_desk')",
                           field="actor.role")
    check_text(actor.role, "actor.role")
    if actor.os_user is not None:  # the account an entry point recorded (the CLI's), at most 200 characters
        if not isinstance(actor.os_user, str) or not actor.os_user or len(actor.os_user) > 200:
            raise InvalidInput("actor.os_user: must be an account name (1 to 200 characters) or None",
                               field="actor.os_user")
        check_text(actor.os_user, "actor.os_user")
    if actor.via is not None:  # the service acting for the person (an API key's name: an identifier)
        check_identifier(actor.via, "actor.via")


def check_version_arg(expected: object) -> None:
    """``expected_version`` is None or a version a read could have returned (1 or more)."""
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 1):
        raise InvalidInput(
            "expected_version must be a whole number from 1, the version you read", field="expected_version"
        )


def check_state_filter(state: object) -> str | None:
    """A listing's state filter: None, or text (a state no case is in simply matches none)."""
    if state is None:
        return None
    if not isinstance(state, str):
        raise InvalidInput("state: must be the text of a state, or None for every state", field="state")
    return check_text(state, "state")


def check_page(limit: object, offset: object, max_page: int) -> tuple[int, int]:
    """A listing's page: ``limit`` a whole number 1..``max_page``, ``offset`` one from 0 (not text, not 1.5)."""
    for name, value, low, high in (("limit", limit, 1, max_page), ("offset", offset, 0, MAX_INT)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(
                f"{name}: must be a whole number; limit 1-{max_page} and offset at least 0", field=name
            )
    assert isinstance(limit, int) and isinstance(offset, int)
    return limit, offset


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
