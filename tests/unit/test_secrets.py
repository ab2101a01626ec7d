"""The two credential libraries behind kapflow.secrets: argon2id password hashes and TOTP codes (pyotp)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher

from kapflow.errors import StorageError
from kapflow.secrets import passwords, totp

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_password_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = passwords.hash_password("correct horse battery"), passwords.hash_password("correct horse battery")
    assert first.startswith("$argon2id$") and first != second  # a fresh salt each time
    assert "correct horse" not in first
    assert passwords.verify_password(first, "correct horse battery")
    assert not passwords.verify_password(first, "correct horse battery!")
    assert not passwords.verify_password(first, "")
    assert not passwords.needs_rehash(first)


def test_a_hash_made_with_weaker_parameters_needs_a_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("correct horse battery")
    assert passwords.verify_password(weak, "correct horse battery")
    assert passwords.needs_rehash(weak)


def test_a_stored_hash_argon2_cannot_read_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="not an argon2 hash"):
        passwords.verify_password("plain-text-password", "plain-text-password")


def test_the_dummy_hash_is_made_once() -> None:
    assert passwords.dummy_hash() is passwords.dummy_hash()
    assert not passwords.verify_password(passwords.dummy_hash(), "")


def test_a_totp_code_verifies_one_step_either_side_only() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32 and secret != totp.new_secret()
    code = pyotp.TOTP(secret).at(AT)
    assert totp.verify_code(secret, code, AT)
    assert totp.verify_code(secret, code[:3] + " " + code[3:], AT)
    assert totp.verify_code(secret, code, AT + timedelta(seconds=30))
    assert not totp.verify_code(secret, code, AT + timedelta(seconds=90))
    assert not totp.verify_code(secret, None, AT) and not totp.verify_code(secret, "12345", AT)
    assert not totp.verify_code(secret, "abcdef", AT)
    assert not totp.verify_code("not base32!", "123456", AT)


def test_the_provisioning_uri_names_kapflow_and_the_user() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "jordan.lee")
    assert uri.startswith("otpauth://totp/kapflow:jordan.lee?") and "issuer=kapflow" in uri
    assert f"secret={secret}" in uri


@pytest.mark.parametrize(("library", "module"), [("argon2", "passwords.py"), ("pyotp", "totp.py")])
def test_each_library_is_imported_in_one_module(library: str, module: str) -> None:
    importers = set()
    for path in (ROOT / "kapflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == library or n.startswith(library + ".") for n in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers == {f"kapflow/secrets/{module}"}


def test_the_matched_step_is_the_code_s_own() -> None:
    secret = totp.new_secret()
    otp = pyotp.TOTP(secret)
    now = otp.timecode(AT)
    assert totp.matched_step(secret, otp.at(AT), AT) == now
    assert totp.matched_step(secret, otp.at(AT - timedelta(seconds=30)), AT) == now - 1
    assert totp.matched_step(secret, otp.at(AT + timedelta(seconds=30)), AT) == now + 1
    assert totp.matched_step(secret, otp.at(AT + timedelta(seconds=90)), AT) is None
    assert totp.matched_step(secret, None, AT) is None
