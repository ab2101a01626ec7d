"""Symptom measures: the PHQ-9 and GAD-7 as data, their scoring, and measurement-based care.

Each instrument is recorded item by item (every item 0-3); the total and its
severity band are computed, never typed in, following the published scoring
rules (Kroenke, Spitzer & Williams 2001 for the PHQ-9; Spitzer et al. 2006 for
the GAD-7). Each carries its LOINC codes for export: the panel, the total
score, and (PHQ-9) item 9, the item on thoughts of self-harm.

A questionnaire fact recorded before item-by-item recording holds a total
(``score``) and no ``items``; every reader here takes both shapes.

Measurement-based care follows a case's totals per instrument: the baseline
(the latest recorded at or before a given moment, the end of the evaluation,
else the first recorded), the latest, the trajectory, response (the latest
total at most half the baseline) and remission (PHQ-9 below 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts
from kapflow.domain.workflow import Moment, Reminder, moment_reading


@dataclass(frozen=True)
class Instrument:
    """A questionnaire scored by summing its items: how many, each's top answer, the bands, the codes."""

    name: str
    items: int
    item_max: int
    bands: tuple[tuple[int, str], ...]
    """(lowest total of the band, band), lowest first; the first band starts at 0."""
    loinc_panel: str
    loinc_total: str
    loinc_items: Mapping[int, str] = field(default_factory=dict)
    """Item number (from 1) -> its LOINC code, for the items the practice exports on their own."""

    @property
    def max_total(self) -> int:
        return self.items * self.item_max


