"""The console's local accounts, its sessions and the audited sign-in: commands and queries.

Accounts (``add_user``, ``disable_user``, ``set_password``, ``reset_totp``) are commands through the
runner like every other write. A password is kept only as its argon2id hash, made before the
transaction opens (hashing takes tens of milliseconds: the write lock is not held for it).

``sign_in`` checks, in order: the rate limit (``kapflow.domain.accounts.retry_at``: 5 failures for the
name, or 20 from the address, within 15 minutes pause sign-in), the password (an unknown name is
checked against a dummy hash, so the refusal takes as long and says the same), whether the account
is disabled, then the TOTP code when the account has TOTP or its role is one that must (a code is
accepted once: the time step of the last one used is kept, RFC 6238 section 5.2). Every
attempt is recorded in ``sign_in_attempts`` in a transaction of its own, committed before a
refusal is raised; the audit log covers those rows. Two attempts at the same instant can both pass
the rate limit's count: the limit is a brake on guessing, not a counter that must be exact.

A session is a random token the browser keeps (``kfs_`` and 32 random bytes); the database keeps its
SHA-256. ``session`` looks one up in one read; it writes only when the session has been idle too long
(it is ended, ``idle_timeout`` recorded) or its last-seen time is 30 seconds old or more.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NoReturn

from kapflow.app.api_keys import known_roles
from kapflow.app.command_input import check_actor_shape
from kapflow.app.context import AppContext
from kapflow.app.runner import Transaction
from kapflow.domain.access import check_limit, check_window
from kapflow.domain.accounts import (
    IDLE_TIMEOUT,
    MAX_PASSWORD,
    OIDC_NAME,
    RATE_WINDOW,
    SESSION_BYTES,
    SESSION_PREFIX,
    USER_ID_PREFIX,
    VIA_LOCAL,
    ConsoleSession,
    ConsoleUser,
    SignInAttempt,
    SignInOutcome,
    check_actor_id,
    check_login_name,
    check_password,
    check_session_role,
    check_source,
    check_via,
    is_login_name,
    looks_like_session_token,
    minutes_until,
    recorded_name,
    retry_at,
    session_token_hash,
)
from kapflow.domain.case import Actor
from kapflow.domain.errors import InvalidInput, Unauthenticated
from kapflow.domain.identity import check_role_name
from kapflow.domain.workflow import WORKER_ROLE
from kapflow.logging import get_logger
from kapflow.ports import StoredUser
from kapflow.secrets.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from kapflow.secrets.totp import matched_step, new_secret, provisioning_uri

DEFAULT_LIMIT = 1000

_log = get_logger("kapflow.accounts")

_MESSAGES = {
    SignInOutcome.BAD_CREDENTIALS: "the name or the password is wrong; check both and try again",
    SignInOutcome.TOTP_REQUIRED: "enter the 6-digit code your authenticator app shows for kapflow",
    SignInOutcome.BAD_TOTP: "the 6-digit code is wrong or expired; enter the code your authenticator app shows now",
    SignInOutcome.DISABLED: "this account is disabled; ask an administrator if you need it again",
}


# ------------------------------------------------------------------ accounts


def add_user(
    app: AppContext, name: str, role: str, password: str, *, totp: bool, actor: Actor,
) -> tuple[ConsoleUser, str | None]:
    """A new local account; returns it and, when ``totp``, its TOTP secret (shown once, to set up the app).

    ``InvalidInput`` (nothing written) for a malformed name, a role no loaded workflow names (or the
    worker's), a password the policy refuses, or a name taken already (by an active or a disabled user).
    """
    check_login_name(name)
    checked_role = _check_role(app, role)
    check_password(password)
    check_actor_shape(actor)
    hashed = hash_password(password)
    secret = new_secret() if totp else None

    def body(tx: Transaction) -> ConsoleUser:
        users = tx.uow.accounts()
        if users.find_user(name) is not None:
            raise InvalidInput(f"name: a console user named {name!r} exists already (names are never reused, even "
                               "after an account is disabled); choose another name", field="name")
        user = ConsoleUser(user_id=USER_ID_PREFIX + secrets.token_hex(8), name=name, role=checked_role,
                           created_at=tx.now(), disabled_at=None, totp=secret is not None, created_by=actor.id)
        users.add_user(user, hashed, secret)
        return user

    user = app.runner.run(body)
    _log.info("console_user_added", user_id=user.user_id, role=user.role, totp=user.totp, by=actor.id)
    return user, secret


def _check_role(app: AppContext, role: object) -> str:
    checked = check_role_name(role)
    known = known_roles(app) - {WORKER_ROLE}
    if checked not in known:
        raise InvalidInput(f"role: unknown role {checked!r}; known roles: {', '.join(sorted(known))}", field="role")
    return checked


def list_users(app: AppContext) -> list[ConsoleUser]:
    """Every local account, disabled ones too, by name: never a hash or a secret."""
    return app.store.accounts().users()


def disable_user(app: AppContext, name: str, *, actor: Actor) -> ConsoleUser:
    """Disable an account at once: its sessions end, and it cannot sign in again (its row stays)."""
    check_login_name(name)
    check_actor_shape(actor)

    def body(tx: Transaction) -> ConsoleUser:
        users = tx.uow.accounts()
        found = _existing(users.find_user(name), name)
        if found[0].disabled_at is not None:
            raise InvalidInput(f"name: the console user {name!r} is disabled already", field="name")
        users.disable_user(name, tx.now())
        users.end_sessions_of(name, VIA_LOCAL, tx.now())
        return replace(found[0], disabled_at=tx.now())

    user = app.runner.run(body)
    _log.info("console_user_disabled", user_id=user.user_id, by=actor.id)
    return user


def set_password(app: AppContext, name: str, password: str, *, actor: Actor) -> ConsoleUser:
    """Give an account a new password; its open sessions end (whoever knew the old one is signed out)."""
    check_login_name(name)
    check_password(password)
    check_actor_shape(actor)
    hashed = hash_password(password)

    def body(tx: Transaction) -> ConsoleUser:
        users = tx.uow.accounts()
        found = _existing(users.find_user(name), name)
        users.set_password(name, hashed)
        users.end_sessions_of(name, VIA_LOCAL, tx.now())
        return found[0]

    user = app.runner.run(body)
    _log.info("console_password_set", user_id=user.user_id, by=actor.id)
    return user


def reset_totp(app: AppContext, name: str, *, actor: Actor) -> str:
    """Give an account a new TOTP secret (the old one stops working); returns it, to be shown once."""
    check_login_name(name)
    check_actor_shape(actor)
    secret = new_secret()

    def body(tx: Transaction) -> ConsoleUser:
        users = tx.uow.accounts()
        found = _existing(users.find_user(name), name)
        users.set_totp(name, secret)
        return found[0]

    user = app.runner.run(body)
    _log.info("console_totp_reset", user_id=user.user_id, by=actor.id)
    return secret


def totp_uri(name: str, secret: str) -> str:
    """The ``otpauth://`` URI (issuer ``kapflow``) an authenticator app takes for ``name``'s secret."""
    return provisioning_uri(secret, name)


def _existing(found: StoredUser | None, name: str) -> StoredUser:
    if found is None:
        raise InvalidInput(f"name: no console user is named {name!r}; kapflow user list shows them", field="name")
    return found


# ------------------------------------------------------------------ signing in


def sign_in(
    app: AppContext, name: str, password: str, totp_code: str | None, *, source: str | None,
    totp_required_roles: Collection[str] = (),
) -> tuple[str, ConsoleSession]:
    """A new session for a local account: its token (for the browser's cookie, never stored) and the session.

    Refusals are ``Unauthenticated`` with the reason ``bad_credentials``, ``rate_limited``, ``disabled``,
    ``totp_setup_required``, ``totp_required`` or ``bad_totp``; each is recorded before it is raised.
    """
    checked_source = check_source(source)
    tried = recorded_name(name)
    now = app.clock.now()
    reads = app.store.accounts()
    by_name, by_source = reads.failures(tried, checked_source, now - RATE_WINDOW)
    later = retry_at(by_name, by_source, now)
    if later is not None:
        minutes = minutes_until(later, now)
        _refuse(app, tried, checked_source, SignInOutcome.RATE_LIMITED,
                f"too many failed sign-ins; try again in {minutes} minute{'s' if minutes != 1 else ''}")
    text = password if isinstance(password, str) and len(password) <= MAX_PASSWORD else ""
    stored = reads.find_user(name) if is_login_name(name) else None
    if stored is None:
        verify_password(dummy_hash(), text)  # as long as a known name's refusal takes
        _refuse(app, tried, checked_source, SignInOutcome.BAD_CREDENTIALS)
    user, hashed, secret = stored
    if not verify_password(hashed, text):
        _refuse(app, tried, checked_source, SignInOutcome.BAD_CREDENTIALS)
    if user.disabled_at is not None:
        _refuse(app, tried, checked_source, SignInOutcome.DISABLED)
    step: int | None = None
    if secret is not None or user.role in totp_required_roles:
        if secret is None:
            _refuse(app, tried, checked_source, SignInOutcome.TOTP_SETUP_REQUIRED,
                    "your role must sign in with a second factor (a TOTP code) and your account has none set up: "
                    f"ask an administrator to run `kapflow user totp {user.name}`")
        if not totp_code:
            _refuse(app, tried, checked_source, SignInOutcome.TOTP_REQUIRED)
        step = matched_step(secret, totp_code, now)
        if step is None:
            _refuse(app, tried, checked_source, SignInOutcome.BAD_TOTP)
    rehashed = hash_password(text) if needs_rehash(hashed) else None
    token, session = _new_session(user.name, user.role, VIA_LOCAL, now)

    def body(tx: Transaction) -> SignInOutcome:
        users = tx.uow.accounts()
        current = users.find_user(user.name)
        outcome = SignInOutcome.OK
        if current is None or current[0].disabled_at is not None:  # disabled meanwhile
            outcome = SignInOutcome.DISABLED
        elif step is not None and not users.use_totp_step(user.name, step):  # this code (or a later one) was used
            outcome = SignInOutcome.BAD_TOTP
        else:
            if rehashed is not None and current[1] == hashed:
                users.set_password(user.name, rehashed)
            users.add_session(session_token_hash(token), session)
        users.add_attempt(SignInAttempt(tx.now(), tried, checked_source, outcome))
        return outcome

    outcome = app.runner.run(body)
    if outcome is not SignInOutcome.OK:
        raise Unauthenticated(str(outcome), _MESSAGES[outcome])
    _log.info("console_signed_in", user_id=user.user_id, via=VIA_LOCAL, rehashed=rehashed is not None)
    return token, session


def _refuse(
    app: AppContext, name: str, source: str | None, outcome: SignInOutcome, message: str | None = None,
) -> NoReturn:
    """Record the refused attempt (committed on its own), then raise it."""

    def body(tx: Transaction) -> None:
        tx.uow.accounts().add_attempt(SignInAttempt(tx.now(), name, source, outcome))

    app.runner.run(body)
    _log.info("console_sign_in_refused", outcome=str(outcome))
    raise Unauthenticated(str(outcome), message if message is not None else _MESSAGES[outcome])


def record_oidc_refusal(app: AppContext, source: str | None) -> None:
    """Record a sign-in through the OpenID provider that was refused (its subject unverified, so unnamed)."""
    checked = check_source(source)

    def body(tx: Transaction) -> None:
        tx.uow.accounts().add_attempt(SignInAttempt(tx.now(), OIDC_NAME, checked, SignInOutcome.OIDC_REFUSED))

    app.runner.run(body)


def _new_session(actor_id: str, role: str, via: str, now: datetime) -> tuple[str, ConsoleSession]:
    token = SESSION_PREFIX + secrets.token_urlsafe(SESSION_BYTES)
    session = ConsoleSession(actor=actor_id, role=role, via=via, csrf=secrets.token_urlsafe(SESSION_BYTES),
                             created_at=now, last_seen_at=now)
    return token, session


def open_session(
    app: AppContext, actor_id: str, role: str, *, via: str, source: str | None = None,
) -> tuple[str, ConsoleSession]:
    """A session for someone the entry point signed in another way (an OpenID provider): recorded as ``ok``."""
    check_actor_id(actor_id)
    check_session_role(role)
    if role == WORKER_ROLE:
        raise InvalidInput(f"role: {WORKER_ROLE!r} is the worker's own; nobody signs in as it", field="role")
    checked_via = check_via(via)
    checked_source = check_source(source)
    token, session = _new_session(actor_id, role, checked_via, app.clock.now())

    def body(tx: Transaction) -> None:
        accounts = tx.uow.accounts()
        accounts.add_session(session_token_hash(token), session)
        accounts.add_attempt(SignInAttempt(tx.now(), actor_id, checked_source, SignInOutcome.OK))

    app.runner.run(body)
    _log.info("console_signed_in", via=checked_via)
    return token, session


def session(app: AppContext, token: str, *, idle: timedelta = IDLE_TIMEOUT) -> ConsoleSession | None:
    """The open session ``token`` names, its last-seen time now; None if unknown, ended or idle too long.

    An idle session is ended (``idle_timeout`` recorded). The last-seen time is written at most once per
    ``kapflow.domain.accounts.TOUCH_EVERY``: most of a page's requests only read.
    """
    if not isinstance(idle, timedelta) or idle <= timedelta(0):
        raise InvalidInput("idle: must be a positive duration", field="idle")
    if not looks_like_session_token(token):
        return None
    token_hash = session_token_hash(token)
    found = app.store.accounts().find_session(token_hash)
    if found is None or found[1] is not None:
        return None
    current, _ended = found
    now = app.clock.now()
    if current.idle_expired(now, idle):
        _end(app, token_hash, SignInOutcome.IDLE_TIMEOUT, None)
        return None
    if not current.needs_touch(now):
        return current

    def touch(tx: Transaction) -> bool:
        return tx.uow.accounts().touch_session(token_hash, now)

    if not app.runner.run(touch):  # ended meanwhile (signed out, disabled), or touched by another request
        again = app.store.accounts().find_session(token_hash)
        if again is None or again[1] is not None:
            return None
        return again[0]
    return replace(current, last_seen_at=now)


def sign_out(app: AppContext, token: str, *, source: str | None = None) -> bool:
    """End the session ``token`` names (``signed_out`` recorded); False if it was unknown or ended already."""
    checked_source = check_source(source)
    if not looks_like_session_token(token):
        return False
    return _end(app, session_token_hash(token), SignInOutcome.SIGNED_OUT, checked_source)


def _end(app: AppContext, token_hash: str, outcome: SignInOutcome, source: str | None) -> bool:
    def body(tx: Transaction) -> bool:
        accounts = tx.uow.accounts()
        found = accounts.find_session(token_hash)
        if found is None or not accounts.end_session(token_hash, tx.now()):
            return False
        accounts.add_attempt(SignInAttempt(tx.now(), found[0].actor, source, outcome))
        return True

    return app.runner.run(body)


def sign_in_attempts(
    app: AppContext, *, since: datetime | None = None, until: datetime | None = None, name: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[SignInAttempt]:
    """Sign-in attempts and session ends for ``name`` (None: anyone) from ``since`` (inclusive) to ``until``
    (exclusive), oldest first, at most ``limit``. Reads only."""
    if name is not None:
        check_actor_id(name)
    check_window(since, until)
    return app.store.accounts().attempts(name=name, since=since, until=until, limit=check_limit(limit))
