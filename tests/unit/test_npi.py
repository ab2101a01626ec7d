"""NPIs: ten digits whose last is a Luhn check over 80840 and the first nine (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.domain.npi import npi_check_digit, npi_problem

CMS_EXAMPLE = "1234567893"  # the example in CMS's "Requirements for the NPI check digit"
VALID = ("1234567893", "1245319599")
DIGITS = "0123456789"

nine_digits = st.text(alphabet=DIGITS, min_size=9, max_size=9)


def luhn_valid(number: str) -> bool:
    """Whether a whole number passes Luhn, written independently of the module: from the right, every
    second digit doubled (its digits summed), and the total a multiple of ten."""
    total = 0
    for index, char in enumerate(reversed(number)):
        doubled = index % 2 == 1
        value = int(char) * (2 if doubled else 1)
        total += sum(divmod(value, 10))
    return total % 10 == 0


def cms_check_digit(first_nine: str) -> int:
    """CMS's shortcut for the same digit: double the alternate digits from the right of the nine, add every
    digit of the result, add 24 (what the prefix 80840 contributes), and take the distance to the next ten."""
    total = 24
    for index, char in enumerate(reversed(first_nine)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value // 10 + value % 10
    return -total % 10


def single_digit_changes(npi: str) -> list[str]:
    """Every number that differs from ``npi`` in exactly one digit (9 per position)."""
    return [npi[:i] + d + npi[i + 1:] for i in range(len(npi)) for d in DIGITS if d != npi[i]]


@pytest.mark.parametrize("npi", VALID)
def test_known_npis_are_valid(npi: str) -> None:
    """CMS's own example and a second known NPI pass."""
    assert npi_problem(npi) is None


def test_the_cms_example_check_digit_is_three() -> None:
    """The worked example: 123456789 has the check digit 3."""
    assert npi_check_digit(CMS_EXAMPLE[:9]) == 3


@pytest.mark.parametrize("nine", ["000000000", "999999999", "100000000", "123456789", "987654321", "124531959"])
def test_the_check_digit_agrees_with_independent_implementations(nine: str) -> None:
    """The module's digit is the one the whole-number Luhn check and CMS's 24 shortcut agree on."""
    digit = npi_check_digit(nine)
    assert digit == cms_check_digit(nine)
    assert luhn_valid("80840" + nine + str(digit))
    assert [d for d in DIGITS if luhn_valid("80840" + nine + d)] == [str(digit)]


def test_every_single_digit_change_of_a_valid_npi_is_caught() -> None:
    """All 90 numbers one digit away from CMS's example fail, each on its check digit."""
    changed = single_digit_changes(CMS_EXAMPLE)
    assert len(changed) == 90
    for npi in changed:
        problem = npi_problem(npi)
        assert problem is not None and "check digit" in problem, npi


@given(nine_digits)
def test_nine_digits_and_their_check_digit_make_a_valid_npi(nine: str) -> None:
    """Any nine digits followed by their check digit is a valid NPI, agreeing with CMS's shortcut."""
    digit = npi_check_digit(nine)
    assert digit == cms_check_digit(nine)
    assert npi_problem(nine + str(digit)) is None


@given(nine_digits, st.integers(min_value=0, max_value=9), st.integers(min_value=1, max_value=9))
def test_changing_one_digit_breaks_a_valid_npi(nine: str, position: int, shift: int) -> None:
    """Replacing any one digit of a valid NPI by another is caught."""
    npi = nine + str(npi_check_digit(nine))
    changed = npi[:position] + str((int(npi[position]) + shift) % 10) + npi[position + 1:]
    assert npi_problem(changed) is not None


@pytest.mark.parametrize("value", ["123456789", "12345678931", "1", "12345678901234567890"])
def test_a_wrong_length_is_refused(value: str) -> None:
    """Fewer or more than ten digits: the sentence says ten and how many there were."""
    problem = npi_problem(value)
    assert problem is not None and "10 digits" in problem and str(len(value)) in problem


@pytest.mark.parametrize("value", [
    "12345678A3", "A234567893", "123456789O", "1234-567893", " 1234567893", "1234567893\n", "123456789.3",
    "12345678９3",  # a full-width digit
    "12345678²3",  # str.isdigit() is true for it
    "-234567893", "+1234567893",
])
def test_anything_but_ascii_digits_is_refused(value: str) -> None:
    """Letters, spaces, punctuation and non-ASCII digits are refused, without repeating the value."""
    problem = npi_problem(value)
    assert problem is not None and "digits" in problem
    assert value.strip() not in problem


def test_an_empty_npi_is_refused() -> None:
    """An empty value asks for the NPI."""
    problem = npi_problem("")
    assert problem is not None and "empty" in problem


def test_problems_never_repeat_the_number() -> None:
    """A refused number is not echoed, in whole or in its first nine digits."""
    for value in ("1234567890", "123456789", "12345678901"):
        problem = npi_problem(value)
        assert problem is not None and value[:9] not in problem


@pytest.mark.parametrize("first_nine", ["12345678", "1234567890", "12345678A", "", "12345678²"])
def test_the_check_digit_needs_exactly_nine_digits(first_nine: str) -> None:
    """Anything but nine ASCII digits is a ValueError, not a digit computed from garbage."""
    with pytest.raises(ValueError, match="nine digits"):
        npi_check_digit(first_nine)