PHQ9 = Instrument(
    "PHQ-9", items=9, item_max=3,
    bands=((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately_severe"), (20, "severe")),
    loinc_panel="44249-1", loinc_total="44261-6", loinc_items={9: "44260-8"},
)
GAD7 = Instrument(
    "GAD-7", items=7, item_max=3,
    bands=((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "severe")),
    loinc_panel="69737-5", loinc_total="70274-6",
)

INSTRUMENTS: Mapping[str, Instrument] = {i.name: i for i in (PHQ9, GAD7)}
"""The check-in instruments by name."""

RESPONSE_FRACTION = 0.5
"""Response: the latest total is at most this fraction of the baseline (a fall of 50% or more)."""
REMISSION_BELOW = {"PHQ-9": 5}
"""Remission: the latest total of the instrument is below this."""
RISE_ALERT = 5
"""A rise of this many points or more from the baseline alerts the therapist."""


def instrument(name: str) -> Instrument:
    """The instrument called ``name``; ValueError naming the known ones otherwise."""
    found = INSTRUMENTS.get(name)
    if found is None:
        raise ValueError(f"unknown instrument; known: {', '.join(INSTRUMENTS)}")
    return found


def items_problem(name: str, items: Sequence[object]) -> str | None:
    """Why ``items`` are not a complete answer to instrument ``name``, or None when they are."""
    inst = instrument(name)
    if len(items) < inst.items:
        first, last = len(items) + 1, inst.items
        missing = f"item {last} is" if first == last else f"items {first}-{last} are"
        return f"a {inst.name} has {inst.items} items; {len(items)} given, {missing} missing"
    if len(items) > inst.items:
        return f"a {inst.name} has {inst.items} items; {len(items)} given"
    for number, answer in enumerate(items, 1):
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer <= inst.item_max:
            return f"item {number} must be a whole number from 0 to {inst.item_max}"
    return None


def total(name: str, items: Sequence[int]) -> int:
    """The total of a complete answer to instrument ``name``; ValueError naming the problem otherwise."""
    problem = items_problem(name, items)
    if problem:
        raise ValueError(problem)
    return sum(items)


def severity(name: str, score: int) -> str:
    """The severity band of total ``score`` of instrument ``name``; ValueError when out of its range."""
    inst = instrument(name)
    if isinstance(score, bool) or not 0 <= score <= inst.max_total:
        raise ValueError(f"a {inst.name} total is between 0 and {inst.max_total}")
    return next(band for low, band in reversed(inst.bands) if score >= low)


def items_totalling(name: str, score: int) -> list[int]:
    """Answers to instrument ``name`` adding up to ``score``, the first items filled first (for demos and
    fixtures): a PHQ-9's item 9 (thoughts of self-harm, a safety signal) stays 0 up to a total of 24."""
    inst = instrument(name)
    if not 0 <= score <= inst.max_total:
        raise ValueError(f"a {inst.name} total is between 0 and {inst.max_total}")
    return [min(inst.item_max, max(0, score - inst.item_max * n)) for n in range(inst.items)]


def answered(name: str, score: int) -> dict[str, object]:
    """A questionnaire fact's data: instrument ``name`` answered item by item to a total of ``score``
    (for demos, examples and fixtures)."""
    return {"instrument": name, "items": items_totalling(name, score)}


def scored(data: Mapping[str, Any]) -> dict[str, Any]:
    """The computed part of a questionnaire answered item by item: ``score``, ``severity``, ``loinc``."""
    name = str(data["instrument"])
    score = total(name, data["items"])
    return {"score": score, "severity": severity(name, score), "loinc": instrument(name).loinc_total}


def fact_total(data: Mapping[str, object]) -> int | None:
    """The total of a questionnaire fact's data: computed from its items, or the total recorded alone."""
    items = data.get("items")
    if isinstance(items, list | tuple) and items:
        return sum(int(str(i)) for i in items)
    score = data.get("score")
    if isinstance(score, int) and not isinstance(score, bool):
        return score
    return None


def fact_severity(data: Mapping[str, object]) -> str | None:
    """The severity band of a questionnaire fact's data (stored, or computed for a total-only fact)."""
    stored = data.get("severity")
    if isinstance(stored, str):
        return stored
    score = fact_total(data)
    if score is None or str(data.get("instrument")) not in INSTRUMENTS:
        return None
    try:
        return severity(str(data["instrument"]), score)
    except ValueError:
        return None


def phq9_item9(data: Mapping[str, object]) -> int | None:
    """The item-9 answer (thoughts of self-harm) of a questionnaire fact's data.

    None when the fact is not a PHQ-9 or was recorded as a total only.
    """
    if data.get("instrument") != PHQ9.name:
        return None
    items = data.get("items")
    if not isinstance(items, list | tuple) or len(items) < PHQ9.items:
        return None
    answer = items[8]
    return answer if isinstance(answer, int) and not isinstance(answer, bool) else None


# --- measurement-based care ---


class Recorded(Protocol):
    """What a questionnaire fact is for the measures (a case's ``FactEntry``): its data and when recorded."""

    @property
    def data(self) -> Mapping[str, Any]: ...

    @property
    def at(self) -> datetime: ...


@dataclass(frozen=True)
class Point:
    """One total of an instrument, with its band and when it was completed (or recorded)."""

    score: int
    severity: str | None
    on: str
    at: datetime

    def as_dict(self) -> dict[str, object]:
        return {"score": self.score, "severity": self.severity, "on": self.on}


def trajectory(facts: Iterable[Recorded], name: str) -> list[Point]:
    """The totals of instrument ``name`` among questionnaire ``facts`` (with ``data`` and ``at``), in the
    order recorded; facts with no readable total are left out."""
    points = []
    for f in facts:
        data = f.data
        if data.get("instrument") != name:
            continue
        score = fact_total(data)
        if score is None:
            continue
        on = str(data.get("completed_on") or f.at.date().isoformat())
        points.append(Point(score, fact_severity(data), on, f.at))
    return points


def baseline(points: Sequence[Point], by: datetime | None) -> Point | None:
    """The baseline: the latest point recorded at or before ``by`` (the evaluation's end: the score the
    evaluation saw), else (none by then, or no ``by``) the first recorded.

    "The first at or before ``by``" would always be the first of all; the latest by then is the one the
    evaluation was made on, so a questionnaire from the inquiry weeks before does not stand in for it.
    """
    if not points:
        return None
    if by is not None:
        before = [p for p in points if p.at <= by]
        if before:
            return before[-1]
    return points[0]


def responded(baseline_score: int, latest_score: int) -> bool:
    """Response: the latest total has fallen by 50% or more from the baseline (a baseline of 0 cannot)."""
    return baseline_score > 0 and latest_score <= baseline_score * RESPONSE_FRACTION


def in_remission(name: str, latest_score: int) -> bool | None:
    """Remission (PHQ-9 below 5); None for an instrument with no remission threshold."""
    below = REMISSION_BELOW.get(name)
    return None if below is None else latest_score < below


def progress(
    facts: Iterable[Recorded], baseline_by: datetime | None = None, rise: int = RISE_ALERT
) -> dict[str, object]:
    """Measurement-based care for a case's questionnaire facts, per instrument recorded: baseline, latest,
    trajectory, change from baseline, response, remission (PHQ-9) and whether the rise from baseline
    calls for the therapist's alert. A JSON-able mapping; an instrument never recorded is left out."""
    facts = list(facts)  # read once per instrument
    shown: dict[str, object] = {}
    for name in INSTRUMENTS:
        points = trajectory(facts, name)
        first = baseline(points, baseline_by)
        if first is None:
            continue
        latest = points[-1]
        shown[name] = {
            "baseline": first.as_dict(),
            "latest": latest.as_dict(),
            "trajectory": [p.as_dict() for p in points],
            "change": latest.score - first.score,
            "response": responded(first.score, latest.score),
            "remission": in_remission(name, latest.score),
            "rise_alert": latest.score - first.score >= rise,
        }
    return shown


def _first_move(facts: CaseFacts, triggers: tuple[str, ...]) -> datetime | None:
    return min((m.at for t in triggers for m in facts.moves_by(t)), default=None)


def case_measures(
    facts: CaseFacts, baseline_until: tuple[str, ...] = (), rise: int = RISE_ALERT
) -> dict[str, object]:
    """Measurement-based care of a case (``progress``), the baseline taken by the first move by one of
    ``baseline_until`` (the triggers ending the evaluation or intake); ``rise``: the points above baseline
    that call for the therapist's alert (the workflow's threshold)."""
    return progress(facts.of_kind("questionnaire"), _first_move(facts, baseline_until), rise)


def measures_summary(*baseline_until: str, rise: int = RISE_ALERT) -> Callable[[CaseFacts], Mapping[str, object]]:
    """A workflow's ``summaries`` entry showing ``case_measures`` with the case, its baseline taken by the
    end of the evaluation (``baseline_until``: the triggers that end it)."""

    def summary(facts: CaseFacts) -> Mapping[str, object]:
        return case_measures(facts, baseline_until, rise)

    return summary


# --- the alert on a rise from baseline, and the regular check-in during treatment ---

RISE_MOMENT = "symptom_rise"
"""The workflow moment: when a questionnaire whose total rose by ``RISE_ALERT`` or more from baseline was
recorded."""
CHECKIN_MOMENT = "last_checkin"
"""The workflow moment: when the regular check-in was last complete (or treatment began)."""


def rise_moment(*baseline_until: str, rise: int = RISE_ALERT) -> Moment:
    """When the latest questionnaire was recorded, while its total is ``RISE_ALERT`` or more above the
    baseline (taken by the first move by one of ``baseline_until``); None otherwise. Each such
    questionnaire is a new moment, so each alerts once; a later one back under the line ends the alert."""

    @moment_reading(facts=("questionnaire",), moves=baseline_until)
    def moment(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
        # A projection is planned more than once (its command, the worker settling its timers): once each.
        return facts.derived((rise_moment, baseline_until, rise), latest_rise)

    def latest_rise(facts: CaseFacts) -> datetime | None:
        questionnaires = facts.of_kind("questionnaire")
        if not questionnaires:
            return None
        by = _first_move(facts, baseline_until)
        rises = []
        for name in INSTRUMENTS:
            points = trajectory(questionnaires, name)
            first = baseline(points, by)
            if first is not None and points[-1].score - first.score >= rise:
                rises.append(points[-1].at)
        return max(rises, default=None)

    return moment


def checkin_moment(treatment_starts: str) -> Moment:
    """Once the first move by ``treatment_starts`` (the first session) happened: the later of it and the
    moment both instruments were last recorded (the older of the latest PHQ-9 and the latest GAD-7)."""

    @moment_reading(facts=("questionnaire",), moves=(treatment_starts,))
    def moment(facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
        start = _first_move(facts, (treatment_starts,))
        if start is None:
            return None
        latest = {f.data.get("instrument"): f.at for f in facts.of_kind("questionnaire")}
        if all(name in latest for name in INSTRUMENTS):
            return max(start, min(latest[name] for name in INSTRUMENTS))
        return start

    return moment


def measure_moments(
    baseline_until: tuple[str, ...], treatment_starts: str, rise: int = RISE_ALERT
) -> dict[str, Moment]:
    """The moments ``measure_reminders`` count from, for a workflow's ``moments``."""
    return {RISE_MOMENT: rise_moment(*baseline_until, rise=rise), CHECKIN_MOMENT: checkin_moment(treatment_starts)}


def measure_reminders(
    therapist: str, client: str, treatment_states: tuple[str, ...], every: timedelta = timedelta(days=28),
) -> tuple[Reminder, ...]:
    """The therapist's alert on a rise of ``RISE_ALERT`` or more from baseline (at once, the case's reference
    only), and the client's check-in questionnaires ``every`` 4 weeks while in ``treatment_states``."""
    return (
        Reminder(
            "symptom_rise_alert", therapist, "email",
            "A client's check-in scores have risen markedly since their baseline. Please review the case.",
            since=RISE_MOMENT, after=timedelta(0), subject="kapflow: a client's check-in needs review",
        ),
        Reminder(
            "checkin_questionnaires_due", client, "email",
            "Hello {first_name}, it is time for your regular check-in questionnaires. Please complete both "
            "before your next visit.",
            since=CHECKIN_MOMENT, after=every, in_states=treatment_states, subject="Questionnaires to complete",
        ),
    )
