"""API keys' text form, the Kapflow-On-Behalf-Of header, and the delegation rule (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kapflow.domain.identity import (
    ApiKey,
    acting_actor,
    check_key_id,
    check_key_name,
    key_text,
    on_behalf_of,
    parse_key,
    parse_on_behalf_of,
    service_actor,
)
from kapflow.errors import InvalidInput, NotPermitted, Unauthenticated

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
KEY = ApiKey(id="0123456789ab", name="pms", role="front_desk", delegate_roles=("front_desk", "therapist"),
             created_at=NOW, created_by="os:admin", revoked_at=None, last4="wxyz")
GOOD = key_text("0123456789ab", bytes(range(32)))


def test_a_key_text_round_trips() -> None:
    """The text of a key parses back to its id and secret."""
    assert GOOD.text.startswith("kfk_0123456789ab_") and len(GOOD.secret) == 43
    assert parse_key(GOOD.text) == GOOD
    assert "secret=…" in repr(GOOD) and GOOD.secret not in repr(GOOD)


@pytest.mark.parametrize("text", [
    "", None, 42, "kfk_", GOOD.text + "A", GOOD.text[:-1], GOOD.text.upper(), " " + GOOD.text, GOOD.text + "\n",
    GOOD.text.replace("kfk_", "kfx_"), "kfk_0123456789AB_" + GOOD.secret, "kfk_0123456789a_" + GOOD.secret,
    GOOD.text[:-1] + "B",  # the last character's spare bits set: not a key this engine printed
    "kfk_0123456789ab_" + "+" * 43,
])
def test_malformed_keys_are_refused_without_quoting_them(text: object) -> None:
    """Anything but the exact form is ``malformed``, and the message never repeats it."""
    with pytest.raises(Unauthenticated) as caught:
        parse_key(text)
    assert caught.value.reason == "malformed"
    assert GOOD.secret not in caught.value.message


def test_key_ids_and_names_are_checked() -> None:
    """An id is 12 lowercase hex digits; a name is an identifier."""
    assert check_key_id("0123456789ab") == "0123456789ab"
    for bad in ("0123456789AB", "xyz", "", 5):
        with pytest.raises(InvalidInput):
            check_key_id(bad)
    assert check_key_name("pms-1") == "pms-1"
    for bad_name in ("", "-pms", "p ms", "x" * 201):
        with pytest.raises(InvalidInput):
            check_key_name(bad_name)


@pytest.mark.parametrize(("header", "expected"), [
    ("fd-avery; role=front_desk", ("fd-avery", "front_desk")),
    ("fd-avery;role=front_desk", ("fd-avery", "front_desk")),
    ("  u@pms.example ;  role = therapist ", ("u@pms.example", "therapist")),
])
def test_the_on_behalf_of_header_parses(header: str, expected: tuple[str, str]) -> None:
    """An id, a semicolon, and ``role=`` a role name, with optional blanks."""
    assert parse_on_behalf_of(header) == expected


@pytest.mark.parametrize("header", [
    "", "fd-avery", "fd-avery; front_desk", "fd-avery; role=", "; role=front_desk", "fd avery; role=front_desk",
    "fd-avery; role=front_desk; role=therapist", "fd-avery; role=front desk", "-fd; role=front_desk",
    "fd-avery; rank=front_desk", "fd-avery; role=1desk", "fd-avery\n; role=front_desk", None,
])
def test_a_malformed_on_behalf_of_header_is_invalid_input(header: object) -> None:
    """Anything else is ``InvalidInput`` (422) naming the header."""
    with pytest.raises(InvalidInput) as caught:
        parse_on_behalf_of(header)
    assert caught.value.field == "Kapflow-On-Behalf-Of"


def test_a_key_acts_for_a_person_in_a_role_it_was_granted() -> None:
    """The actor is the person, in the role, and names the service in ``via``."""
    actor = on_behalf_of(KEY, "th-jordan; role=therapist")
    assert (actor.id, actor.role, actor.via) == ("th-jordan", "therapist", "pms")


def test_a_key_cannot_delegate_a_role_it_was_not_granted() -> None:
    """Its own role is not a delegate role unless granted as one; the refusal (403) names what it may."""
    with pytest.raises(NotPermitted) as caught:
        on_behalf_of(KEY, "np-rowan; role=prescriber")
    assert caught.value.role == "prescriber" and caught.value.allowed == ("front_desk", "therapist")
    plain = ApiKey(id="0123456789ab", name="forms", role="front_desk", delegate_roles=(), created_at=NOW,
                   created_by="os:admin", revoked_at=None, last4="abcd")
    with pytest.raises(NotPermitted):
        on_behalf_of(plain, "fd-avery; role=front_desk")


def test_a_revoked_key_acts_for_nobody() -> None:
    """A revoked record is refused even if it reached the rule."""
    revoked = ApiKey(**{**KEY.__dict__, "revoked_at": NOW})
    with pytest.raises(Unauthenticated) as caught:
        on_behalf_of(revoked, "fd-avery; role=front_desk")
    assert caught.value.reason == "revoked"


def test_without_a_header_the_key_acts_as_itself() -> None:
    """The service's name in its role, via itself."""
    assert service_actor(KEY) == acting_actor(KEY, None)
    assert (service_actor(KEY).id, service_actor(KEY).role, service_actor(KEY).via) == ("pms", "front_desk", "pms")


def test_a_listing_shape_holds_no_secret() -> None:
    """``as_dict`` and ``hint`` show the id and the last four characters only."""
    assert KEY.hint == "kfk_0123456789ab_…wxyz"
    assert set(KEY.as_dict()) == {"id", "name", "role", "delegate_roles", "created_at", "created_by", "revoked_at",
                                  "revoked_by", "last4", "active"}
