"""Facts: validated records of what happened to a case, and the fields they are made of.

A workflow names the kinds of fact it records. Each kind is a ``FactSpec``:
a tuple of ``Field`` parsers (configured in ``__init__``, applied in
``__call__``) plus optional cross-field checks. Parsing turns caller data
into a normalised JSON object (money as a decimal string, dates and times as
ISO 8601 in UTC) or raises ``InvalidFact`` naming the kind, field and reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from kapflow.domain.entries import to_iso
from kapflow.domain.errors import InvalidFact, InvalidInput
from kapflow.domain.payload import JSONObject, JSONValue, check_text

_MISSING: Any = object()
_ONE_DAY = timedelta(days=1)
_WHOLE = re.compile(r"-?[0-9]{1,9}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

EARLIEST_DAY = date(1900, 1, 1)
"""The first day a date or time field accepts."""
YEARS_AHEAD = 100
"""How far past today a date or time field reaches (a typo's year 9999 is refused, not scheduled)."""
_EARLIEST = datetime(EARLIEST_DAY.year, EARLIEST_DAY.month, EARLIEST_DAY.day, tzinfo=UTC)
# A local time outside these cannot be shifted to UTC without overflowing; refused before the precise check.
_COARSE_LOW, _COARSE_HIGH = datetime(1899, 12, 30), datetime(9998, 12, 31)


def latest_day(now: datetime) -> date:
    """The last day a date or time field accepts: ``YEARS_AHEAD`` years after ``now``'s day."""
    today = now.date()
    try:
        return today.replace(year=today.year + YEARS_AHEAD)
    except ValueError:  # 29 February, a hundred years on, may not exist
        return today.replace(year=today.year + YEARS_AHEAD, day=28)


def window_reason(now: datetime | None = None) -> str:
    """What a date outside the window is told (the window's ends, when now is known)."""
    if now is None:
        return f"must be from {EARLIEST_DAY.isoformat()} to {YEARS_AHEAD} years from today"
    return f"must be from {EARLIEST_DAY.isoformat()} to {latest_day(now).isoformat()}"


def moment_in_window(moment: datetime, now: datetime) -> bool:
    """True when the aware ``moment`` lies in the window dates and times are accepted in."""
    if moment.tzinfo is None or not _COARSE_LOW <= moment.replace(tzinfo=None) <= _COARSE_HIGH:
        return False
    return _EARLIEST <= moment < datetime.combine(latest_day(now), datetime.min.time(), UTC) + _ONE_DAY


class FieldError(ValueError):
    """Raised by a field parser; turned into ``InvalidFact`` by the spec."""


class Field:
    """One named field: required or with a default, parsed by ``parse``."""

    def __init__(self, name: str, *, required: bool = True, default: JSONValue = None) -> None:
        self.name = name
        self.required = required
        self.default = default

    def __call__(self, data: Mapping[str, Any]) -> JSONValue:
        value = data.get(self.name, _MISSING)
        if value is _MISSING or value is None:
            if self.required:
                raise FieldError("is required")
            return self.default
        return self.parse(value)

    def parse(self, value: Any) -> JSONValue:
        raise NotImplementedError

    def out_of_window(self, parsed: JSONValue, now: datetime) -> str | None:
        """Why the parsed value lies outside what ``now`` allows (dates and times), or None."""
        return None


class Text(Field):
    def __init__(self, name: str, *, max_chars: int = 65536, pattern: str = "", hint: str = "", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.max_chars = max_chars
        self.pattern = re.compile(pattern) if pattern else None
        self.hint = hint

    def parse(self, value: Any) -> JSONValue:
        if not isinstance(value, str) or not value.strip():
            raise FieldError("must be non-empty text")
        check_text(value, self.name)
        if len(value) > self.max_chars:
            raise FieldError(f"must be at most {self.max_chars} characters")
        if self.pattern and not self.pattern.fullmatch(value):
            raise FieldError(f"is not valid; {self.hint}")
        return value


class Phone(Text):
    """A phone number: digits with optional +, spaces, dots, dashes, parentheses."""

    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(
            name,
            pattern=r"\+?[0-9][0-9 ().-]{5,22}[0-9]",
            hint="give 7-15 digits, e.g. +1 555 010 0123",
            **kw,
        )

    def parse(self, value: Any) -> JSONValue:
        text = super().parse(value)
        digits = sum(ch.isascii() and ch.isdigit() for ch in str(text))
        if not 7 <= digits <= 15:
            raise FieldError(f"is not valid; {self.hint}")
        return text


class Email(Text):
    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(
            name, max_chars=254, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+", hint="give an address like name@example.org", **kw
        )


class Choice(Field):
    def __init__(self, name: str, choices: Sequence[str], **kw: Any) -> None:
        super().__init__(name, **kw)
        self.choices = tuple(choices)

    def parse(self, value: Any) -> JSONValue:
        if value not in self.choices:
            raise FieldError(f"must be one of: {', '.join(self.choices)}")
        return str(value)


class ChoiceList(Field):
    """A list of distinct choices (may be empty)."""

    def __init__(self, name: str, choices: Sequence[str], **kw: Any) -> None:
        kw.setdefault("required", False)
        kw.setdefault("default", [])
        super().__init__(name, **kw)
        self.choices = tuple(choices)

    def parse(self, value: Any) -> JSONValue:
        if not isinstance(value, list | tuple):
            raise FieldError("must be a list")
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            # The entries themselves are not echoed: they may be a client's own words.
            raise FieldError(f"has {len(unknown)} unknown entries; known: {', '.join(self.choices)}")
        return sorted(set(value))


class Integer(Field):
    def __init__(self, name: str, *, low: int, high: int, unit: str = "", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.low, self.high, self.unit = low, high, unit

    def parse(self, value: Any) -> JSONValue:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
                value = int(value.strip())
            else:
                raise FieldError("must be a whole number")
        if not self.low <= value <= self.high:
            raise FieldError(f"must be between {self.low} and {self.high}{self.unit}")
        return int(value)


class IntegerList(Field):
    """A list of whole numbers, each from ``low`` to ``high`` (how many is for a cross-field check to judge).

    A bad entry is named by its position from 1 (``entry`` names what an entry is, e.g. "item"), never by
    its value.
    """

    def __init__(self, name: str, *, low: int, high: int, max_len: int = 100, entry: str = "entry",
                 **kw: Any) -> None:
        super().__init__(name, **kw)
        self.low, self.high, self.max_len, self.entry = low, high, max_len, entry

    def parse(self, value: Any) -> JSONValue:
        if not isinstance(value, list | tuple):
            raise FieldError(f"must be a list of whole numbers from {self.low} to {self.high}")
        if len(value) > self.max_len:
            raise FieldError(f"must have at most {self.max_len} entries")
        for number, item in enumerate(value, 1):
            if isinstance(item, bool) or not isinstance(item, int) or not self.low <= item <= self.high:
                raise FieldError(f"{self.entry} {number} must be a whole number from {self.low} to {self.high}")
        return [int(item) for item in value]


class Money(Field):
    """A positive amount in dollars with at most two decimals, stored as text."""

    def __init__(self, name: str, *, high: Decimal = Decimal("100000"), **kw: Any) -> None:
        super().__init__(name, **kw)
        self.high = high

    def parse(self, value: Any) -> JSONValue:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise FieldError("must be an amount such as 250 or 250.00")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise FieldError("must be an amount such as 250 or 250.00") from None
        if not amount.is_finite() or amount <= 0:
            raise FieldError("must be greater than zero")
        if amount > self.high:
            raise FieldError(f"must be at most {self.high}")
        if amount.as_tuple().exponent < -2:  # type: ignore[operator]
            raise FieldError("must have at most two decimals")
        return f"{amount:.2f}"


class Boolean(Field):
    def parse(self, value: Any) -> JSONValue:
        if not isinstance(value, bool):
            raise FieldError("must be true or false")
        return value


class Day(Field):
    """A calendar date, ISO 8601 (2026-11-28)."""

    def parse(self, value: Any) -> JSONValue:
        if isinstance(value, datetime):
            raise FieldError("must be a date without a time, e.g. 2026-11-28")
        if isinstance(value, date):
            return value.isoformat()
        if not isinstance(value, str):
            raise FieldError("must be a date such as 2026-11-28")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise FieldError("must be a date such as 2026-11-28") from None

    def out_of_window(self, parsed: JSONValue, now: datetime) -> str | None:
        if isinstance(parsed, str) and not EARLIEST_DAY <= date.fromisoformat(parsed) <= latest_day(now):
            return window_reason(now)
        return None


class Moment(Field):
    """An instant with a time zone, ISO 8601; stored in UTC."""

    def parse(self, value: Any) -> JSONValue:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise FieldError("must be a time such as 2026-11-28T15:00:00+00:00") from None
        if not isinstance(value, datetime):
            raise FieldError("must be a time such as 2026-11-28T15:00:00+00:00")
        if value.tzinfo is None or value.utcoffset() is None:
            raise FieldError("needs a time zone offset, e.g. +00:00")
        if not _COARSE_LOW <= value.replace(tzinfo=None) <= _COARSE_HIGH:
            raise FieldError(window_reason())  # before the shift to UTC, which would overflow
        return to_iso(value)

    def out_of_window(self, parsed: JSONValue, now: datetime) -> str | None:
        if isinstance(parsed, str) and not moment_in_window(datetime.fromisoformat(parsed), now):
            return window_reason(now)
        return None


CrossCheck = Callable[[JSONObject, datetime], tuple[str, str] | None]
"""Given parsed fields and now, return ``(field, reason)`` when they disagree, else None."""


@dataclass(frozen=True)
class Derived:
    """Values a spec computes from its parsed fields once they pass its checks (a total, a band, a code).

    ``compute`` returns the values named in ``names``; they are stored with the fact. A caller who gives
    one of them is refused with ``hint``, which says what to give instead.
    """

    names: tuple[str, ...]
    compute: Callable[[JSONObject], Mapping[str, JSONValue]]
    hint: str


@dataclass(frozen=True)
class FactSpec:
    """A kind of fact: its fields, cross-field checks, computed values, and a one-line description."""

    kind: str
    fields: tuple[Field, ...]
    checks: tuple[CrossCheck, ...] = ()
    description: str = ""
    extra_allowed: bool = False
    derived: Derived | None = None
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(f.name for f in self.fields))
        clash = sorted(self._names & set(self.derived.names if self.derived else ()))
        if clash:
            raise ValueError(f"{self.kind}: {', '.join(clash)} cannot be both a field and computed")

    def problems(self, data: Mapping[str, Any], now: datetime | None = None) -> list[tuple[str, str]]:
        """Every ``(field, reason)`` that keeps ``data`` from being valid, for a form to show beside each field
        at once (``__call__`` stops at the first). Cross-field checks run once every field is valid."""
        found: list[tuple[str, str]] = []
        moment = now or datetime.now(UTC)
        for f in self.fields:
            try:
                value = f(data)
            except FieldError as exc:
                found.append((f.name, str(exc)))
                continue
            except InvalidInput as exc:
                found.append((f.name, exc.message.split(": ", 1)[-1]))
                continue
            outside = f.out_of_window(value, moment) if value is not None else None
            if outside:
                found.append((f.name, outside))
        if not found:
            try:
                self(data, moment)
            except InvalidFact as exc:
                found.append((str(exc.field or "*"), exc.reason))
        return found

    def __call__(self, data: Mapping[str, Any], now: datetime | None = None) -> JSONObject:
        if not isinstance(data, Mapping):
            raise InvalidFact(self.kind, "*", "must be an object of named values")
        if self.derived is not None:
            given = [name for name in self.derived.names if name in data]
            if given:
                raise InvalidFact(self.kind, given[0], f"is computed, not given; {self.derived.hint}")
        unknown = sorted(str(k) for k in data if k not in self._names)
        if unknown and not self.extra_allowed:
            # Name the field only when it looks like a field name, not like someone's words.
            name = unknown[0] if _FIELD_NAME.fullmatch(unknown[0]) else "<unknown field>"
            fields = ", ".join(sorted(self._names))
            raise InvalidFact(self.kind, name, f"is not a field of {self.kind}; fields: {fields}")
        parsed: JSONObject = {}
        moment = now or datetime.now(UTC)
        for f in self.fields:
            try:
                parsed[f.name] = value = f(data)
            except FieldError as exc:
                raise InvalidFact(self.kind, f.name, str(exc)) from None
            except InvalidInput as exc:  # the text policy, raised by check_text
                raise InvalidFact(self.kind, f.name, exc.message.split(": ", 1)[-1]) from None
            if value is not None:
                outside = f.out_of_window(value, moment)
                if outside:
                    raise InvalidFact(self.kind, f.name, outside)
        for check in self.checks:
            problem = check(parsed, moment)
            if problem:
                raise InvalidFact(self.kind, problem[0], problem[1])
        if self.derived is not None:
            computed = self.derived.compute(parsed)
            parsed.update({name: computed[name] for name in self.derived.names})
        return parsed
