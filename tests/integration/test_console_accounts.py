"""The console's local accounts and sessions on SQLite and PostgreSQL: signing in (and every way it is refused),
the rate limit, TOTP, idle timeout and sign-out, and every attempt recorded where the audit log covers it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from raw_db import RawDb

from kapflow.app.engine import Engine
from kapflow.audit import checkpoint_file
from kapflow.audit.log_verify import LogReport
from kapflow.audit.signing import Ed25519Signer, generate_key, load_verifiers
from kapflow.domain.case import Actor
from kapflow.errors import InvalidInput, Unauthenticated
from kapflow.testing import FakeClock

ADMIN = Actor("os:admin", "cli")
PASSWORD = "correct horse battery staple"
SOURCE = "192.0.2.7"
ORIGIN = "practice.example/kapflow-audit"
IDLE = timedelta(minutes=30)


@pytest.fixture
def raw(any_ready_url: str) -> Iterator[RawDb]:
    db = RawDb(any_ready_url)
    yield db
    db.close()


def _refused(engine: Engine, name: str, password: str, code: str | None = None, *, source: str = SOURCE,
             roles: tuple[str, ...] = ()) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as refused:
        engine.sign_in(name, password, code, source=source, totp_required_roles=roles)
    return refused.value


def _outcomes(engine: Engine) -> list[tuple[str, str | None, str]]:
    return [(a.name, a.source, str(a.outcome)) for a in engine.sign_in_attempts()]


def test_a_user_signs_in_and_the_session_is_found_by_its_token(engine: Engine, clock: FakeClock) -> None:
    user, secret = engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    assert secret is None and user.user_id.startswith("usr-") and not user.totp and user.created_by == "os:admin"
    token, session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    assert token.startswith("kfs_") and len(token) > 40
    assert (session.actor, session.role, session.via) == ("jordan", "therapist", "local")
    assert session.created_at == session.last_seen_at == clock.now() and len(session.csrf) >= 40
    found = engine.session(token, idle=IDLE)
    assert found == session
    assert engine.session("kfs_" + "x" * 43, idle=IDLE) is None and engine.session("nonsense", idle=IDLE) is None
    other, _ = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    assert other != token and engine.session(other, idle=IDLE).csrf != session.csrf  # type: ignore[union-attr]
    assert _outcomes(engine) == [("jordan", SOURCE, "ok"), ("jordan", SOURCE, "ok")]
    assert [u.name for u in engine.list_users()] == ["jordan"]


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(engine: Engine) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    wrong = _refused(engine, "jordan", PASSWORD + "!")
    unknown = _refused(engine, "nobody", PASSWORD)
    invalid = _refused(engine, "Not A Name", PASSWORD)
    assert wrong.reason == unknown.reason == invalid.reason == "bad_credentials"
    assert wrong.message == unknown.message == invalid.message
    assert _outcomes(engine) == [("jordan", SOURCE, "bad_credentials"), ("nobody", SOURCE, "bad_credentials"),
                                 ("(invalid)", SOURCE, "bad_credentials")]


def test_adding_users_is_checked(engine: Engine) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    with pytest.raises(InvalidInput, match="exists already"):
        engine.add_user("jordan", "front_desk", PASSWORD, totp=False, actor=ADMIN)
    with pytest.raises(InvalidInput, match="unknown role 'system'"):
        engine.add_user("robot", "system", PASSWORD, totp=False, actor=ADMIN)
    with pytest.raises(InvalidInput, match="unknown role 'janitor'; known roles: auditor, billing"):
        engine.add_user("jan", "janitor", PASSWORD, totp=False, actor=ADMIN)
    with pytest.raises(InvalidInput, match="at least 12"):
        engine.add_user("shorty", "therapist", "short", totp=False, actor=ADMIN)
    with pytest.raises(InvalidInput, match="3-64 characters"):
        engine.add_user("J", "therapist", PASSWORD, totp=False, actor=ADMIN)
    assert [u.name for u in engine.list_users()] == ["jordan"]


def test_the_rate_limit_kicks_in_after_five_failures_and_lifts_after_fifteen_minutes(
    engine: Engine, clock: FakeClock
) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    for _ in range(5):
        assert _refused(engine, "jordan", "wrong password!!").reason == "bad_credentials"
        clock.advance(timedelta(seconds=10))
    limited = _refused(engine, "jordan", PASSWORD)  # even the right password is not checked now
    assert limited.reason == "rate_limited" and "try again in 15 minutes" in limited.message
    clock.advance(timedelta(minutes=10))
    assert "try again in 5 minutes" in _refused(engine, "jordan", PASSWORD).message
    # Another name from another address is not held up by jordan's failures.
    engine.add_user("avery", "front_desk", PASSWORD, totp=False, actor=ADMIN)
    engine.sign_in("avery", PASSWORD, None, source="198.51.100.1")
    clock.advance(timedelta(minutes=5))  # 15 minutes after the first failure: one of five has left the window
    token, _session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    assert engine.session(token, idle=IDLE) is not None
    outcomes = [o for _n, _s, o in _outcomes(engine)]
    assert outcomes == ["bad_credentials"] * 5 + ["rate_limited"] * 2 + ["ok", "ok"]


def test_twenty_failures_from_one_address_pause_every_name_from_it(engine: Engine, clock: FakeClock) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    for number in range(20):
        _refused(engine, f"guess{number:02d}", PASSWORD)
    assert _refused(engine, "jordan", PASSWORD).reason == "rate_limited"
    engine.sign_in("jordan", PASSWORD, None, source="198.51.100.1")  # from elsewhere: fine
    clock.advance(timedelta(minutes=15))
    engine.sign_in("jordan", PASSWORD, None, source=SOURCE)


def test_totp_is_required_and_checked(engine: Engine, clock: FakeClock) -> None:
    user, secret = engine.add_user("jordan", "therapist", PASSWORD, totp=True, actor=ADMIN)
    assert secret is not None and user.totp
    assert _refused(engine, "jordan", PASSWORD).reason == "totp_required"
    assert _refused(engine, "jordan", PASSWORD, "").reason == "totp_required"
    code = pyotp.TOTP(secret).at(clock.now())
    wrong = "000000" if code != "000000" else "111111"
    assert _refused(engine, "jordan", PASSWORD, wrong).reason == "bad_totp"
    assert _refused(engine, "jordan", PASSWORD + "x", code).reason == "bad_credentials"  # the password comes first
    _token, session = engine.sign_in("jordan", PASSWORD, code, source=SOURCE)
    assert session.actor == "jordan"
    assert _refused(engine, "jordan", PASSWORD, code).reason == "bad_totp"  # a code is accepted once
    earlier = pyotp.TOTP(secret).at(clock.now() - timedelta(seconds=30))
    assert _refused(engine, "jordan", PASSWORD, earlier).reason == "bad_totp"  # nor an older one after it
    clock.advance(timedelta(minutes=15))  # the five failures above leave the rate limit's window
    assert _refused(engine, "jordan", PASSWORD, code).reason == "bad_totp"  # a stale code
    engine.sign_in("jordan", PASSWORD, pyotp.TOTP(secret).at(clock.now()), source=SOURCE)
    # A reset secret replaces the old one.
    fresh = engine.reset_totp("jordan", actor=ADMIN)
    assert fresh != secret
    assert _refused(engine, "jordan", PASSWORD, pyotp.TOTP(secret).at(clock.now())).reason == "bad_totp"
    engine.sign_in("jordan", PASSWORD, pyotp.TOTP(fresh).at(clock.now()), source=SOURCE)


def test_a_role_that_must_use_totp_is_refused_until_an_administrator_sets_it_up(
    engine: Engine, clock: FakeClock
) -> None:
    engine.add_user("pat", "prescriber", PASSWORD, totp=False, actor=ADMIN)
    refused = _refused(engine, "pat", PASSWORD, roles=("prescriber",))
    assert refused.reason == "totp_setup_required" and "kapflow user totp pat" in refused.message
    engine.sign_in("pat", PASSWORD, None, source=SOURCE)  # roles not required: fine
    secret = engine.reset_totp("pat", actor=ADMIN)
    assert _refused(engine, "pat", PASSWORD, roles=("prescriber",)).reason == "totp_required"
    engine.sign_in("pat", PASSWORD, pyotp.TOTP(secret).at(clock.now()), source=SOURCE,
                   totp_required_roles=("prescriber",))
    assert [o for _n, _s, o in _outcomes(engine)] == ["totp_setup_required", "ok", "totp_required", "ok"]


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(engine: Engine) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    token, _session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    disabled = engine.disable_user("jordan", actor=ADMIN)
    assert disabled.disabled_at is not None and not disabled.active
    assert engine.session(token, idle=IDLE) is None
    assert _refused(engine, "jordan", PASSWORD).reason == "disabled"
    assert _refused(engine, "jordan", "not the password").reason == "bad_credentials"  # tells nothing more
    with pytest.raises(InvalidInput, match="disabled already"):
        engine.disable_user("jordan", actor=ADMIN)
    with pytest.raises(InvalidInput, match="no console user"):
        engine.disable_user("nobody", actor=ADMIN)
    assert engine.list_users()[0].disabled_at is not None


def test_a_new_password_works_and_ends_the_sessions(engine: Engine) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    token, _session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    engine.set_password("jordan", "another long passphrase", actor=ADMIN)
    assert engine.session(token, idle=IDLE) is None
    assert _refused(engine, "jordan", PASSWORD).reason == "bad_credentials"
    engine.sign_in("jordan", "another long passphrase", None, source=SOURCE)
    with pytest.raises(InvalidInput, match="one character repeated"):
        engine.set_password("jordan", "z" * 16, actor=ADMIN)


def test_an_idle_session_ends_and_a_busy_one_is_written_at_most_every_30_seconds(
    engine: Engine, clock: FakeClock, raw: RawDb
) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    token, session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    stored = "SELECT last_seen_at, ended_at FROM console_sessions"
    first = raw.rows(stored)[0][0]
    clock.advance(timedelta(seconds=20))
    assert engine.session(token, idle=IDLE) == session  # not written: 20 seconds since
    assert raw.rows(stored)[0][0] == first
    clock.advance(timedelta(seconds=15))
    touched = engine.session(token, idle=IDLE)
    assert touched is not None and touched.last_seen_at == clock.now()
    assert raw.rows(stored)[0][0] != first
    clock.advance(timedelta(minutes=29))
    assert engine.session(token, idle=IDLE) is not None  # 29 minutes idle: still open (and touched)
    clock.advance(timedelta(minutes=30))
    assert engine.session(token, idle=IDLE) is None
    assert raw.rows(stored)[0][1] is not None
    assert engine.session(token, idle=timedelta(days=1)) is None  # ended stays ended
    assert _outcomes(engine) == [("jordan", SOURCE, "ok"), ("jordan", None, "idle_timeout")]


def test_signing_out_ends_the_session_once(engine: Engine) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    token, _session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    assert engine.sign_out(token, source=SOURCE)
    assert engine.session(token, idle=IDLE) is None
    assert not engine.sign_out(token) and not engine.sign_out("kfs_unknown" + "x" * 40)
    assert _outcomes(engine) == [("jordan", SOURCE, "ok"), ("jordan", SOURCE, "signed_out")]


def test_an_openid_session_has_no_password(engine: Engine) -> None:
    token, session = engine.open_session("auth0|abc123", "front_desk", via="oidc", source=SOURCE)
    assert (session.actor, session.role, session.via) == ("auth0|abc123", "front_desk", "oidc")
    assert engine.session(token, idle=IDLE) == session
    with pytest.raises(InvalidInput, match="via"):
        engine.open_session("someone", "front_desk", via="saml")
    with pytest.raises(InvalidInput, match="worker"):
        engine.open_session("someone", "system", via="oidc")
    assert engine.sign_out(token)
    assert _outcomes(engine) == [("auth0|abc123", SOURCE, "ok"), ("auth0|abc123", None, "signed_out")]


def test_attempts_are_queried_by_name_and_time(engine: Engine, clock: FakeClock) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    start = clock.now()
    _refused(engine, "jordan", "wrong password!!")
    clock.advance(timedelta(hours=1))
    engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    _refused(engine, "avery", PASSWORD)
    assert [str(a.outcome) for a in engine.sign_in_attempts(name="jordan")] == ["bad_credentials", "ok"]
    later = engine.sign_in_attempts(since=start + timedelta(minutes=1))
    assert [(a.name, str(a.outcome)) for a in later] == [("jordan", "ok"), ("avery", "bad_credentials")]
    assert len(engine.sign_in_attempts(until=start + timedelta(minutes=1))) == 1
    assert len(engine.sign_in_attempts(limit=2)) == 2
    assert engine.sign_in_attempts()[0].as_dict()["outcome"] == "bad_credentials"


def test_no_password_token_or_code_is_stored_anywhere(engine: Engine, clock: FakeClock, raw: RawDb) -> None:
    _user, secret = engine.add_user("jordan", "therapist", PASSWORD, totp=True, actor=ADMIN)
    assert secret is not None
    code = pyotp.TOTP(secret).at(clock.now())
    _refused(engine, "jordan", "my other secret phrase", code)
    _refused(engine, "jordan", PASSWORD, "654321" if code != "654321" else "123456")
    token, session = engine.sign_in("jordan", PASSWORD, code, source=SOURCE)
    engine.set_password("jordan", "second secret phrase", actor=ADMIN)
    engine.session(token, idle=IDLE)
    secrets_ = [PASSWORD, "my other secret phrase", "second secret phrase", token, token[4:]]
    dumped = "\n".join(repr(row) for table in ("console_users", "console_sessions", "sign_in_attempts",
                                              "log_entries") for row in raw.rows(f"SELECT * FROM {table}"))
    for text in secrets_:
        assert text not in dumped
    assert code not in "".join(repr(r) for r in raw.rows("SELECT * FROM sign_in_attempts"))
    assert session.csrf in dumped  # the CSRF token is the session's, kept with it
    engine.close()
    if raw.sqlite_path is not None:  # every byte of the file, free pages and the write-ahead log too
        data = b"".join(p.read_bytes() for p in Path(raw.sqlite_path).parent.glob(Path(raw.sqlite_path).name + "*"))
        for text in secrets_:
            assert text.encode() not in data


class Signed:
    def __init__(self, engine: Engine, folder: Path) -> None:
        private, self.public = generate_key("practice-example")
        self.file = folder / "checkpoints.jsonl"
        self.engine = engine
        self.checkpoint = engine.checkpointer(Ed25519Signer.from_text(private), origin=ORIGIN,
                                              publish=lambda records: checkpoint_file.publish(self.file, records))

    def verify(self) -> LogReport:
        opener = checkpoint_file.note_opener(load_verifiers(self.public))
        return self.engine.verify_log(checkpoint_file.read_lines(self.file), opener)


def test_attempts_are_placed_in_the_audit_log(engine: Engine, tmp_path: Path, raw: RawDb) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    _refused(engine, "jordan", "wrong password!!")
    token, _session = engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    engine.sign_out(token)
    assert engine.sequence_audit_log().placed == 3
    placed = raw.rows("SELECT id, log_position FROM sign_in_attempts ORDER BY id")
    assert len(placed) == 3 and all(position is not None for _id, position in placed)
    sources = raw.rows("SELECT source_id FROM log_entries WHERE source = 'sign_in' ORDER BY position")
    assert [int(i) for (i,) in sources] == [i for i, _p in placed]
    signed = Signed(engine, tmp_path)
    assert signed.checkpoint() is not None
    assert signed.verify().status == "ok"
    _refused(engine, "jordan", "wrong again!!!!")
    assert signed.verify().status == "not_yet_covered"


@pytest.mark.parametrize("tamper", ["delete", "edit_outcome", "edit_name", "edit_source", "edit_time"])
def test_editing_or_deleting_an_attempt_after_a_checkpoint_is_found(
    engine: Engine, tmp_path: Path, raw: RawDb, tamper: str
) -> None:
    engine.add_user("jordan", "therapist", PASSWORD, totp=False, actor=ADMIN)
    for _ in range(3):
        _refused(engine, "jordan", "wrong password!!")
    engine.sign_in("jordan", PASSWORD, None, source=SOURCE)
    signed = Signed(engine, tmp_path)
    assert signed.checkpoint() is not None and signed.verify().status == "ok"
    (attempt_id, position), = raw.rows(
        "SELECT id, log_position FROM sign_in_attempts WHERE outcome = 'bad_credentials' ORDER BY id LIMIT 1")
    statement = {  # an insider hides the failures before a break-in
        "delete": "DELETE FROM sign_in_attempts WHERE id = :i",
        "edit_outcome": "UPDATE sign_in_attempts SET outcome = 'ok' WHERE id = :i",
        "edit_name": "UPDATE sign_in_attempts SET name = 'avery' WHERE id = :i",
        "edit_source": "UPDATE sign_in_attempts SET source = '10.0.0.1' WHERE id = :i",
        "edit_time": "UPDATE sign_in_attempts SET at = '2025-01-01T00:00:00.000000+00:00' WHERE id = :i",
    }[tamper]
    raw.run((statement, {"i": attempt_id}))
    report = signed.verify()
    assert report.status == "failed", report.as_dict()
    first = report.problems[0]
    assert first.position == position and f"the sign_in (id {attempt_id})" in first.reason, report.as_dict()
    assert ("deleted" if tamper == "delete" else "edited") in first.reason
