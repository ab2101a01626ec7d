"""API keys' commands (create, revoke), their listing, and verifying a request's key.

A key is shown once, when it is created, and only a hash of it is kept: the hex HMAC-SHA256 of
the whole key text under the practice's pepper (``KAPFLOW_API_KEY_PEPPER``, UTF-8; empty when
unset). The pepper lives outside the database, so a copy of the database alone cannot test
guesses; changing it invalidates every key. A key is 256 random bits, so a fast keyed hash is
enough (a password hash would add milliseconds to every request and no safety).

Verifying costs no database read when the key is hot: ``ApiKeys`` keeps the stored records (never
a secret) of up to ``cache_size`` key ids for ``ttl`` seconds, least recently used first out. A
revocation takes effect at once in the process that made it and within ``ttl`` in every other.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from kapflow.app.context import AppContext
from kapflow.app.runner import Transaction
from kapflow.domain.case import Actor
from kapflow.domain.errors import InvalidInput, Unauthenticated
from kapflow.domain.identity import (
    SECRET_BYTES,
    ApiKey,
    KeyText,
    acting_actor,
    check_key_id,
    check_key_name,
    check_role_name,
    key_text,
    parse_key,
)
from kapflow.domain.payload import check_identifier
from kapflow.domain.workflow import WORKER_ROLE
from kapflow.logging import get_logger
from kapflow.ports import StoredApiKey

PEPPER_ENV = "KAPFLOW_API_KEY_PEPPER"
CACHE_SIZE = 1024
CACHE_TTL = 30.0  # seconds: how long another process may still accept a key revoked here

_log = get_logger("kapflow.api_keys")


def pepper_from_env() -> bytes:
    """The pepper the keys' hashes are keyed with: ``$KAPFLOW_API_KEY_PEPPER`` (empty when unset)."""
    return os.environ.get(PEPPER_ENV, "").encode("utf-8")


def key_hash(text: str, pepper: bytes) -> str:
    """The stored form of a key: hex HMAC-SHA256 of its text under ``pepper``."""
    return hmac.new(pepper, text.encode("ascii"), hashlib.sha256).hexdigest()


def known_roles(app: AppContext) -> frozenset[str]:
    """The roles a key may be given: those the loaded workflows name, but the worker's own."""
    return frozenset().union(*(wf.roles for wf in app.workflows.versions())) - {WORKER_ROLE}


def _check_roles(app: AppContext, role: object, delegate_roles: Iterable[object]) -> tuple[str, tuple[str, ...]]:
    known = known_roles(app)
    listed = ", ".join(sorted(known))
    checked = check_role_name(role)
    if checked not in known:
        raise InvalidInput(f"role: unknown role {checked!r}; known roles: {listed}", field="role")
    if isinstance(delegate_roles, str):
        raise InvalidInput("delegate_roles: must be a list of role names", field="delegate_roles")
    delegates = sorted({check_role_name(r, "delegate_roles") for r in delegate_roles})
    unknown = [r for r in delegates if r not in known]
    if unknown:
        raise InvalidInput(f"delegate_roles: unknown role {unknown[0]!r}; known roles: {listed}",
                           field="delegate_roles")
    return checked, tuple(delegates)


def create_api_key(
    app: AppContext, name: str, role: str, delegate_roles: Iterable[str], created_by: str, *,
    pepper: bytes | None = None,
) -> tuple[str, ApiKey]:
    """A new key for the service ``name`` acting in ``role`` (and for people in ``delegate_roles``).

    Returns the key's text, to be shown once and never again, and its record. An unknown role or a
    name already taken (by an active or a revoked key) is ``InvalidInput``; nothing is written then.
    """
    check_key_name(name)
    checked_role, delegates = _check_roles(app, role, delegate_roles)
    check_identifier(created_by, "created_by")
    salt = pepper if pepper is not None else pepper_from_env()

    def body(tx: Transaction) -> tuple[str, ApiKey]:
        keys = tx.uow.api_keys()
        if keys.find_by_name(name) is not None:
            raise InvalidInput(f"name: an API key named {name!r} exists already (names are never reused, even "
                               "after a revocation); choose another name", field="name")
        text = _fresh_text(keys.find)
        record = ApiKey(id=text.id, name=name, role=checked_role, delegate_roles=delegates, created_at=tx.now(),
                        created_by=created_by, revoked_at=None, last4=text.secret[-4:])
        keys.add(record, key_hash(text.text, salt))
        return text.text, record

    text, record = app.runner.run(body)
    _log.info("api_key_created", key_id=record.id, role=record.role, delegates=len(record.delegate_roles))
    return text, record


