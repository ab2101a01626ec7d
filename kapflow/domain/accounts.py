"""The console's local accounts and signed-in sessions: pure data and their rules.

A practice without an OpenID provider signs its staff in to the web console with local accounts: a
login name, a role one of its workflows names, a password (only its argon2id hash is kept,
``kapflow.secrets.passwords``) and, when wanted, a TOTP second factor (``kapflow.secrets.totp``).
Every signed-in browser, local or OpenID, holds a server-side session: the browser keeps a random
token, the database only the token's SHA-256, so a copy of the database opens no session.

The rules here decide without side effects: a login name's shape, the password policy, a
session's idle timeout and when its last-seen time is worth writing, and the rate limit of
sign-in attempts (per name and per client address). Every attempt is kept as a ``SignInAttempt``
(never the password or a code), which the audit log covers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kapflow.domain.case import Actor
from kapflow.domain.errors import InvalidInput

USER_ID_PREFIX = "usr-"
SESSION_PREFIX = "kfs_"
SESSION_BYTES = 32
"""The random bytes of a session token (and of its CSRF token)."""

VIA_LOCAL = "local"
VIA_OIDC = "oidc"
VIAS = frozenset({VIA_LOCAL, VIA_OIDC})

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
"""Longer passwords are refused: hashing megabytes on request is a denial of service, not security."""

IDLE_TIMEOUT = timedelta(minutes=30)
"""A session's default idle timeout (the console may choose another)."""
TOUCH_EVERY = timedelta(seconds=30)
"""A session's last-seen time is written at most this often: a page's many requests are not a write each."""

NAME_LIMIT = 5
SOURCE_LIMIT = 20
RATE_WINDOW = timedelta(minutes=15)

INVALID_NAME = "(invalid)"
"""What an attempt records for a name that is no login name: it may be a password typed in the wrong field."""

_NAME = re.compile(r"[a-z0-9._-]{3,64}")
_SOURCE = re.compile(r"[A-Za-z0-9._:\[\]%-]{1,100}")
_ACTOR = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,49}")


class SignInOutcome(StrEnum):
    """What became of one attempt, or what ended a session."""

    OK = "ok"  # signed in: a session was opened (local or OpenID)
    BAD_CREDENTIALS = "bad_credentials"  # an unknown name or a wrong password (told apart nowhere)
    TOTP_REQUIRED = "totp_required"  # the password was right; the TOTP code is asked for
    TOTP_SETUP_REQUIRED = "totp_setup_required"  # the role needs TOTP and the account has none yet
    BAD_TOTP = "bad_totp"  # the password was right, the code wrong
    RATE_LIMITED = "rate_limited"  # too many failures for the name or the address: not checked
    DISABLED = "disabled"  # the right password of a disabled account
    SIGNED_OUT = "signed_out"  # a session ended by its user
    IDLE_TIMEOUT = "idle_timeout"  # a session ended by the idle timeout
    OIDC_REFUSED = "oidc_refused"  # a sign-in through the OpenID provider that did not verify (name: OIDC_NAME)


OIDC_NAME = "(openid)"
"""The name an OpenID sign-in that failed is recorded under: its subject was never verified."""


FAILURES = frozenset({SignInOutcome.BAD_CREDENTIALS, SignInOutcome.BAD_TOTP})
"""The outcomes the rate limit counts: guesses. A refused (rate-limited) attempt guessed nothing, so the
limit lifts at a fixed time however often a guesser knocks."""


def check_login_name(name: object) -> str:
    """A local account's login name: 3-64 characters of lowercase letters, digits and ``._-``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("name: a login name is 3-64 characters of lowercase letters, digits and . _ - "
                           "(e.g. jordan.lee)", field="name")
    return name


def is_login_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_password(password: object) -> str:
    """The password policy: at least 12 characters, not all one character, at most 1024."""
    if not isinstance(password, str):
        raise InvalidInput("password: must be text", field="password")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password: too short ({len(password)} characters); choose one of at least "
                           f"{MIN_PASSWORD} characters: a few unrelated words make a good one", field="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password: too long; choose one of at most {MAX_PASSWORD} characters",
                           field="password")
    if len(set(password)) == 1:
        raise InvalidInput("password: is one character repeated; choose one of at least "
                           f"{MIN_PASSWORD} characters that are not all the same", field="password")
    return password


def check_source(source: object) -> str | None:
    """The client's address as the entry point saw it (IPv4, IPv6, a host name), or None when unknown."""
    if source is None:
        return None
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise InvalidInput("source: must be the client's address (1-100 characters of letters, digits and ._:[]%-)",
                           field="source")
    return source


def check_via(via: object) -> str:
    if via not in VIAS:
        raise InvalidInput(f"via: must be one of {', '.join(sorted(VIAS))}", field="via")
    assert isinstance(via, str)
    return via


