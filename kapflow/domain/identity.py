"""Who a service is and whom it may act for: API keys as records, their text form, and the delegation rule.

An API key's text is ``kfk_<id>_<secret>``: ``id`` is 12 lowercase hex digits (public: it names the
key in listings and the audit history), ``secret`` is 32 random bytes in URL-safe base64 without
padding (43 characters). Only a hash of the text is stored (``kapflow.app.api_keys``).

A key may act as itself (``service_actor``: its name, in its role) or, when it was granted
delegate roles, on behalf of a person of its system, named by the ``Kapflow-On-Behalf-Of`` header
(``user-id; role=front_desk``; ``on_behalf_of``), in one of those roles only. Either way the
``Actor`` carries the key's name in ``via``, and the audit event records it.

Pure: no I/O, no randomness (the application layer draws the secret).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from kapflow.domain.case import Actor
from kapflow.domain.errors import InvalidInput, NotPermitted, Unauthenticated

KEY_PREFIX = "kfk_"
ON_BEHALF_OF_HEADER = "Kapflow-On-Behalf-Of"
SECRET_BYTES = 32
DELEGATION = "on_behalf_of"  # the "trigger" a refused delegation names (NotPermitted)

_KEY = re.compile(r"kfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,49}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}")  # ``kapflow.domain.payload.check_identifier``'s rule
_BEHALF = re.compile(r"[ \t]*([^;\s]+)[ \t]*;[ \t]*role[ \t]*=[ \t]*([^;\s]+)[ \t]*")
ON_BEHALF_OF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}; ?role=[A-Za-z][A-Za-z0-9_]{0,49}$"
"""The header as the OpenAPI document declares it (the parser also takes spaces around ``;`` and ``=``)."""


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed: never its secret nor its hash. ``last4``: the secret's last four characters."""

    id: str
    name: str
    role: str
    delegate_roles: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last4: str
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def hint(self) -> str:
        """How a screen shows the key without revealing it: ``kfk_<id>_…abcd``."""
        return f"{KEY_PREFIX}{self.id}_…{self.last4}"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "role": self.role, "delegate_roles": list(self.delegate_roles),
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at is not None else None,
            "revoked_by": self.revoked_by, "last4": self.last4, "active": self.active,
        }


@dataclass(frozen=True)
class KeyText:
    """A key's text split into its public id and its secret (``parse_key``)."""

    id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{KEY_PREFIX}{self.id}_{self.secret}"

    def __repr__(self) -> str:  # never the secret, should one be logged
        return f"KeyText(id={self.id!r}, secret=…)"


def key_text(key_id: str, secret: bytes) -> KeyText:
    """The text form of a key from its id and its ``SECRET_BYTES`` random bytes."""
    if not _KEY_ID.fullmatch(key_id) or len(secret) != SECRET_BYTES:
        raise ValueError("a key id is 12 lowercase hex digits and a secret 32 bytes")
    return KeyText(key_id, base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii"))


def parse_key(text: object) -> KeyText:
    """A key's id and secret, or ``Unauthenticated("malformed")`` (the message never quotes the text)."""
    found = _KEY.fullmatch(text) if isinstance(text, str) else None
    if found is None or not _canonical_secret(found.group(2)):
        raise Unauthenticated(
            "malformed", "the API key is malformed: it is kfk_, 12 lowercase hex digits, _ and 43 characters of "
            "URL-safe base64; send the whole key exactly as it was shown when it was created",
        )
    return KeyText(found.group(1), found.group(2))


def _canonical_secret(secret: str) -> bool:
    """43 base64 characters are 258 bits: the last character's two spare bits must be zero."""
    try:
        raw = base64.urlsafe_b64decode(secret + "=")
    except (binascii.Error, ValueError):
        return False
    return len(raw) == SECRET_BYTES and base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == secret


def check_key_id(key_id: object) -> str:
    """A key's public id (12 lowercase hex digits), or ``InvalidInput``."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise InvalidInput("key id: must be the 12 lowercase hex digits a key listing shows", field="id")
    return key_id


def check_key_name(name: object) -> str:
    """A service's name: 1-200 letters, digits and ``_.:@-``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("name: must be 1-200 characters of letters, digits and _.:@- starting with a letter "
                           "or digit (the service's name, e.g. pms)", field="name")
    return name


def check_role_name(role: object, field: str = "role") -> str:
    """A role's name as workflows spell them (``front_desk``): a letter, then letters, digits and ``_``."""
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise InvalidInput(f"{field}: must be a role name (a letter, then letters, digits and _; at most 50)",
                           field=field)
    return role


def service_actor(key: ApiKey) -> Actor:
    """The key acting as itself: its name, in its role, via itself."""
    return Actor(key.name, key.role, via=key.name)


def parse_on_behalf_of(header_value: object) -> tuple[str, str]:
    """``user-id; role=ROLE`` as (user id, role), strictly; ``InvalidInput`` naming the header otherwise."""
    found = _BEHALF.fullmatch(header_value) if isinstance(header_value, str) else None
    if found is None or not _ID.fullmatch(found.group(1)) or not _ROLE.fullmatch(found.group(2)):
        raise InvalidInput(
            f"{ON_BEHALF_OF_HEADER}: must be 'USER-ID; role=ROLE': an id of 1-200 letters, digits and _.:@- "
            "starting with a letter or digit, and one role name", field=ON_BEHALF_OF_HEADER,
        )
    return found.group(1), found.group(2)


def on_behalf_of(key: ApiKey, header_value: str) -> Actor:
    """The person a key acts for, from its ``Kapflow-On-Behalf-Of`` header, in a role the key was granted.

    A malformed header is ``InvalidInput`` (422); a role the key may not delegate, ``NotPermitted``
    (403, naming the roles it may); a revoked key, ``Unauthenticated("revoked")``.
    """
    if not key.active:
        raise Unauthenticated("revoked", f"API key {key.id} was revoked; ask for a new key")
    user_id, role = parse_on_behalf_of(header_value)
    if role not in key.delegate_roles:
        raise NotPermitted(case_id="", trigger=DELEGATION, state="", role=role, allowed=key.delegate_roles)
    return Actor(user_id, role, via=key.name)


def acting_actor(key: ApiKey, header_value: str | None) -> Actor:
    """Who a request of ``key`` acts as: the person its header names, or the key itself without one."""
    return service_actor(key) if header_value is None else on_behalf_of(key, header_value)
