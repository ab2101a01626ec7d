"""Rules every piece of caller-supplied data obeys before anything is written.

One policy for all free text, applied at the edge so that SQLite and
PostgreSQL see the same values: at most 64 KiB of UTF-8 per string, no NUL
and no control characters other than tab, newline and carriage return.
SQL and HTML are ordinary text: stored verbatim, never executed or rendered.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from kapflow.domain.errors import InvalidInput

MAX_TEXT_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DEPTH = 8
# Whole numbers a database column and every JSON reader can hold (a signed 64-bit integer).
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
# C0 controls but tab, newline and CR; DEL; C1 controls (U+009B starts terminal escapes).
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}"
"""An id, actor or key (``check_identifier``): also what the HTTP API's OpenAPI document declares."""
_IDENT = re.compile(IDENTIFIER_PATTERN)

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
JSONObject = dict[str, JSONValue]


def check_text(value: str, field: str) -> str:
    """Return ``value`` if it obeys the text policy, else raise ``InvalidInput``."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field}: is not valid Unicode text (a lone surrogate); send UTF-8 text", field=field
        ) from None
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(
            f"{field}: text is longer than {MAX_TEXT_BYTES // 1024} KiB; shorten it or attach a document",
            field=field,
        )
    found = _FORBIDDEN.search(value)
    if found:
        raise InvalidInput(
            f"{field}: contains control character U+{ord(found.group()):04X}; "
            "remove it (only tab, newline and carriage return are allowed)",
            field=field,
        )
    return value


def check_identifier(value: object, field: str) -> str:
    """An id, actor or key: 1-200 characters of letters, digits and ``_.:@-``."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise InvalidInput(
            f"{field}: must be 1-200 characters of letters, digits and _.:@- "
            "starting with a letter or digit",
            field=field,
        )
    return value


def check_payload(data: Mapping[str, Any] | None, field: str = "data") -> JSONObject:
    """Validate caller data as a JSON object whose strings obey the text policy."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{field}: must be an object of named values", field=field)
    if not data:
        return {}  # most fires carry no data
    checked = _check_value(data, field, 0)
    assert isinstance(checked, dict)
    size = len(json.dumps(checked, ensure_ascii=False).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"{field}: is {size} bytes; the limit is {MAX_PAYLOAD_BYTES // 1024} KiB", field=field
        )
    return checked


def _check_value(value: Any, field: str, depth: int) -> JSONValue:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{field}: nested deeper than {MAX_DEPTH} levels", field=field)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:  # before json.dumps, which refuses ints over 4300 digits
            raise InvalidInput(
                f"{field}: whole numbers must be between -2**63 and 2**63-1; send a smaller number or text",
                field=field,
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{field}: must be a finite number", field=field)
        return value
    if isinstance(value, str):
        return check_text(value, field)
    if isinstance(value, Mapping):
        out: JSONObject = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{field}: keys must be text", field=field)
            check_text(key, f"{field} key")
            out[key] = _check_value(item, f"{field}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_check_value(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise InvalidInput(
        f"{field}: {type(value).__name__} is not allowed; use text, numbers, booleans, lists or objects",
        field=field,
    )


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""``json.dumps`` with these options builds an encoder on every call (a third of a small event's cost); one
encoder serves every thread, as ``encode`` keeps its state in the call."""


def canonical_json(value: object) -> str:
    """The one serialisation used for hashing and storage: sorted keys, no spaces."""
    return _CANONICAL.encode(value)
