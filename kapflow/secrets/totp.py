"""Time-based one-time passwords (RFC 6238) with pyotp: the ONLY importer of pyotp.

A secret is 160 random bits in base32 (what authenticator apps take); a code is 6 digits for a
30-second step, accepted one step early or late (``valid_window=1``) for clocks that drift.
``matched_step`` says which step a code is of, so a code accepted once is refused the second time
(RFC 6238 section 5.2: the caller keeps the last step used).
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import pyotp

ISSUER = "kapflow"
DIGITS = 6
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A new random secret, base32 (32 characters: 160 bits)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, name: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as text, or as a QR code) for ``name``."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def verify_code(secret: str, code: str | None, at: datetime) -> bool:
    """Whether ``code`` (6 digits, spaces ignored) is the code of ``secret`` at ``at``, or one step either side."""
    if code is None:
        return False
    digits = "".join(code.split())
    if not _CODE.fullmatch(digits):
        return False
    try:
        return bool(pyotp.TOTP(secret).verify(digits, for_time=at, valid_window=1))
    except (ValueError, TypeError):  # a secret that is no base32 (binascii.Error is a ValueError)
        return False


def matched_step(secret: str, code: str | None, at: datetime) -> int | None:
    """The time step (30-second count since 1970) whose code ``code`` is, within one step of ``at``; None if none."""
    if not verify_code(secret, code, at):
        return None
    assert code is not None
    digits = "".join(code.split())
    otp = pyotp.TOTP(secret)
    now = otp.timecode(at)
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(otp.generate_otp(step), digits):
            return step
    return None


def code_at(secret: str, at: datetime) -> str:
    """The code of ``secret`` at ``at`` (for tests and the demo)."""
    return pyotp.TOTP(secret).at(at)
