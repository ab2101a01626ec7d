"""Password hashes with argon2id (argon2-cffi): the ONLY importer of argon2.

A hash is the PHC string argon2 writes (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``): it names
its own parameters, so ``needs_rehash`` says when a stored hash was made with weaker ones than
today's and should be replaced at the next sign-in. argon2's exceptions become kapflow's: a wrong
password is ``False``, never an exception; a stored hash argon2 cannot read is a ``StorageError``.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import HashingError, InvalidHashError, VerificationError, VerifyMismatchError

from kapflow.domain.errors import KapflowError, StorageError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile)
_dummy: str | None = None


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``, with a fresh random salt."""
    try:
        return _hasher.hash(password)
    except HashingError as exc:
        raise KapflowError(f"hashing the password failed ({type(exc).__name__}); try again") from None


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored_hash`` was made from (in time independent of where they differ)."""
    try:
        return _hasher.verify(stored_hash, password)
    except VerifyMismatchError:
        return False
    except InvalidHashError:
        raise StorageError("a stored password hash is not an argon2 hash: set the password again "
                           "(kapflow user passwd NAME)") from None
    except VerificationError:
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's (rehash it at the next sign-in)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def dummy_hash() -> str:
    """A hash of a random password, made once per process: verified against when a name is unknown, so the
    time a refusal takes does not tell whether the name exists."""
    global _dummy
    if _dummy is None:
        _dummy = hash_password(secrets.token_urlsafe(24))
    return _dummy
