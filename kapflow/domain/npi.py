"""National Provider Identifiers (NPIs): is a number well formed, before it goes on a superbill.

A claim with a mistyped NPI is rejected by the payer weeks later; checking the form when the number is
entered catches most typos at once. An NPI is 10 digits, the last a check digit: the Luhn algorithm
(ISO/IEC 7812) over the prefix 80840 (the issuer prefix for US health applications) followed by the
first nine digits, as CMS specifies ("Requirements for the NPI check digit"). The Luhn check catches
every single mistyped digit, and every swap of two adjacent digits but 09 and 90.

What the number cannot tell: whether it was ever issued, whom it names, and whether that is an
individual (type 1) or an organization (type 2). Both types are drawn from one number space, so the
type is not in the digits; only the NPI registry (NPPES) knows it.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

import re

NPI_LENGTH = 10
HEALTH_ISSUER_PREFIX = "80840"  # prepended before the Luhn check, per CMS

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²" and other scripts' digits


def npi_problem(value: str) -> str | None:
    """None when ``value`` is a well-formed NPI; else a sentence saying what is wrong and what to do.

    The value is taken as given (no spaces or dashes are removed): the caller stores what was checked.
    The sentence never repeats the value, so it may be logged or shown beside other fields.
    """
    if not value:
        return "is empty: give the provider's 10-digit NPI"
    if not _DIGITS.fullmatch(value):
        return "must be 10 digits (0-9) only, with no spaces, dashes or letters"
    if len(value) != NPI_LENGTH:
        return f"must be 10 digits, not {len(value)}: check for a missing or extra digit"
    if npi_check_digit(value[:-1]) != int(value[-1]):
        return (
            "fails its check digit: an NPI's last digit is a Luhn check over 80840 and its first nine digits; "
            "check for a mistyped digit"
        )
    return None


def npi_check_digit(first_nine: str) -> int:
    """The check digit (the tenth digit) of the NPI whose first nine digits are ``first_nine``.

    Raises ``ValueError`` unless ``first_nine`` is exactly nine ASCII digits.
    """
    if len(first_nine) != NPI_LENGTH - 1 or not _DIGITS.fullmatch(first_nine):
        raise ValueError("an NPI's check digit is computed from exactly nine digits (0-9)")
    return _luhn_check_digit(HEALTH_ISSUER_PREFIX + first_nine)


def _luhn_check_digit(payload: str) -> int:
    """The digit that, appended to ``payload``, makes the Luhn sum a multiple of 10."""
    total = 0
    # Counting from the right of the payload, the digit beside the check digit is doubled, then every second one.
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9  # the sum of a two-digit product's digits
        total += digit
    return (10 - total % 10) % 10
