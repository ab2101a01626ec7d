"""API keys on both databases: created once, verified from a cache, revoked, and named in the audit history."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import INQUIRY, dump_database, query

from kapflow.app.api_keys import ApiKeys, key_hash
from kapflow.app.engine import Engine
from kapflow.errors import InvalidInput, NotPermitted, Unauthenticated
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keyed(any_ready_url: str, clock: FakeClock) -> Iterator[Engine]:
    store = SqlStore(any_ready_url)
    built = Engine(store, KAP_PATHWAY, clock=clock)
    yield built
    store.close()


def test_create_authenticate_revoke_then_refused(keyed: Engine) -> None:
    """A new key verifies; once revoked it is refused at once in this process."""
    text, key = keyed.create_api_key("pms", "front_desk", ["front_desk"], created_by="admin")
    assert keyed.authenticate_api_key(text) == key
    assert keyed.authenticate_api_key(text) == key  # from the cache
    revoked = keyed.revoke_api_key(key.id, revoked_by="admin")
    assert revoked.revoked_at is not None and revoked.revoked_by == "admin"
    with pytest.raises(Unauthenticated) as caught:
        keyed.authenticate_api_key(text)
    assert caught.value.reason == "revoked" and text not in caught.value.message
    with pytest.raises(InvalidInput):
        keyed.revoke_api_key(key.id, revoked_by="admin")  # already revoked


def test_a_wrong_secret_or_an_unknown_id_is_unknown(keyed: Engine) -> None:
    """Another secret under a real id, or an id nobody has, is ``unknown_key``; a mangled key is ``malformed``."""
    text, _key = keyed.create_api_key("pms", "front_desk", created_by="admin")
    wrong_secret = text[:17] + ("A" if text[17] != "A" else "B") + text[18:]
    for attempt in (wrong_secret, "kfk_ffffffffffff_" + text[17:]):
        with pytest.raises(Unauthenticated) as caught:
            keyed.authenticate_api_key(attempt)
        assert caught.value.reason == "unknown_key" and text[17:] not in caught.value.message
    with pytest.raises(Unauthenticated) as caught:
        keyed.authenticate_api_key(text + "x")
    assert caught.value.reason == "malformed"


def test_listing_and_the_stored_row_hold_no_secret(keyed: Engine, any_ready_url: str) -> None:
    """The list shows ids, names, roles and the last four characters; the row holds the keyed hash only."""
    text, key = keyed.create_api_key("pms", "front_desk", ["therapist", "front_desk"], created_by="admin")
    secret = text[17:]
    listed = keyed.list_api_keys()
    assert listed == [key] and key.delegate_roles == ("front_desk", "therapist")
    assert secret not in repr(listed) and secret not in repr([k.as_dict() for k in listed])
    dumped = repr(dump_database(any_ready_url))
    assert secret not in dumped
    (stored,) = query(any_ready_url, "SELECT key_hash, last4 FROM api_keys")
    assert stored == (key_hash(text, b""), text[-4:])


def test_an_unknown_role_is_refused_and_nothing_is_written(keyed: Engine, any_ready_url: str) -> None:
    """The error lists the known roles; the worker's role cannot be given; no row is written."""
    for role, delegates in (("janitor", []), ("front_desk", ["janitor"]), ("system", [])):
        with pytest.raises(InvalidInput) as caught:
            keyed.create_api_key("pms", role, delegates, created_by="admin")
        assert "front_desk" in caught.value.message
    with pytest.raises(InvalidInput):
        keyed.create_api_key("bad name", "front_desk", created_by="admin")
    assert query(any_ready_url, "SELECT count(*) FROM api_keys") == [(0,)]


def test_a_name_is_never_reused(keyed: Engine) -> None:
    """A second key of one name is refused, even after the first was revoked."""
    _text, key = keyed.create_api_key("pms", "front_desk", created_by="admin")
    keyed.revoke_api_key(key.id, revoked_by="admin")
    with pytest.raises(InvalidInput) as caught:
        keyed.create_api_key("pms", "front_desk", created_by="admin")
    assert caught.value.field == "name"


def test_a_hot_key_costs_no_read_and_another_process_sees_a_revocation_within_the_ttl(
    any_ready_url: str, clock: FakeClock
) -> None:
    """Two engines (two processes): the one that did not revoke accepts the key until its cache entry expires."""
    ticks = Ticks()
    first, second = SqlStore(any_ready_url), SqlStore(any_ready_url)
    try:
        here, there = Engine(first, KAP_PATHWAY, clock=clock), Engine(second, KAP_PATHWAY, clock=clock)
        other = ApiKeys(there.app, ttl=30, monotonic=ticks)
        text, key = here.create_api_key("pms", "front_desk", created_by="admin")
        assert other.authenticate(text) == key
        reads = 0
        real = second.api_keys

        def counted() -> object:
            nonlocal reads
            reads += 1
            return real()

        second.api_keys = counted  # type: ignore[method-assign]
        assert other.authenticate(text) == key and reads == 0
        here.revoke_api_key(key.id, revoked_by="admin")
        assert other.authenticate(text) == key  # still cached: at most the TTL
        ticks.now = 31
        with pytest.raises(Unauthenticated):
            other.authenticate(text)
        assert reads == 1
    finally:
        first.close()
        second.close()


def test_the_cache_is_bounded(keyed: Engine) -> None:
    """No more entries than its size, however many ids are tried."""
    cache = ApiKeys(keyed.app, cache_size=3)
    text, _key = keyed.create_api_key("pms", "front_desk", created_by="admin")
    for i in range(10):
        with pytest.raises(Unauthenticated):
            cache.authenticate(f"kfk_{i:012x}_" + text[17:])
    assert len(cache._cache) == 3


def test_a_delegated_command_names_the_person_and_the_service(keyed: Engine) -> None:
    """The audit event's actor and role are the person's; its data's ``_via`` names the key's service."""
    text, _key = keyed.create_api_key("pms", "front_desk", ["front_desk"], created_by="admin")
    person = keyed.api_key_actor(text, "fd-avery; role=front_desk")
    outcome = keyed.open_case(INQUIRY, actor=person)
    (event,) = keyed.history(outcome.case_id)
    assert (event.actor, event.role, event.data["_via"]) == ("fd-avery", "front_desk", "pms")
    assert keyed.verify_audit(outcome.case_id).ok
    with pytest.raises(NotPermitted):
        keyed.api_key_actor(text, "np-rowan; role=prescriber")
    itself = keyed.api_key_actor(text)
    assert (itself.id, itself.role, itself.via) == ("pms", "front_desk", "pms")