def _fresh_text(find: Callable[[str], StoredApiKey | None]) -> KeyText:
    """A key whose id no key has (48 random bits: a collision is rare, and then drawn again)."""
    while True:
        candidate = key_text(secrets.token_hex(6), secrets.token_bytes(SECRET_BYTES))
        if find(candidate.id) is None:
            return candidate


def list_api_keys(app: AppContext) -> list[ApiKey]:
    """Every key, revoked ones too, oldest first: never a secret or a hash."""
    return app.store.api_keys().list()


def revoke_api_key(app: AppContext, key_id: str, revoked_by: str) -> ApiKey:
    """Revoke a key at once (its row stays, naming who revoked it and when); the key as it is now.

    ``InvalidInput`` if no key has that id or it was revoked already.
    """
    check_key_id(key_id)
    check_identifier(revoked_by, "revoked_by")

    def body(tx: Transaction) -> ApiKey:
        keys = tx.uow.api_keys()
        found = keys.find(key_id)
        if found is None:
            raise InvalidInput(f"no API key with id {key_id!r}; list the keys to find its id", field="id")
        if found[0].revoked_at is not None:
            raise InvalidInput(f"API key {key_id} was revoked already", field="id")
        keys.revoke(key_id, tx.now(), revoked_by)
        stored = keys.find(key_id)
        assert stored is not None
        return stored[0]

    revoked = app.runner.run(body)
    _log.info("api_key_revoked", key_id=key_id)
    return revoked


_UNKNOWN = "no API key matches this one; check that it was copied whole, or ask for a new key"


def verified(stored: StoredApiKey | None, text: KeyText, pepper: bytes) -> ApiKey:
    """The key ``text`` names if its hash matches and it is active, else ``Unauthenticated``."""
    expected = stored[1] if stored is not None else "0" * 64
    matches = hmac.compare_digest(key_hash(text.text, pepper), expected)  # the same work when unknown
    if stored is None or not matches:
        raise Unauthenticated("unknown_key", _UNKNOWN)
    if stored[0].revoked_at is not None:
        raise Unauthenticated("revoked", f"API key {stored[0].id} was revoked; ask for a new key")
    return stored[0]


class ApiKeys:
    """API keys of one engine: its commands, and verification through a bounded, short-lived cache."""

    def __init__(
        self, app: AppContext, *, pepper: bytes | None = None, cache_size: int = CACHE_SIZE, ttl: float = CACHE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pepper``: else ``$KAPFLOW_API_KEY_PEPPER``, read once here. ``monotonic``: the cache's clock
        (seconds; tests pass a fake one)."""
        if cache_size < 0 or ttl < 0:
            raise ValueError("cache_size and ttl must not be negative")
        self._app = app
        self._pepper = pepper if pepper is not None else pepper_from_env()
        self._size = cache_size
        self._ttl = ttl
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, StoredApiKey | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._forgotten = 0  # how many times an entry was dropped: a read that saw one change caches nothing

    def create(
        self, name: str, role: str, delegate_roles: Iterable[str] = (), *, created_by: str
    ) -> tuple[str, ApiKey]:
        text, record = create_api_key(self._app, name, role, delegate_roles, created_by, pepper=self._pepper)
        self._forget(record.id)  # an unknown id remembered before is known now
        return text, record

    def list(self) -> list[ApiKey]:
        return list_api_keys(self._app)

    def revoke(self, key_id: str, *, revoked_by: str) -> ApiKey:
        try:
            return revoke_api_key(self._app, key_id, revoked_by)
        finally:
            self._forget(key_id)  # refused here from now on, whatever the cache held

    def authenticate(self, text: object) -> ApiKey:
        """The active key ``text`` is, or ``Unauthenticated`` (``malformed``, ``unknown_key``, ``revoked``)."""
        parsed = parse_key(text)
        return verified(self._stored(parsed.id), parsed, self._pepper)

    def actor(self, text: object, on_behalf_of: str | None = None) -> Actor:
        """Who a request acts as: the person its ``Kapflow-On-Behalf-Of`` header names, else the key itself."""
        return acting_actor(self.authenticate(text), on_behalf_of)

    def _stored(self, key_id: str) -> StoredApiKey | None:
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key_id)
                return hit[1]
            generation = self._forgotten
        stored = self._app.store.api_keys().find(key_id)
        if self._size:
            with self._lock:
                if generation != self._forgotten:  # a revocation here may have raced this read: keep nothing
                    return stored
                self._cache[key_id] = (now + self._ttl, stored)
                self._cache.move_to_end(key_id)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return stored

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)
            self._forgotten += 1

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
