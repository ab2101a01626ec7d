"""The console accounts' pure rules: login names, the password policy, sessions' idle timeout and touch,
and the sign-in rate limit (5 failures per name, 20 per address, within 15 minutes)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from kapflow.domain.accounts import (
    INVALID_NAME,
    ConsoleSession,
    attempt_allowed,
    check_login_name,
    check_password,
    check_source,
    minutes_until,
    recorded_name,
    retry_at,
    session_token_hash,
)
from kapflow.errors import InvalidInput

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["abc", "jordan.lee", "th-1_x", "a" * 64])
def test_login_names_that_are_accepted(name: str) -> None:
    assert check_login_name(name) == name and recorded_name(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 65, "Jordan", "jo rdan", "jordan@x", "", None, 12])
def test_login_names_that_are_refused(name: object) -> None:
    with pytest.raises(InvalidInput, match="3-64 characters") as refused:
        check_login_name(name)
    assert refused.value.field == "name"
    assert recorded_name(name) == INVALID_NAME  # a password typed into the name field is never recorded


def test_the_password_policy_says_what_to_do() -> None:
    assert check_password("correct horse") == "correct horse"
    with pytest.raises(InvalidInput, match=r"too short \(11 characters\).*at least 12"):
        check_password("a" * 10 + "b")
    with pytest.raises(InvalidInput, match="one character repeated"):
        check_password("x" * 20)
    with pytest.raises(InvalidInput, match="too long"):
        check_password("ab" * 600)


def test_a_source_is_an_address_or_none() -> None:
    assert check_source("192.0.2.7") == "192.0.2.7" and check_source("2001:db8::1") == "2001:db8::1"
    assert check_source(None) is None
    with pytest.raises(InvalidInput):
        check_source("evil\nline")


def _at(*minutes_ago: float) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes_ago]


def test_four_failures_for_a_name_still_allow_an_attempt_five_do_not() -> None:
    assert attempt_allowed(_at(1, 2, 3, 4), [], NOW)
    assert not attempt_allowed(_at(1, 2, 3, 4, 5), [], NOW)
    # The oldest of the last five leaves the window 15 minutes after it happened.
    assert retry_at(_at(1, 2, 3, 4, 5), [], NOW) == NOW + timedelta(minutes=10)


def test_failures_older_than_the_window_do_not_count() -> None:
    assert attempt_allowed(_at(1, 2, 3, 4, 15), [], NOW)
    assert attempt_allowed(_at(16, 17, 18, 19, 20, 21), [], NOW)


def test_the_source_limit_is_twenty() -> None:
    twenty = [NOW - timedelta(seconds=s) for s in range(20)]
    assert attempt_allowed([], twenty[:19], NOW)
    assert not attempt_allowed([], twenty, NOW)
    assert retry_at([], twenty, NOW) == NOW - timedelta(seconds=19) + timedelta(minutes=15)


def test_retry_at_is_the_later_of_both_limits() -> None:
    by_name = _at(1, 2, 3, 4, 5)  # lifts in 10 minutes
    by_source = [NOW - timedelta(minutes=1)] * 20  # lifts in 14 minutes
    assert retry_at(by_name, by_source, NOW) == NOW + timedelta(minutes=14)
    assert retry_at(by_name, by_source, NOW, name_limit=10, source_limit=50) is None


def test_minutes_until_rounds_up() -> None:
    assert minutes_until(NOW + timedelta(seconds=61), NOW) == 2
    assert minutes_until(NOW + timedelta(minutes=10), NOW) == 10
    assert minutes_until(NOW, NOW) == 1


def test_a_session_s_idle_timeout_and_touch() -> None:
    session = ConsoleSession("jordan", "therapist", "local", "csrf-token", NOW, NOW)
    assert not session.idle_expired(NOW + timedelta(minutes=29), timedelta(minutes=30))
    assert session.idle_expired(NOW + timedelta(minutes=30), timedelta(minutes=30))
    assert not session.needs_touch(NOW + timedelta(seconds=29))
    assert session.needs_touch(NOW + timedelta(seconds=30))
    assert session.as_actor().id == "jordan" and session.as_actor().role == "therapist"
    assert "csrf-token" not in repr(session) and "csrf" not in session.as_dict()


def test_a_token_s_stored_form_is_its_sha256() -> None:
    assert session_token_hash("kfs_x") == hashlib.sha256(b"kfs_x").hexdigest()
    assert session_token_hash("kfs_a") != session_token_hash("kfs_b")
