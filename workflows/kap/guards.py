"""The KAP pathway's guards: pure checks of a case's facts, moves and the clock.

Each guard is a small callable: thresholds it reads are named in
``thresholds`` (checked when the workflow loads) and the verdict is a
``Blocker`` with a stable code and a sentence front-desk staff can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from kapflow.domain.case import CaseFacts, FactEntry
from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import Guard, GuardContext
from kapflow.workflows import clinical_guards
from kapflow.workflows.clinical_guards import AppointmentNotInPast as AppointmentNotInPast
from kapflow.workflows.clinical_guards import AppointmentOpen as AppointmentOpen
from kapflow.workflows.clinical_guards import WhenBooking as WhenBooking
from kapflow.workflows.clinical_guards import facts_since as _since
from kapflow.workflows.clinical_guards import missing_questionnaires
from kapflow.workflows.clinical_guards import whole as _num
from kapflow.workflows.kap.moments import CONTINUE_AFTER_REVIEW, DOSING, HOLD_FOR_REVIEW, last_serious_event


@lru_cache(maxsize=64)
def _decimal(amount: object) -> Decimal:
    """An amount as a Decimal; the fee and the usual payments recur, so they are parsed once."""
    return Decimal(str(amount))


def _money(amount: Decimal) -> str:
    return f"${amount:,.2f}".replace(".00", "")


# A threshold's span as a timedelta, built once per value: thresholds recur on every command.
@lru_cache(maxsize=64)
def _minutes_span(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def _minutes(ctx: GuardContext, name: str) -> timedelta:
    return _minutes_span(int(ctx.thresholds[name]))


def _dosings(facts: CaseFacts) -> list[datetime]:
    """When each KAP session started (several guards ask, so it is derived once per command)."""
    return facts.derived(_dosing_times, _dosing_times)


def _dosing_times(facts: CaseFacts) -> list[datetime]:
    return [m.at for m in facts.moves_by(DOSING)]


def _last_dosing(facts: CaseFacts) -> datetime | None:
    move = facts.last_move(DOSING)
    return move.at if move else None


class _Base:
    thresholds: tuple[str, ...] = ()


class EvaluationFeePaid(_Base):
    reads = frozenset({"payment"})
    thresholds = ("evaluation_fee",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        due = _decimal(ctx.thresholds["evaluation_fee"])
        fees = ctx.facts.where("payment", "purpose", "evaluation_fee")
        paid = sum((_decimal(f.data["amount"]) for f in fees), Decimal(0))
        if paid >= due:
            return None
        return Blocker(
            "evaluation_fee_unpaid",
            f"{_money(due)} evaluation fee is due before the evaluation (paid so far: {_money(paid)})",
            facts=(("paid", str(paid)), ("due", str(due))),
        )


@dataclass(frozen=True)
class AppointmentBooked(clinical_guards.AppointmentBooked):
    """An appointment of ``kind`` is booked and still ahead (cancelled and past ones do not count).

    With ``after_dosing``, the rule only applies once a KAP session has happened
    (the integration session that should follow it).
    """

    after_dosing: bool = False

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if self.after_dosing and _last_dosing(ctx.facts) is None:
            return None
        return super().__call__(ctx)


class ScreeningRecorded(_Base):
    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if ctx.facts.latest("screening"):
            return None
        return Blocker("screening_missing", "record the prescriber's screening (exclusions and review flags) first")


class NoHardExclusion(_Base):
    def __call__(self, ctx: GuardContext) -> Blocker | None:
        screening = ctx.facts.latest("screening")
        found = list(screening.data["exclusions"]) if screening else []
        if not found:
            return None
        listed = ", ".join(str(x).replace("_", " ") for x in found)
        return Blocker(
            "hard_exclusion",
            f"a hard exclusion is recorded ({listed}): KAP is not suitable; record the client as ineligible",
            facts=(("exclusions", ",".join(map(str, found))),),
        )


class ReviewFlagsCleared(_Base):
    def __call__(self, ctx: GuardContext) -> Blocker | None:
        screening = ctx.facts.latest("screening")
        if not screening or not screening.data["flags"] or screening.data["flags_reviewed"]:
            return None
        flags = ", ".join(str(x).replace("_", " ") for x in screening.data["flags"])
        return Blocker(
            "review_flags_open",
            f"the prescriber must review the flagged items ({flags}) and record the review",
            facts=(("flags", ",".join(map(str, screening.data["flags"]))),),
        )


class OfMinimumAge(_Base):
    thresholds = ("minimum_age",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        inquiry = ctx.facts.latest("inquiry")
        if inquiry is None:
            return Blocker("date_of_birth_missing", "record the client's date of birth")
        born = date.fromisoformat(str(inquiry.data["date_of_birth"]))
        today = ctx.today
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        minimum = _num(ctx, "minimum_age")
        if age >= minimum:
            return None
        return Blocker(
            "under_minimum_age",
            f"the client is {age}; KAP here is for clients aged {minimum} or over",
            facts=(("age", str(age)), ("minimum_age", str(minimum))),
        )


class PrescriptionValid(_Base):
    """The latest prescription is valid on the practice's date of ``ctx.now``.

    Starting a KAP session checks the moment itself; a booking (``WhenBooking``) checks the visit's
    start, so its blocker names the visit's date rather than today.
    """

    reads = frozenset({"prescription"})
    def __call__(self, ctx: GuardContext) -> Blocker | None:
        rx = ctx.facts.latest("prescription")
        today = ctx.today.isoformat()
        if rx is None:
            return Blocker("prescription_missing", "the prescriber must issue the ketamine prescription first")
        visit = clinical_guards.visit_start(ctx) is not None
        day = f"the visit on {today}" if visit else "today"
        if str(rx.data["issued_on"]) > today:
            return Blocker(
                "prescription_not_yet_valid",
                f"the prescription is dated {rx.data['issued_on']}, after {day}",
                facts=(("issued_on", str(rx.data["issued_on"])),),
            )
        if str(rx.data["expires_on"]) < today:
            ask = "ask the prescriber to renew it" + (", or book a date it covers" if visit else "")
            return Blocker(
                "prescription_expired",
                f"the prescription expire{'s' if visit else 'd'} on {rx.data['expires_on']}"
                f"{', before ' + day if visit else ''}; {ask}",
                facts=(("expires_on", str(rx.data["expires_on"])),),
            )
        return None


@dataclass(frozen=True)
class ConsentSigned(clinical_guards.ConsentSigned):
    """The KAP informed consent is signed and not withdrawn since."""

    form: str = "KAP informed consent form"


class IntentionSet(_Base):
    reads = frozenset[str]()  # moves only

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if ctx.facts.last_move("complete_intention_setting"):
            return None
        return Blocker("intention_not_set", "the intention-setting session must be completed first")


def planned_sessions(facts: CaseFacts, until: datetime | None = None) -> int | None:
    """The plan's number of KAP sessions, after every set, extension and early end (up to ``until``)."""
    if until is None:  # the plan as it stands: several guards ask, so it is derived once per command
        return facts.derived(planned_sessions, lambda f: _planned_until(f, None))
    return _planned_until(facts, until)