def check_actor_id(actor_id: object) -> str:
    """Who a session is for: a login name, or an OpenID subject (1-200 characters, no control characters)."""
    if not isinstance(actor_id, str) or not _ACTOR.fullmatch(actor_id):
        raise InvalidInput("actor_id: must be 1-200 characters without control characters", field="actor_id")
    return actor_id


def check_session_role(role: object) -> str:
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise InvalidInput("role: must be a role name (a letter, then letters, digits and _; at most 50)",
                           field="role")
    return role


def recorded_name(name: object) -> str:
    """The name an attempt records: the name tried when it is a login name, else ``INVALID_NAME``."""
    return name if isinstance(name, str) and is_login_name(name) else INVALID_NAME


def session_token_hash(token: str) -> str:
    """What the database keeps of a session token: its hex SHA-256 (the token is 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_session_token(token: object) -> bool:
    return isinstance(token, str) and token.startswith(SESSION_PREFIX) and 40 <= len(token) <= 100


@dataclass(frozen=True)
class ConsoleUser:
    """A local account of the console: never its password hash or its TOTP secret."""

    user_id: str  # usr-<hex>
    name: str  # the login name
    role: str
    created_at: datetime
    disabled_at: datetime | None
    totp: bool  # whether a TOTP secret is set up
    created_by: str = ""

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id, "name": self.name, "role": self.role, "totp": self.totp,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at is not None else None,
            "active": self.active,
        }


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: who (a login name, or an OpenID subject), in which role, signed in how.

    ``csrf`` is the session's own random token: every form the console posts carries it.
    """

    actor: str  # the login name (local), or the OpenID subject (oidc)
    role: str
    via: str  # local | oidc
    csrf: str
    created_at: datetime
    last_seen_at: datetime

    def as_actor(self) -> Actor:
        """The actor the session's commands are made as."""
        return Actor(self.actor, self.role)

    def idle_expired(self, now: datetime, idle: timedelta) -> bool:
        """Whether nothing was seen of the session for ``idle`` or longer."""
        return now - self.last_seen_at >= idle

    def needs_touch(self, now: datetime) -> bool:
        """Whether ``now`` is worth writing as its last-seen time (at most once per ``TOUCH_EVERY``)."""
        return now - self.last_seen_at >= TOUCH_EVERY

    def __repr__(self) -> str:  # never the CSRF token, should one be logged
        return (f"ConsoleSession(actor={self.actor!r}, role={self.role!r}, via={self.via!r}, "
                f"created_at={self.created_at.isoformat()!r}, last_seen_at={self.last_seen_at.isoformat()!r})")

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready body, without the CSRF token."""
        return {"actor": self.actor, "role": self.role, "via": self.via,
                "created_at": self.created_at.isoformat(), "last_seen_at": self.last_seen_at.isoformat()}


@dataclass(frozen=True)
class SignInAttempt:
    """One sign-in attempt or session end as kept (and covered by the audit log): never a password or a code.

    ``name``: the login name tried (``INVALID_NAME`` if it was none), or the session's actor for a
    sign-out or an idle timeout; ``source``: the client's address, None when the entry point gave none.
    """

    at: datetime
    name: str
    source: str | None
    outcome: SignInOutcome
    id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at.isoformat(), "name": self.name, "source": self.source,
                "outcome": str(self.outcome)}


def retry_at(
    name_failures: Iterable[datetime], source_failures: Iterable[datetime], now: datetime, *,
    name_limit: int = NAME_LIMIT, source_limit: int = SOURCE_LIMIT, window: timedelta = RATE_WINDOW,
) -> datetime | None:
    """The rate limit: None if another attempt is allowed ``now``, else when the next one will be.

    An attempt is refused while ``name_limit`` failures for the name, or ``source_limit`` for the
    client's address, fall within the ``window`` before ``now``. It is allowed again once enough of
    them are older than the window.
    """
    later: datetime | None = None
    for failures, limit in ((name_failures, name_limit), (source_failures, source_limit)):
        recent = sorted(t for t in failures if now - window < t <= now)
        if len(recent) >= limit:
            # Allowed once all but limit - 1 of them have left the window.
            lifts = recent[len(recent) - limit] + window
            later = lifts if later is None else max(later, lifts)
    return later


def attempt_allowed(
    name_failures: Iterable[datetime], source_failures: Iterable[datetime], now: datetime, *,
    name_limit: int = NAME_LIMIT, source_limit: int = SOURCE_LIMIT, window: timedelta = RATE_WINDOW,
) -> bool:
    """Whether another sign-in attempt is allowed ``now`` (``retry_at`` says until when it is not)."""
    return retry_at(name_failures, source_failures, now, name_limit=name_limit, source_limit=source_limit,
                    window=window) is None


def minutes_until(moment: datetime, now: datetime) -> int:
    """Whole minutes from ``now`` to ``moment``, rounded up (at least 1): what a refusal tells the person."""
    seconds = (moment - now).total_seconds()
    return max(1, int(-(-seconds // 60)))
