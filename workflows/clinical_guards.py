"""Guards and guard helpers every clinical pathway of the practice uses with the same meaning.

Appointments booked and still open, bookings at a time still to come (or
recorded as late entries), consent signed and not withdrawn since, the PHQ-9
and GAD-7 recorded since a moment, a rule that applies only to bookings of one
kind (checked on the visit's day): each pathway names these in its own guard
table, with its own codes where the wording differs (the consent form's title).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import ClassVar

from kapflow.domain.appointments import appointments, has_upcoming
from kapflow.domain.billing import Billing, adjustment_problem, ledger
from kapflow.domain.case import CaseFacts, FactEntry
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import Guard, GuardContext, guard_reads
from kapflow.workflows.clinical_facts import QUESTIONNAIRE_MAX

INSTRUMENTS = frozenset(QUESTIONNAIRE_MAX)
"""The check-in questionnaires: PHQ-9 and GAD-7."""

APPOINTMENT_KINDS = frozenset({"appointment", "appointment_update"})
"""The fact kinds that carry appointments (the shared appointment specs)."""


def whole(ctx: GuardContext, name: str) -> int:
    """Threshold ``name`` as a whole number."""
    return int(ctx.thresholds[name])


# A threshold's span as a timedelta, built once per value: thresholds recur on every command.
@lru_cache(maxsize=64)
def _days_span(days: int) -> timedelta:
    return timedelta(days=days)


def days(ctx: GuardContext, name: str) -> timedelta:
    """Threshold ``name`` (a number of days) as a span of time."""
    return _days_span(int(ctx.thresholds[name]))


def facts_since(facts: CaseFacts, kind: str, after: datetime | None) -> list[FactEntry]:
    """Facts of ``kind`` recorded at or after ``after`` (all of them when it is None)."""
    return facts.of_kind(kind) if after is None else facts.since(kind, after)


def missing_questionnaires(facts: CaseFacts, since: datetime | None) -> list[str]:
    """The instruments (PHQ-9, GAD-7) not recorded at or after ``since``, sorted."""
    done = {f.data["instrument"] for f in facts_since(facts, "questionnaire", since)}
    return sorted(INSTRUMENTS - done)


@dataclass(frozen=True)
class AppointmentBooked:
    """An appointment of ``kind`` is booked and still ahead (cancelled and past ones do not count)."""

    reads: ClassVar[frozenset[str]] = APPOINTMENT_KINDS  # what its sentence may quote: see ``Guard.reads``
    kind: str
    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if has_upcoming(ctx.case_id, ctx.facts, self.kind, ctx.now, ctx.carriers):
            return None
        label = self.kind.replace("_", " ")
        return Blocker(
            f"{self.kind}_not_booked", f"book the {label} appointment first", facts=(("kind", self.kind),)
        )


class AppointmentOpen:
    """The appointment an update names exists and is still booked (for reschedule, cancel, no-show)."""

    reads = APPOINTMENT_KINDS

    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        appt_id = str(ctx.data.get("appointment", ""))
        appt = appointments(ctx.case_id, ctx.facts, ctx.carriers).get(appt_id)
        if appt is None:
            return Blocker("appointment_unknown", f"the case has no appointment {appt_id!r}; list its appointments")
        if not appt.active:
            return Blocker(
                "appointment_closed", f"appointment {appt_id} is {appt.status.replace('_', ' ')} and cannot change",
                facts=(("status", appt.status),),
            )
        return None


@dataclass(frozen=True)
class ConsentSigned:
    """The client signed ``form`` and has not withdrawn consent since."""

    reads: ClassVar[frozenset[str]] = frozenset({"consent", "consent_withdrawn"})
    form: str = "consent form"
    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        signed = ctx.facts.latest("consent")
        withdrawn = ctx.facts.latest("consent_withdrawn")
        if signed is None:
            return Blocker("consent_missing", f"the client must sign the {self.form}")
        if withdrawn is not None and withdrawn.at >= signed.at:
            return Blocker("consent_withdrawn", "the client withdrew consent; a new consent form must be signed")
        return None


def _moment(value: object) -> datetime | None:
    """An aware time from a fact's field (stored as ISO 8601 text), or None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    return None


def visit_start(ctx: GuardContext) -> datetime | None:
    """The time the fact being recorded gives a visit: a booking's start, or a reschedule's new start.

    None for anything else: a cancellation, no-show or attendance (no new time), another kind of fact.
    """
    data = ctx.data
    if "action" in data:  # a change to a booked appointment
        return _moment(data.get("starts_at")) if data.get("action") == "reschedule" else None
    if "kind" in data:
        return _moment(data.get("starts_at"))
    return None


def visit_kind(ctx: GuardContext) -> str | None:
    """The kind of appointment the fact being recorded books, or reschedules (None for anything else)."""
    data = ctx.data
    if "action" in data:
        if data.get("action") != "reschedule":
            return None
        appt = appointments(ctx.case_id, ctx.facts, ctx.carriers).get(str(data.get("appointment", "")))
        return appt.kind if appt is not None else None
    kind = data.get("kind")
    return str(kind) if kind is not None else None


class AppointmentNotInPast:
    """A booking, or a reschedule, gives a start from now on, unless recorded explicitly as a late entry.

    A late entry is a fact with ``late_entry`` true and a ``reason`` (the appointment specs refuse one
    without a reason); it is audited as every fact is. Cancelling, marking a no-show or attendance give
    no new time, so they stay open for appointments in the past.
    """

    reads = APPOINTMENT_KINDS
    thresholds: tuple[str, ...] = ()

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        starts = visit_start(ctx)
        if starts is None or starts >= ctx.now:
            return None
        if ctx.data.get("late_entry") is True and str(ctx.data.get("reason") or "").strip():
            return None
        verb = "reschedule to" if "action" in ctx.data else "book"
        return Blocker(
            "appointment_in_past",
            f"{ctx.calendar.time_text(starts)} is in the past (it is now {ctx.calendar.time_text(ctx.now)}): "
            f"{verb} a time from now on, or, to record one that already happened, record it as a late entry "
            "(late_entry true, with the reason it is recorded late)",
            facts=(("starts_at", to_iso(starts)), ("now", to_iso(ctx.now))),
        )


@dataclass(frozen=True)
class WhenBooking:
    """Apply ``guard`` only when the fact being recorded books (or reschedules) an appointment of ``kind``.

    The guard is checked at the visit's start (for a reschedule, the new start): rules that depend on
    the day of the visit (a prescription valid that day) look at that day, not at today. The same guard
    named for a transition (starting the session) checks the moment itself.
    """

    kind: str
    guard: Guard

    @property
    def thresholds(self) -> tuple[str, ...]:
        return tuple(self.guard.thresholds)

    @property
    def reads(self) -> frozenset[str] | None:
        inner = guard_reads(self.guard)
        return None if inner is None else inner | APPOINTMENT_KINDS

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if visit_kind(ctx) != self.kind:
            return None
        starts = visit_start(ctx)
        return self.guard(ctx if starts is None else ctx._replace(now=starts))


@dataclass(frozen=True)
class AdjustmentFits:
    """A ledger correction fits the ledger: the charge it names exists and is not void, a write-off is no
    more than is open on it, a refund no more than the credit (``kapflow.domain.billing``)."""

    billing: Billing
    thresholds: tuple[str, ...] = ()

    @property
    def reads(self) -> frozenset[str]:  # its sentence quotes the ledger's amounts
        return frozenset(self.billing.facts.ledger)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        problem = adjustment_problem(ledger(ctx.facts, self.billing), ctx.data)
        return Blocker("adjustment_does_not_fit", problem) if problem else None