def _planned_until(facts: CaseFacts, until: datetime | None) -> int | None:
    planned: int | None = None
    dosings = _dosings(facts)
    for f in facts.of_kind("treatment_plan"):
        if until is not None and f.at > until:
            break
        action = f.data["action"]
        if action == "set":
            planned = int(f.data["sessions"])
        elif action == "extend":
            planned = (planned or 0) + int(f.data["sessions"])
        else:
            planned = sum(1 for d in dosings if d <= f.at)
    return planned


class TreatmentPlanSet(_Base):
    reads = frozenset({"treatment_plan"})

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if planned_sessions(ctx.facts) is not None:
            return None
        return Blocker("treatment_plan_missing", "record the treatment plan (number of KAP sessions) first")


class PlanSessionsRemain(_Base):
    reads = frozenset({"treatment_plan"})

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        planned = planned_sessions(ctx.facts)
        done = len(_dosings(ctx.facts))
        if planned is None or done < planned:
            return None
        return Blocker(
            "plan_sessions_used",
            f"all {planned} planned KAP sessions are done; reassess and extend the plan, or complete treatment",
            facts=(("planned", str(planned)), ("done", str(done))),
        )


class PlanFinished(_Base):
    reads = frozenset({"treatment_plan"})

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        planned = planned_sessions(ctx.facts) or 0
        done = len(_dosings(ctx.facts))
        if done >= planned:
            return None
        return Blocker(
            "plan_not_finished",
            f"{planned - done} planned KAP sessions remain; finish them or end the plan early",
            facts=(("planned", str(planned)), ("done", str(done))),
        )


