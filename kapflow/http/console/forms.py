"""Forms generated from a workflow's fact specifications, and the typed values read back from them.

A fact's form is drawn from its ``FactSpec`` (one control per field, by the field's type), so a new
fact kind in a workflow needs no template. An HTML form sends text only: ``read_form`` turns it back
into the values the spec parses (a whole number, a list of choices, a time in the practice's zone),
and the spec itself judges them (``FactSpec.problems``), so the console, the CLI and the API accept
exactly the same facts. Nothing here imports a web framework.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.facts import (
    Boolean,
    Choice,
    ChoiceList,
    Day,
    Email,
    FactSpec,
    Field,
    Integer,
    IntegerList,
    Moment,
    Money,
    Phone,
    Text,
)

FormData = Mapping[str, Sequence[str]]
"""A submitted form: each name with every value sent for it (checkboxes send several)."""

_LONG_TEXT = 200  # a text field allowing more than this is a paragraph, not a line


@dataclass(frozen=True)
class FormField:
    """One control of a generated form: what to draw, and the value and error to draw it with."""

    name: str
    label: str
    widget: str  # text | textarea | email | tel | number | money | select | checkboxes | checkbox | date | datetime
    required: bool
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    hint: str = ""
    value: str = ""
    values: tuple[str, ...] = ()  # the chosen entries of a list of choices
    error: str = ""

    @property
    def control_id(self) -> str:
        return f"field-{self.name}"


@dataclass(frozen=True)
class FactForm:
    """A fact kind's form: its controls, and a problem no single control owns (a cross-field check)."""

    kind: str
    title: str
    description: str
    fields: tuple[FormField, ...]
    general_error: str = ""
    open: bool = False  # drawn expanded: it was just submitted with problems


def label_of(name: str) -> str:
    """``blood_pressure_systolic`` as ``Blood pressure systolic``."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def fact_form(
    spec: FactSpec, *, submitted: FormData | None = None, problems: Sequence[tuple[str, str]] = (),
) -> FactForm:
    """The form of ``spec``, filled with what was ``submitted`` and each problem beside its field."""
    errors = dict(problems)
    controls = tuple(_control(f, submitted or {}, errors.get(f.name, "")) for f in spec.fields)
    known = {f.name for f in spec.fields}
    general = "; ".join(reason for name, reason in problems if name not in known)
    return FactForm(spec.kind, label_of(spec.kind), spec.description, controls, general,
                    open=bool(problems))


def _control(f: Field, submitted: FormData, error: str) -> FormField:
    sent = tuple(submitted.get(f.name, ()))
    first = sent[0] if sent else ""
    base: dict[str, Any] = {"name": f.name, "label": label_of(f.name), "required": f.required,
                            "value": first, "error": error}
    match f:
        case Email():
            return FormField(widget="email", hint=f.hint, **base)
        case Phone():
            return FormField(widget="tel", hint=f.hint, **base)
        case Text():
            return FormField(widget="textarea" if f.max_chars > _LONG_TEXT else "text", hint=f.hint, **base)
        case Choice():
            return FormField(widget="select", choices=f.choices, **base)
        case ChoiceList():
            return FormField(widget="checkboxes", choices=f.choices, values=sent, **base)
        case Integer():
            return FormField(widget="number", low=f.low, high=f.high, hint=_range_hint(f.low, f.high, f.unit),
                             **base)
        case IntegerList():
            return FormField(widget="text", low=f.low, high=f.high,
                             hint=f"whole numbers from {f.low} to {f.high}, separated by commas", **base)
        case Money():
            return FormField(widget="money", hint="an amount in dollars, e.g. 250.00", **base)
        case Boolean():
            return FormField(widget="checkbox", **{**base, "required": False})
        case Day():
            return FormField(widget="date", **base)
        case Moment():
            return FormField(widget="datetime", hint="in the practice's time zone", **base)
    return FormField(widget="text", **base)


def _range_hint(low: int, high: int, unit: str) -> str:
    return f"{low} to {high}{unit}"


@dataclass
class ReadForm:
    """A submitted form read back into values for the spec, and what could not even be read."""

    data: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def read_form(spec: FactSpec, form: FormData, calendar: PracticeCalendar) -> ReadForm:
    """The values of ``spec``'s fields from a submitted form; an empty control is an absent field."""
    read = ReadForm()
    for f in spec.fields:
        sent = [v for v in form.get(f.name, ()) if v.strip()]
        if isinstance(f, Boolean):
            read.data[f.name] = bool(sent)
        elif isinstance(f, ChoiceList):
            read.data[f.name] = sent
        elif not sent:
            continue
        elif isinstance(f, IntegerList):
            _numbers(f, sent[0], read)
        elif isinstance(f, Moment):
            _moment(f, sent[0], calendar, read)
        else:
            read.data[f.name] = sent[0]
    return read


def _numbers(f: IntegerList, text: str, read: ReadForm) -> None:
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not all(p.lstrip("-").isdigit() for p in parts):
        read.problems.append((f.name, f"must be whole numbers from {f.low} to {f.high}, separated by commas"))
        return
    read.data[f.name] = [int(p) for p in parts]


def _moment(f: Moment, text: str, calendar: PracticeCalendar, read: ReadForm) -> None:
    """A browser's ``datetime-local`` value (no zone) is a wall-clock time at the practice."""
    try:
        wall = datetime.fromisoformat(text)
    except ValueError:
        read.problems.append((f.name, "must be a date and time such as 2026-11-28 15:00"))
        return
    read.data[f.name] = (wall if wall.tzinfo else calendar.at_wall_time(wall)).isoformat()


def local_input(moment: datetime, calendar: PracticeCalendar) -> str:
    """``moment`` as a ``datetime-local`` control's value, on the practice's clocks."""
    return moment.astimezone(calendar.zone).strftime("%Y-%m-%dT%H:%M")
