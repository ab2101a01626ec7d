"""The payload policy every piece of caller data obeys before anything is written."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from strategies import FORBIDDEN_CONTROLS, policy_texts, texts_with_forbidden_control

from kapflow.domain.errors import InvalidInput
from kapflow.domain.payload import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_BYTES,
    canonical_json,
    check_identifier,
    check_payload,
    check_text,
)


def refused_text(value: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        check_text(value, "note")
    assert info.value.field == "note"
    return info.value


def refused_payload(data: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        check_payload(data)
    return info.value


def nest(levels: int) -> Any:
    """A leaf string wrapped in ``levels`` objects: the leaf sits at depth ``levels``."""
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


# --- text ------------------------------------------------------------------------------------


def test_tab_newline_and_carriage_return_are_allowed() -> None:
    """Tab, newline and carriage return are ordinary text."""
    text = "line one\r\nline two\tindented\n"
    assert check_text(text, "note") == text


def test_nul_is_refused() -> None:
    """NUL is refused, named by its code point."""
    err = refused_text("before\x00after")
    assert "U+0000" in err.message
    assert err.message.startswith("note: ")


@pytest.mark.parametrize("char", FORBIDDEN_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_are_refused(char: str) -> None:
    """Every C0 control character but tab, LF and CR, and DEL, is refused."""
    err = refused_text(f"a{char}b")
    assert f"U+{ord(char):04X}" in err.message


@pytest.mark.parametrize("char", ["\x85", "\x9b"], ids=["U+0085", "U+009B"])
def test_c1_control_characters_are_refused(char: str) -> None:
    """C1 control characters are control characters too and are refused."""
    refused_text(f"a{char}b")


def test_lone_surrogate_is_refused_as_invalid_input() -> None:
    """A lone surrogate cannot be stored as UTF-8 and is refused as invalid input."""
    refused_text(json.loads('"abc\\ud800"'))


@given(policy_texts())
def test_acceptable_text_is_returned_unchanged(text: str) -> None:
    """Any text without refused characters comes back exactly as given."""
    assert check_text(text, "note") == text


@given(texts_with_forbidden_control())
def test_text_with_any_forbidden_control_is_refused(text: str) -> None:
    """Inserting one refused control character anywhere makes the text invalid."""
    with pytest.raises(InvalidInput):
        check_text(text, "note")


def test_limit_is_64_kib_of_ascii() -> None:
    """65,536 ASCII characters pass; one more is refused."""
    assert MAX_TEXT_BYTES == 65536
    assert len(check_text("a" * 65536, "note")) == 65536
    assert "64 KiB" in refused_text("a" * 65537).message


@pytest.mark.parametrize(("char", "width"), [("é", 2), ("€", 3), ("😀", 4)])
def test_limit_counts_utf8_bytes_not_characters(char: str, width: int) -> None:
    """Multi-byte characters count by their UTF-8 size: the limit is in bytes."""
    fits = 65536 // width
    assert check_text(char * fits, "note") == char * fits
    over = char * (fits + 1)
    assert len(over) < 65536
    assert "64 KiB" in refused_text(over).message


@pytest.mark.parametrize(
    "text",
    [
        "Robert'); DROP TABLE cases;--",
        "' OR '1'='1",
        "<script>alert('x')</script>",
        '<img src=x onerror="alert(1)">',
        "%s %d {0} ${jndi:ldap://example.invalid/a}",
    ],
)
def test_sql_and_html_are_stored_verbatim(text: str) -> None:
    """SQL and HTML are ordinary text: accepted and returned unchanged, never escaped."""
    assert check_text(text, "note") == text
    assert check_payload({"note": text}) == {"note": text}


# --- payloads --------------------------------------------------------------------------------


def test_payload_none_is_empty() -> None:
    """No data is an empty object."""
    assert check_payload(None) == {}


@pytest.mark.parametrize("data", [["a"], "text", 42])
def test_payload_must_be_an_object(data: Any) -> None:
    """A payload that is not an object of named values is refused."""
    assert refused_payload(data).field == "data"


def test_payload_json_values_pass() -> None:
    """Null, booleans, integers, finite floats, text, lists and objects pass; tuples become lists."""
    data = {"n": None, "b": True, "i": -3, "f": 1.5, "s": "x", "l": [1, "two"], "t": (1, 2), "o": {"k": "v"}}
    checked = check_payload(data)
    assert checked == {**data, "t": [1, 2]}
    assert isinstance(checked["t"], list)
    assert json.loads(json.dumps(checked)) == checked


def test_payload_accepts_any_mapping() -> None:
    """Any Mapping is accepted and returned as a plain dict."""
    checked = check_payload(OrderedDict(reason="moved"))
    assert type(checked) is dict
    assert checked == {"reason": "moved"}


@pytest.mark.parametrize(
    "value",
    [{1, 2}, b"bytes", Decimal("1.5"), datetime(2026, 3, 2, tzinfo=UTC), object(), 1j],
    ids=["set", "bytes", "decimal", "datetime", "object", "complex"],
)
def test_payload_non_json_types_are_refused(value: object) -> None:
    """Values JSON cannot carry are refused, naming the field and the type."""
    err = refused_payload({"reason": value})
    assert err.field == "data.reason"
    assert type(value).__name__ in err.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_payload_non_finite_floats_are_refused(value: float) -> None:
    """NaN and infinities are not JSON numbers and are refused."""
    err = refused_payload({"items": [1.0, value]})
    assert err.field == "data.items[1]"
    assert "finite" in err.message


def test_payload_nested_strings_obey_the_text_policy() -> None:
    """A control character deep in a list is refused with the path to it."""
    err = refused_payload({"notes": ["fine", {"inner": "bad\x07"}]})
    assert err.field == "data.notes[1].inner"


def test_payload_keys_must_be_text() -> None:
    """Non-text keys are refused."""
    assert "keys must be text" in refused_payload({1: "one"}).message


def test_payload_keys_obey_the_text_policy() -> None:
    """A key with a control character is refused."""
    assert refused_payload({"bad\x00key": "v"}).field == "data key"


def test_payload_nesting_at_the_limit_passes() -> None:
    """A leaf nested exactly MAX_DEPTH levels deep is accepted."""
    assert check_payload(nest(MAX_DEPTH)) == nest(MAX_DEPTH)


def test_payload_nesting_beyond_the_limit_is_refused() -> None:
    """One level more than MAX_DEPTH is refused."""
    assert f"nested deeper than {MAX_DEPTH} levels" in refused_payload(nest(MAX_DEPTH + 1)).message


def test_payload_lists_count_as_nesting() -> None:
    """Lists nest like objects."""
    value: Any = "leaf"
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    assert "nested deeper" in refused_payload({"k": value}).message


def test_payload_very_deep_nesting_is_refused_without_recursion_error() -> None:
    """A payload thousands of levels deep is refused as invalid input, not by exhausting the stack."""
    assert "nested deeper" in refused_payload(nest(5000)).message


def test_payload_total_size_limit() -> None:
    """Strings each within the text limit can still exceed the 256 KiB payload limit together."""
    chunk = "a" * 60_000
    assert check_payload({f"k{i}": chunk for i in range(4)})
    err = refused_payload({f"k{i}": chunk for i in range(5)})
    assert f"{MAX_PAYLOAD_BYTES // 1024} KiB" in err.message


# --- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["case-01", "np.rowan@clinic", "a:b_c", "0", "A" * 200])
def test_identifier_valid(value: str) -> None:
    """Letters, digits and _.:@- starting with a letter or digit, up to 200 characters."""
    assert check_identifier(value, "actor") == value


@pytest.mark.parametrize(
    "value",
    ["", "-x", "_x", ".x", "a b", "a/b", "a\x00", "A" * 201, "café", 123, None, b"case"],
)
def test_identifier_invalid(value: object) -> None:
    """Empty, badly started, too long, non-ASCII and non-text identifiers are refused."""
    with pytest.raises(InvalidInput) as info:
        check_identifier(value, "actor")
    assert info.value.field == "actor"


def test_identifier_with_trailing_newline() -> None:
    """An identifier with a trailing newline is refused."""
    with pytest.raises(InvalidInput):
        check_identifier("case-01\n", "case_id")


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_and_unicode() -> None:
    """Keys are sorted, there are no spaces, and non-ASCII text is kept as is."""
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1})