class ReassessmentNotDue(_Base):
    thresholds = ("reassess_every",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        last = ctx.facts.last_move("complete_reassessment")
        dosings = _dosings(ctx.facts)
        since = [d for d in dosings if last is None or d > last.at]
        every = _num(ctx, "reassess_every")
        used_up = ctx.facts.derived(_plan_used_up_at, _plan_used_up_at)
        planned = planned_sessions(ctx.facts)
        extended_since = planned is not None and len(dosings) < planned
        if used_up is not None and (last is None or used_up > last.at) and extended_since:
            # Extending a used-up plan is decided at a reassessment, not instead of one.
            # (While the plan is still used up, plan_sessions_remain already says so.)
            return Blocker(
                "reassessment_due",
                "the planned KAP sessions were all done; the prescriber must reassess before more",
                facts=(("plan_used_up", ctx.calendar.local_date(used_up).isoformat()),),
            )
        if len(since) < every:
            return None
        return Blocker(
            "reassessment_due",
            f"{len(since)} KAP sessions since the last reassessment; the prescriber must reassess before more",
            facts=(("since_reassessment", str(len(since))), ("reassess_every", str(every))),
        )


def _plan_used_up_at(facts: CaseFacts) -> datetime | None:
    """The latest dosing that used up the plan as it stood then, if any."""
    used_up = None
    for n, moment in enumerate(_dosings(facts), 1):
        planned = planned_sessions(facts, until=moment)
        if planned is not None and n >= planned:
            used_up = moment
    return used_up


class SessionFrequency(_Base):
    """At most ``max_sessions_per_window`` KAP sessions in a window of ``window_days`` local days.

    The window is the practice's calendar time, not 24-hour spans: a session at 10:00 on a Monday
    counts until 10:00 on the Monday ``window_days`` later on the practice's clocks, whether or not
    they changed in between (a week across a DST change is 167 or 169 hours). The blocker says when
    the next session can start, in the practice's time zone with its abbreviation.
    """

    thresholds = ("max_sessions_per_window", "window_days")

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        days = _num(ctx, "window_days")
        recent = [d for d in _dosings(ctx.facts) if ctx.now < ctx.calendar.days_later(d, days)]
        limit = _num(ctx, "max_sessions_per_window")
        if len(recent) < limit:
            return None
        next_ok = ctx.calendar.days_later(min(recent), days)
        return Blocker(
            "session_frequency_exceeded",
            f"{len(recent)} KAP sessions in the last {days} days (limit {limit}); the next can start from "
            f"{ctx.calendar.time_text(next_ok)}",
            facts=(("recent", str(len(recent))), ("limit", str(limit)), ("window_days", str(days))),
        )


class PreviousIntegrationDone(_Base):
    """Every dosing is followed by its integration psychotherapy before the next KAP session.

    The state structure already routes each dosing through ``integration_psychotherapy``: this
    guard is that state's ``pending`` reason, so a refusal there says what is missing.
    """

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        dosings = _dosings(ctx.facts)
        integrations = len(ctx.facts.moves_by("complete_integration"))
        if integrations >= len(dosings):
            return None
        day = dosings[integrations].astimezone(ctx.tz).date()
        return Blocker(
            "integration_pending",
            f"the integration psychotherapy of the KAP session on {day.isoformat()} is not completed",
            facts=(("session_on", day.isoformat()),),
        )


class LapseCheckin(_Base):
    """After a lapse of more than ``lapse_days`` since the last KAP session, a prescriber check-in first.

    ``lapse_days`` counts the practice's calendar days: a session on local date D allows sessions
    without a check-in through local date D + ``lapse_days`` (all day, whatever the clocks did in
    between); from local date D + ``lapse_days`` + 1 on, a check-in is needed. A check-in counts once
    the lapse is at hand: if its local date is D + ``lapse_days`` or later (made on the last day a
    session needs none, or after). One made earlier says nothing of the client after the lapse.
    The blocker's ``last_session`` is local date D.
    """

    thresholds = ("lapse_days",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        last = _last_dosing(ctx.facts)
        if last is None:
            return None
        days = _num(ctx, "lapse_days")
        last_day = ctx.calendar.local_date(last)
        last_free_day = last_day + timedelta(days=days)
        if ctx.today <= last_free_day:
            return None
        if _since(ctx.facts, "prescriber_checkin", ctx.calendar.start_of_day(last_free_day)):
            return None
        return Blocker(
            "prescriber_checkin_required",
            f"more than {days} days since the last KAP session; a prescriber check-in is needed first",
            facts=(("last_session", last_day.isoformat()), ("lapse_days", str(days))),
        )


@dataclass(frozen=True)
class RecentSinceDosing:
    """A fact of ``kind`` recorded for this session: after the last dosing and within a window."""

    kind: str
    code: str
    message: str
    window: str = "predose_window_minutes"

    @property
    def thresholds(self) -> tuple[str, ...]:
        return (self.window,)

    @property
    def reads(self) -> frozenset[str]:
        return frozenset({self.kind})

    def find(self, ctx: GuardContext) -> list[FactEntry]:
        start = ctx.now - _minutes(ctx, self.window)
        last = _last_dosing(ctx.facts)
        return [f for f in ctx.facts.since(self.kind, start) if last is None or f.at > last]

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        if self.find(ctx):
            return None
        return Blocker(self.code, self.message, facts=(("window_minutes", str(_num(ctx, self.window))),))


class FastingAttested(RecentSinceDosing):
    def __init__(self) -> None:
        super().__init__(
            "fasting", "fasting_not_attested", "the client must attest to fasting before dosing",
            "attestation_window_minutes",
        )

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        found = self.find(ctx)
        if found and found[-1].data["attested"]:
            return None
        return Blocker(self.code, self.message)


@dataclass(frozen=True)
class VitalsInRange:
    """The latest vitals of ``phase`` (after the last dosing for pre-dose, since it for post-dose) in range."""

    phase: str
    thresholds: tuple[str, ...] = ("max_systolic", "max_diastolic", "predose_window_minutes")

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        last = _last_dosing(ctx.facts)
        if self.phase == "pre_dose":
            start = ctx.now - _minutes(ctx, "predose_window_minutes")
            if last is not None and last > start:
                start = last
        else:
            start = last or ctx.now
        readings = [v for v in ctx.facts.since("vitals", start) if v.data["phase"] == self.phase]
        label = self.phase.replace("_", "-")
        if not readings:
            return Blocker(f"{self.phase}_vitals_missing", f"record the client's {label} vitals first")
        latest = readings[-1].data
        sys_bp, dia_bp = int(latest["systolic"]), int(latest["diastolic"])
        top_s, top_d = _num(ctx, "max_systolic"), _num(ctx, "max_diastolic")
        if sys_bp <= top_s and dia_bp <= top_d:
            return None
        return Blocker(
            f"{self.phase}_blood_pressure_high",
            f"{label} blood pressure {sys_bp}/{dia_bp} is above {top_s}/{top_d} mmHg: hold for the prescriber",
            facts=(("blood_pressure", f"{sys_bp}/{dia_bp}"), ("limit", f"{top_s}/{top_d}")),
        )


class ObservationElapsed(_Base):
    thresholds = ("observation_minutes",)

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        last = _last_dosing(ctx.facts)
        minimum = _num(ctx, "observation_minutes")
        observed = int((ctx.now - last).total_seconds() // 60) if last else 0
        if observed >= minimum:
            return None
        return Blocker(
            "observation_incomplete",
            f"the client has been observed for {observed} minutes; discharge after {minimum}",
            facts=(("observed_minutes", str(observed)), ("minimum", str(minimum))),
        )


class ClientStable(_Base):
    def __call__(self, ctx: GuardContext) -> Blocker | None:
        last = _last_dosing(ctx.facts)
        checks = _since(ctx.facts, "discharge_check", last)
        if not checks:
            return Blocker("discharge_check_missing", "record the discharge check (client stable, no driving)")
        latest = checks[-1].data
        if not latest["stable"]:
            return Blocker("client_not_stable", "the client is not yet stable: keep observing")
        if not latest["no_driving_acknowledged"]:
            return Blocker("no_driving_not_acknowledged", "the client must acknowledge: no driving until the next day")
        return None


class QuestionnairesCurrent(_Base):
    """PHQ-9 and GAD-7 both recorded since the last dosing (used by reminders)."""

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        missing = missing_questionnaires(ctx.facts, _last_dosing(ctx.facts))
        if not missing:
            return None
        return Blocker("questionnaires_due", f"questionnaires due before the next KAP session: {', '.join(missing)}")


def kap_guards() -> dict[str, Guard]:
    """Every named guard of the KAP pathway."""
    pre_dose_escort = RecentSinceDosing(
        "escort", "escort_missing", "arrange an escort (name and phone) to take the client home",
        "attestation_window_minutes",
    )
    clinician = RecentSinceDosing(
        "clinician_present", "clinician_not_present", "record the clinician present for the dosing"
    )
    return {
        "evaluation_fee_paid": EvaluationFeePaid(),
        "evaluation_booked": AppointmentBooked("evaluation"),
        "integration_session_booked": AppointmentBooked("integration_session", after_dosing=True),
        "intention_setting_booked": AppointmentBooked("intention_setting"),
        "appointment_open": AppointmentOpen(),
        "appointment_not_in_past": AppointmentNotInPast(),
        "screening_recorded": ScreeningRecorded(),
        "no_hard_exclusion": NoHardExclusion(),
        "review_flags_cleared": ReviewFlagsCleared(),
        "of_minimum_age": OfMinimumAge(),
        "prescription_valid": PrescriptionValid(),
        "consent_signed": ConsentSigned(),
        "intention_set": IntentionSet(),
        "treatment_plan_set": TreatmentPlanSet(),
        "plan_sessions_remain": PlanSessionsRemain(),
        "plan_finished": PlanFinished(),
        "reassessment_not_due": ReassessmentNotDue(),
        "session_frequency": SessionFrequency(),
        "previous_integration_done": PreviousIntegrationDone(),
        "lapse_checkin": LapseCheckin(),
        "pre_dose_vitals_in_range": VitalsInRange("pre_dose"),
        "post_dose_vitals_in_range": VitalsInRange("post_dose"),
        "fasting_attested": FastingAttested(),
        "escort_arranged": pre_dose_escort,
        "clinician_present": clinician,
        "observation_elapsed": ObservationElapsed(),
        "client_stable": ClientStable(),
        "questionnaires_current": QuestionnairesCurrent(),
        "kap_booking_prescription": WhenBooking("kap_session", PrescriptionValid()),
        "kap_booking_consent": WhenBooking("kap_session", ConsentSigned()),
        "kap_booking_intention": WhenBooking("kap_session", IntentionSet()),
        "safety_review_done": SafetyReviewDone(),
    }


class SafetyReviewDone(_Base):
    """No serious adverse event, and no hold for a safety review, waits for the prescriber's decision.

    Only the prescriber's ``continue_after_review`` releases them: a pause, a resume or a new
    prescription does not. A serious event recorded after the session (in its integration, or days
    later) blocks the next KAP session the same way, so it can never be dosed past.
    """

    def __call__(self, ctx: GuardContext) -> Blocker | None:
        released = ctx.facts.last_move(CONTINUE_AFTER_REVIEW)
        serious = last_serious_event(ctx.facts)
        if serious is not None and (released is None or released.at < serious):
            day = ctx.calendar.local_date(serious).isoformat()
            return Blocker(
                "adverse_event_review_pending",
                f"a serious adverse event was recorded on {day}; no KAP session until the prescriber's "
                "safety review decides to continue the plan",
                facts=(("recorded_on", day),),
            )
        held = ctx.facts.last_move(HOLD_FOR_REVIEW)
        if held is not None and (released is None or released.at < held.at):
            day = ctx.calendar.local_date(held.at).isoformat()
            return Blocker(
                "safety_review_pending",
                f"the case was held for the prescriber's safety review on {day}; only the prescriber's "
                "decision (continue, pause or end the plan) releases it",
                facts=(("held_on", day),),
            )
        return None


def plan_summary(facts: CaseFacts) -> dict[str, object]:
    """The treatment plan's progress, for staff reading the case: sessions done of those planned."""
    planned = planned_sessions(facts)
    done = len(_dosings(facts))
    text = None if planned is None else f"{done} of {planned} KAP sessions"
    return {"planned": planned, "done": done, "text": text}
