"""The KAP pathway's guards as pure functions of a case's projection and the clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import blood_pressures, dosing_offsets_hours, payments

from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.errors import Blocker
from kapflow.domain.verdict import evaluate
from kapflow.domain.workflow import GuardContext
from kapflow.workflows.kap import KAP_PATHWAY, THRESHOLDS
from kapflow.workflows.measures import answered

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
DOSING = "start_kap_session"


class Case:
    """A case's projection built with fold_fact/fold_move; facts pass through the KAP specs first."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {"facts": [], "moves": []}

    def fact(self, kind: str, data: Mapping[str, Any], at: datetime = T0) -> Case:
        parsed = KAP_PATHWAY.facts[kind].spec(data, at)
        self.raw = fold_fact(self.raw, kind, at, "tester", parsed)
        return self

    def move(self, trigger: str, at: datetime = T0, source: str = "s", dest: str = "d") -> Case:
        self.raw = fold_move(self.raw, trigger, source, dest, at)
        return self

    def dose(self, at: datetime = T0) -> Case:
        return self.move(DOSING, at, "ready_for_kap", "dosing")

    def ctx(
        self,
        now: datetime = T0,
        data: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, int | float] = THRESHOLDS,
        tz: tzinfo = UTC,
    ) -> GuardContext:
        return GuardContext("case-1", "ready_for_kap", DOSING, CaseFacts(self.raw), now, thresholds, data or {},
                            PracticeCalendar(tz))

    def run(self, guard: str, now: datetime = T0, **kw: Any) -> Blocker | None:
        return KAP_PATHWAY.guards[guard](self.ctx(now, **kw))

    def code(self, guard: str, now: datetime = T0, **kw: Any) -> str | None:
        blocker = self.run(guard, now, **kw)
        return None if blocker is None else blocker.code


def pay(amount: str, purpose: str = "evaluation_fee") -> dict[str, str]:
    return {"amount": amount, "purpose": purpose}


def inquiry(born: str) -> dict[str, Any]:
    return {"first_name": "Sample", "last_name": "Client", "date_of_birth": born, "email": "s@example.org"}


def rx(issued: str, expires: str) -> dict[str, str]:
    return {"prescriber": "NP Sample", "issued_on": issued, "expires_on": expires}


def vitals(systolic: int, diastolic: int, phase: str = "pre_dose") -> dict[str, Any]:
    return {"phase": phase, "systolic": systolic, "diastolic": diastolic}


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def days(n: float) -> timedelta:
    return timedelta(days=n)


# --- evaluation fee ---------------------------------------------------------------------------


def test_fee_unpaid_without_payment() -> None:
    """With no payment the evaluation is blocked, naming the fee and what was paid."""
    blocker = Case().run("evaluation_fee_paid")
    assert blocker is not None
    assert blocker.code == "evaluation_fee_unpaid"
    assert "$250" in blocker.message
    assert "paid so far: $0" in blocker.message
    assert dict(blocker.facts) == {"paid": "0", "due": "250"}


def test_fee_partial_payments_summing_to_the_fee_pass() -> None:
    """Two partial payments of 100 and 150 together pay the fee."""
    case = Case().fact("payment", pay("100")).fact("payment", pay("150"))
    assert case.code("evaluation_fee_paid") is None


def test_fee_one_cent_short_blocks() -> None:
    """249.99 is not enough."""
    blocker = Case().fact("payment", pay("249.99")).run("evaluation_fee_paid")
    assert blocker is not None
    assert blocker.code == "evaluation_fee_unpaid"
    assert "paid so far: $249.99" in blocker.message


def test_fee_other_purposes_do_not_count() -> None:
    """Psychotherapy and other payments do not pay the evaluation fee."""
    case = (
        Case()
        .fact("payment", pay("100"))
        .fact("payment", pay("165", "psychotherapy"))
        .fact("payment", pay("200", "other"))
    )
    assert case.code("evaluation_fee_paid") == "evaluation_fee_unpaid"


def test_fee_follows_the_threshold() -> None:
    """A practice charging 300 is not satisfied by 250."""
    case = Case().fact("payment", pay("250"))
    assert case.code("evaluation_fee_paid") is None
    assert case.code("evaluation_fee_paid", thresholds={**THRESHOLDS, "evaluation_fee": 300}) == (
        "evaluation_fee_unpaid"
    )


@given(st.lists(payments(), max_size=8))
def test_fee_passes_iff_evaluation_payments_reach_the_fee(paid: list[dict[str, str]]) -> None:
    """EvaluationFeePaid passes exactly when the evaluation_fee payments sum to 250 or more."""
    case = Case()
    for p in paid:
        case.fact("payment", p)
    total = sum((Decimal(p["amount"]) for p in paid if p["purpose"] == "evaluation_fee"), Decimal(0))
    assert (case.run("evaluation_fee_paid") is None) == (total >= 250)


# --- screening and eligibility ---------------------------------------------------------------


def test_screening_missing_then_recorded() -> None:
    """find_suitable needs a screening on record."""
    assert Case().code("screening_recorded") == "screening_missing"
    assert Case().fact("screening", {}).code("screening_recorded") is None


def test_hard_exclusion_blocks() -> None:
    """A recorded hard exclusion blocks a suitable finding and names the exclusion."""
    blocker = Case().fact("screening", {"exclusions": ["ketamine_allergy"]}).run("no_hard_exclusion")
    assert blocker is not None
    assert blocker.code == "hard_exclusion"
    assert "ketamine allergy" in blocker.message
    assert dict(blocker.facts) == {"exclusions": "ketamine_allergy"}


def test_no_hard_exclusion_passes() -> None:
    """A screening with no exclusion passes."""
    assert Case().fact("screening", {"exclusions": [], "flags": []}).code("no_hard_exclusion") is None


def test_latest_screening_decides_exclusions() -> None:
    """A later screening without exclusions supersedes an earlier one with them."""
    case = Case().fact("screening", {"exclusions": ["under_18"]}).fact("screening", {}, T0 + days(1))
    assert case.code("no_hard_exclusion", T0 + days(1)) is None


def test_review_flags_open_until_reviewed() -> None:
    """Flags for review block until the prescriber records the review."""
    flagged = Case().fact("screening", {"flags": ["pregnancy", "maois"]})
    blocker = flagged.run("review_flags_cleared")
    assert blocker is not None
    assert blocker.code == "review_flags_open"
    assert dict(blocker.facts) == {"flags": "maois,pregnancy"}
    reviewed = Case().fact("screening", {"flags": ["pregnancy"], "flags_reviewed": True})
    assert reviewed.code("review_flags_cleared") is None
    assert Case().fact("screening", {"flags": []}).code("review_flags_cleared") is None


def test_eighteenth_birthday_today_passes() -> None:
    """A client whose 18th birthday is today is old enough."""
    assert Case().fact("inquiry", inquiry("2008-03-02")).code("of_minimum_age") is None


def test_seventeen_year_old_blocks() -> None:
    """A client who turns 18 tomorrow is 17 today and is blocked."""
    blocker = Case().fact("inquiry", inquiry("2008-03-03")).run("of_minimum_age")
    assert blocker is not None
    assert blocker.code == "under_minimum_age"
    assert dict(blocker.facts) == {"age": "17", "minimum_age": "18"}


def test_age_without_inquiry() -> None:
    """Without a date of birth on record the age check asks for it."""
    assert Case().code("of_minimum_age") == "date_of_birth_missing"


# --- prescription, consent, intention, plan ---------------------------------------------------


def test_prescription_missing() -> None:
    """No prescription blocks a KAP session."""
    assert Case().code("prescription_valid") == "prescription_missing"


def test_prescription_expired_yesterday() -> None:
    """A prescription that expired yesterday blocks."""
    blocker = Case().fact("prescription", rx("2025-09-01", "2026-03-01")).run("prescription_valid")
    assert blocker is not None
    assert blocker.code == "prescription_expired"
    assert dict(blocker.facts) == {"expires_on": "2026-03-01"}


def test_prescription_expiring_today_is_valid() -> None:
    """A prescription is valid through its expiry date."""
    assert Case().fact("prescription", rx("2025-09-02", "2026-03-02")).code("prescription_valid") is None


def test_prescription_not_yet_valid() -> None:
    """A prescription dated tomorrow is not valid today."""
    case = Case().fact("prescription", rx("2026-03-03", "2026-09-01"))
    assert case.code("prescription_valid") == "prescription_not_yet_valid"
    assert case.code("prescription_valid", T0 + days(1)) is None


def test_renewed_prescription_replaces_the_expired_one() -> None:
    """The latest prescription counts: a renewal after expiry makes sessions possible again."""
    case = (
        Case()
        .fact("prescription", rx("2025-06-01", "2025-12-01"))
        .fact("prescription", rx("2026-03-01", "2026-09-01"))
    )
    assert case.code("prescription_valid") is None


def test_consent_missing() -> None:
    """No consent blocks a KAP session."""
    assert Case().code("consent_signed") == "consent_missing"


def test_consent_withdrawn_blocks_and_resigning_clears() -> None:
    """A withdrawal after signing blocks; a new consent signed after the withdrawal passes."""
    case = Case().fact("consent", {"form_version": "2026-01", "signed_on": "2026-03-02"})
    assert case.code("consent_signed") is None
    case.fact("consent_withdrawn", {"withdrawn_on": "2026-03-03"}, T0 + days(1))
    assert case.code("consent_signed", T0 + days(1)) == "consent_withdrawn"
    case.fact("consent", {"form_version": "2026-01", "signed_on": "2026-03-04"}, T0 + days(2))
    assert case.code("consent_signed", T0 + days(2)) is None


def test_intention_not_set_until_completed() -> None:
    """A KAP session needs the intention-setting session completed."""
    assert Case().code("intention_set") == "intention_not_set"
    assert Case().move("start_intention_setting").code("intention_set") == "intention_not_set"
    assert Case().move("complete_intention_setting").code("intention_set") is None


def test_treatment_plan_missing_then_set() -> None:
    """A KAP session needs a treatment plan."""
    assert Case().code("treatment_plan_set") == "treatment_plan_missing"
    assert Case().fact("treatment_plan", {"action": "set", "sessions": 3}).code("treatment_plan_set") is None


def test_plan_sessions_used() -> None:
    """With a plan of 2, a third session is blocked after two dosings."""
    case = Case().fact("treatment_plan", {"action": "set", "sessions": 2}).dose(T0 + days(1))
    assert case.code("plan_sessions_remain", T0 + days(2)) is None
    case.dose(T0 + days(8))
    blocker = case.run("plan_sessions_remain", T0 + days(9))
    assert blocker is not None
    assert blocker.code == "plan_sessions_used"
    assert dict(blocker.facts) == {"planned": "2", "done": "2"}


def test_plan_extension_adds_sessions() -> None:
    """Extending a used-up plan by one allows one more session."""
    case = Case().fact("treatment_plan", {"action": "set", "sessions": 1}).dose(T0 + days(1))
    assert case.code("plan_sessions_remain", T0 + days(2)) == "plan_sessions_used"
    case.fact("treatment_plan", {"action": "extend", "sessions": 1}, T0 + days(2))
    assert case.code("plan_sessions_remain", T0 + days(2)) is None
    case.dose(T0 + days(9))
    assert case.code("plan_sessions_remain", T0 + days(10)) == "plan_sessions_used"


def test_plan_ended_early_caps_at_sessions_done() -> None:
    """Ending a plan of 4 early after one session leaves no sessions and finishes the plan."""
    case = Case().fact("treatment_plan", {"action": "set", "sessions": 4}).dose(T0 + days(1))
    assert case.code("plan_finished", T0 + days(2)) == "plan_not_finished"
    case.fact("treatment_plan", {"action": "end_early", "reason": "goals met"}, T0 + days(2))
    blocker = case.run("plan_sessions_remain", T0 + days(2))
    assert blocker is not None
    assert dict(blocker.facts) == {"planned": "1", "done": "1"}
    assert case.code("plan_finished", T0 + days(2)) is None


def test_reassessment_due_every_six_sessions() -> None:
    """Six sessions since the last reassessment block the seventh; a reassessment clears it."""
    case = Case()
    for i in range(5):
        case.dose(T0 + days(4 * i))
    assert case.code("reassessment_not_due", T0 + days(30)) is None
    case.dose(T0 + days(20))
    blocker = case.run("reassessment_not_due", T0 + days(30))
    assert blocker is not None
    assert blocker.code == "reassessment_due"
    assert dict(blocker.facts) == {"since_reassessment": "6", "reassess_every": "6"}
    case.move("complete_reassessment", T0 + days(25), "reassessment", "ready_for_kap")
    assert case.code("reassessment_not_due", T0 + days(30)) is None


# --- frequency, integration, lapse -------------------------------------------------------------


def test_session_frequency_two_in_seven_days() -> None:
    """Two sessions in the last 7 days block a third and say when the next may start."""
    case = Case().dose(T0).dose(T0 + days(1))
    blocker = case.run("session_frequency", T0 + days(3))
    assert blocker is not None
    assert blocker.code == "session_frequency_exceeded"
    assert "2026-03-09 09:00" in blocker.message
    assert dict(blocker.facts) == {"recent": "2", "limit": "2", "window_days": "7"}


def test_session_frequency_third_allowed_exactly_after_the_window() -> None:
    """Seven days after the first of two sessions, the third is allowed; a minute earlier it is not."""
    case = Case().dose(T0).dose(T0 + days(1))
    assert case.code("session_frequency", T0 + days(7) - minutes(1)) == "session_frequency_exceeded"
    assert case.code("session_frequency", T0 + days(7)) is None


def test_session_frequency_one_recent_session_passes() -> None:
    """One session in the window is under the limit of two."""
    assert Case().dose(T0).code("session_frequency", T0 + days(1)) is None


@given(dosing_offsets_hours())
def test_session_frequency_property(offsets: list[int]) -> None:
    """SessionFrequency blocks exactly when two or more sessions started in the last 7 days."""
    now = T0 + days(40)
    case = Case()
    for h in sorted(offsets, reverse=True):
        case.dose(now - timedelta(hours=h))
    recent = sum(1 for h in offsets if h < 7 * 24)
    assert (case.run("session_frequency", now) is None) == (recent < 2)


def test_integration_pending_after_dosing() -> None:
    """After a dosing, the next session needs that session's integration done."""
    case = Case().dose(T0)
    assert Case().code("previous_integration_done") is None
    assert case.code("previous_integration_done", T0 + days(1)) == "integration_pending"
    case.move("complete_integration", T0 + minutes(180))
    assert case.code("previous_integration_done", T0 + days(1)) is None


def test_prescriber_checkin_required_after_91_days() -> None:
    """91 days after the last session a prescriber check-in is needed; 89 or exactly 90 days is fine."""
    case = Case().dose(T0)
    blocker = case.run("lapse_checkin", T0 + days(91))
    assert blocker is not None
    assert blocker.code == "prescriber_checkin_required"
    assert dict(blocker.facts) == {"last_session": "2026-03-02", "lapse_days": "90"}
    assert case.code("lapse_checkin", T0 + days(89)) is None
    assert case.code("lapse_checkin", T0 + days(90)) is None


def test_checkin_after_last_dosing_clears_the_lapse() -> None:
    """A check-in recorded after the last dosing clears the lapse; one from before it does not."""
    before = Case().fact("prescriber_checkin", {"prescriber": "NP Sample"}, T0 - days(1)).dose(T0)
    assert before.code("lapse_checkin", T0 + days(91)) == "prescriber_checkin_required"
    after = Case().dose(T0).fact("prescriber_checkin", {"prescriber": "NP Sample"}, T0 + days(91))
    assert after.code("lapse_checkin", T0 + days(91)) is None


def test_no_lapse_before_the_first_session() -> None:
    """A case with no dosing yet needs no check-in."""
    assert Case().code("lapse_checkin", T0 + days(400)) is None


# --- frequency and lapse on the practice's calendar (issue 14, items 1 and 2) --------------------

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    """A wall-clock time in ``tz`` as the UTC instant the engine stores."""
    return datetime(y, mo, d, h, mi, tzinfo=tz).astimezone(UTC)


CHECKIN = {"prescriber": "NP Sample"}


@pytest.mark.parametrize(
    ("tz", "first", "second", "next_ok", "shown"),
    [
        # clocks go forward on 8 March in New York: a week later at 10:00 is 167 hours on
        (NEW_YORK, (2026, 3, 2), (2026, 3, 5), (2026, 3, 9), "2026-03-09 10:00 EDT"),
        # and back on 1 November: a week later at 10:00 is 169 hours on
        (NEW_YORK, (2026, 10, 26), (2026, 10, 29), (2026, 11, 2), "2026-11-02 10:00 EST"),
        # Sydney's clocks go back on 5 April and forward on 4 October
        (SYDNEY, (2026, 4, 2), (2026, 4, 3), (2026, 4, 9), "2026-04-09 10:00 AEST"),
        (SYDNEY, (2026, 10, 1), (2026, 10, 2), (2026, 10, 8), "2026-10-08 10:00 AEDT"),
        (KOLKATA, (2026, 3, 2), (2026, 3, 5), (2026, 3, 9), "2026-03-09 10:00 IST"),
    ],
)
def test_session_frequency_window_is_a_local_week(
    tz: ZoneInfo, first: tuple[int, int, int], second: tuple[int, int, int], next_ok: tuple[int, int, int],
    shown: str,
) -> None:
    """A week later at the same local time is a week, across DST; the blocker shows the practice's time."""
    case = Case().dose(local(tz, *first)).dose(local(tz, *second))
    assert case.code("session_frequency", local(tz, *next_ok), tz=tz) is None
    blocker = case.run("session_frequency", local(tz, *next_ok, 9, 59), tz=tz)
    assert blocker is not None and blocker.code == "session_frequency_exceeded"
    assert f"the next can start from {shown}" in blocker.message
    assert "UTC" not in blocker.message


def test_lapse_counts_local_days_across_the_autumn_change() -> None:
    """Last session 1 Sep 10:00 EDT: 30 Nov (day 90) is allowed all day in EST; 1 Dec is not."""
    case = Case().dose(local(NEW_YORK, 2026, 9, 1))
    assert case.code("lapse_checkin", local(NEW_YORK, 2026, 11, 30), tz=NEW_YORK) is None
    assert case.code("lapse_checkin", local(NEW_YORK, 2026, 11, 30, 23, 59), tz=NEW_YORK) is None
    blocker = case.run("lapse_checkin", local(NEW_YORK, 2026, 12, 1, 0, 0), tz=NEW_YORK)
    assert blocker is not None and blocker.code == "prescriber_checkin_required"
    assert dict(blocker.facts) == {"last_session": "2026-09-01", "lapse_days": "90"}


def test_lapse_counts_local_days_across_the_spring_change() -> None:
    """Last session 10 Dec 10:00 EST: day 90 (10 March, EDT) is allowed at 10:00 and at 11:30 alike."""
    case = Case().dose(local(NEW_YORK, 2025, 12, 10))
    assert case.code("lapse_checkin", local(NEW_YORK, 2026, 3, 10), tz=NEW_YORK) is None
    assert case.code("lapse_checkin", local(NEW_YORK, 2026, 3, 10, 11, 30), tz=NEW_YORK) is None
    assert case.code("lapse_checkin", local(NEW_YORK, 2026, 3, 11, 0, 0), tz=NEW_YORK) == (
        "prescriber_checkin_required"
    )


def test_a_checkin_on_day_90_counts_for_day_91() -> None:
    """A check-in on the local date the limit is reached counts (10:30 EDT, before the session's
    10:00 EST plus 90 times 24 hours); one on day 89 is too early to count."""
    day_91 = local(NEW_YORK, 2026, 3, 11)
    on_day_90 = Case().dose(local(NEW_YORK, 2025, 12, 10)).fact(
        "prescriber_checkin", CHECKIN, local(NEW_YORK, 2026, 3, 10, 10, 30)
    )
    assert on_day_90.code("lapse_checkin", day_91, tz=NEW_YORK) is None
    on_day_89 = Case().dose(local(NEW_YORK, 2025, 12, 10)).fact(
        "prescriber_checkin", CHECKIN, local(NEW_YORK, 2026, 3, 9, 23, 59)
    )
    assert on_day_89.code("lapse_checkin", day_91, tz=NEW_YORK) == "prescriber_checkin_required"


def test_lapse_counts_local_days_in_sydney_across_both_changes() -> None:
    """Sydney: day 90 after 6 Jan (AEDT) is 6 April (AEST), after 7 July (AEST) it is 5 October (AEDT)."""
    autumn = Case().dose(local(SYDNEY, 2026, 1, 6))
    assert autumn.code("lapse_checkin", local(SYDNEY, 2026, 4, 6, 10, 0), tz=SYDNEY) is None
    assert autumn.code("lapse_checkin", local(SYDNEY, 2026, 4, 7, 0, 0), tz=SYDNEY) == "prescriber_checkin_required"
    spring = Case().dose(local(SYDNEY, 2026, 7, 7))
    assert spring.code("lapse_checkin", local(SYDNEY, 2026, 10, 5, 23, 0), tz=SYDNEY) is None
    assert spring.code("lapse_checkin", local(SYDNEY, 2026, 10, 6, 0, 0), tz=SYDNEY) == "prescriber_checkin_required"


def test_lapse_and_its_blocker_use_kolkata_dates() -> None:
    """A session at 03:00 IST is on the local date (the UTC date is the day before); day 91 starts at
    local midnight."""
    case = Case().dose(local(KOLKATA, 2026, 3, 2, 3, 0))
    assert case.code("lapse_checkin", local(KOLKATA, 2026, 5, 31, 23, 0), tz=KOLKATA) is None
    blocker = case.run("lapse_checkin", local(KOLKATA, 2026, 6, 1, 1, 0), tz=KOLKATA)
    assert blocker is not None and blocker.code == "prescriber_checkin_required"
    assert dict(blocker.facts) == {"last_session": "2026-03-02", "lapse_days": "90"}


def test_lapse_blocker_names_the_local_date_of_the_last_session() -> None:
    """A session on Monday 2 March at 19:30 in New York (00:30 UTC on the 3rd) is on 2026-03-02."""
    case = Case().dose(local(NEW_YORK, 2026, 3, 2, 19, 30))
    blocker = case.run("lapse_checkin", local(NEW_YORK, 2026, 6, 1), tz=NEW_YORK)
    assert blocker is not None
    assert dict(blocker.facts) == {"last_session": "2026-03-02", "lapse_days": "90"}


def test_plan_used_up_names_the_local_date() -> None:
    """The used-up plan's date is the practice's date of the session that used it up."""
    evening = local(NEW_YORK, 2026, 3, 2, 19, 30)
    case = Case().fact("treatment_plan", {"action": "set", "sessions": 1}, evening - days(1)).dose(evening)
    case.fact("treatment_plan", {"action": "extend", "sessions": 2}, evening + days(1))
    blocker = case.run("reassessment_not_due", evening + days(2), tz=NEW_YORK)
    assert blocker is not None and blocker.code == "reassessment_due"
    assert dict(blocker.facts) == {"plan_used_up": "2026-03-02"}


# --- the pre-dose checklist --------------------------------------------------------------------


def test_pre_dose_vitals_missing() -> None:
    """No pre-dose vitals block dosing."""
    assert Case().code("pre_dose_vitals_in_range") == "pre_dose_vitals_missing"


def test_pre_dose_vitals_at_the_limit_pass() -> None:
    """140/90 is within range."""
    assert Case().fact("vitals", vitals(140, 90), T0 - minutes(10)).code("pre_dose_vitals_in_range") is None


def test_pre_dose_systolic_high_blocks() -> None:
    """141/80 is above the systolic limit: hold for the prescriber."""
    blocker = Case().fact("vitals", vitals(141, 80), T0 - minutes(10)).run("pre_dose_vitals_in_range")
    assert blocker is not None
    assert blocker.code == "pre_dose_blood_pressure_high"
    assert dict(blocker.facts) == {"blood_pressure": "141/80", "limit": "140/90"}


def test_pre_dose_diastolic_high_blocks() -> None:
    """120/91 is above the diastolic limit."""
    case = Case().fact("vitals", vitals(120, 91), T0 - minutes(10))
    assert case.code("pre_dose_vitals_in_range") == "pre_dose_blood_pressure_high"


def test_latest_pre_dose_reading_decides() -> None:
    """A recheck within range after a high reading clears the block."""
    case = Case().fact("vitals", vitals(150, 95), T0 - minutes(30)).fact("vitals", vitals(130, 80), T0 - minutes(5))
    assert case.code("pre_dose_vitals_in_range") is None


def test_stale_pre_dose_vitals_block() -> None:
    """Vitals older than the 120-minute window are missing; exactly 120 minutes old still count."""
    assert Case().fact("vitals", vitals(120, 80), T0 - minutes(121)).code("pre_dose_vitals_in_range") == (
        "pre_dose_vitals_missing"
    )
    assert Case().fact("vitals", vitals(120, 80), T0 - minutes(120)).code("pre_dose_vitals_in_range") is None


def test_pre_dose_vitals_before_the_last_dosing_do_not_count() -> None:
    """Vitals taken before the last dosing belong to that session, not the next."""
    case = Case().fact("vitals", vitals(120, 80), T0 - minutes(100)).dose(T0 - minutes(90))
    assert case.code("pre_dose_vitals_in_range") == "pre_dose_vitals_missing"


def test_post_dose_vitals_are_separate() -> None:
    """Post-dose vitals must follow the dosing; pre-dose readings do not count as post-dose."""
    case = Case().fact("vitals", vitals(120, 80), T0 - minutes(10)).dose(T0)
    assert case.code("post_dose_vitals_in_range", T0 + minutes(120)) == "post_dose_vitals_missing"
    case.fact("vitals", vitals(150, 85, "post_dose"), T0 + minutes(110))
    assert case.code("post_dose_vitals_in_range", T0 + minutes(120)) == "post_dose_blood_pressure_high"
    case.fact("vitals", vitals(125, 80, "post_dose"), T0 + minutes(118))
    assert case.code("post_dose_vitals_in_range", T0 + minutes(120)) is None


@given(blood_pressures())
def test_pre_dose_vitals_pass_iff_within_limits(bp: tuple[int, int]) -> None:
    """The pre-dose vitals guard passes exactly when systolic <= 140 and diastolic <= 90."""
    systolic, diastolic = bp
    blocker = Case().fact("vitals", vitals(systolic, diastolic), T0 - minutes(5)).run("pre_dose_vitals_in_range")
    assert (blocker is None) == (systolic <= 140 and diastolic <= 90)
    if blocker is not None:
        assert blocker.code == "pre_dose_blood_pressure_high"


def test_fasting_not_attested() -> None:
    """Dosing needs a fasting attestation that says yes, within 24 hours, since the last dosing."""
    assert Case().code("fasting_attested") == "fasting_not_attested"
    assert Case().fact("fasting", {"attested": False}, T0 - minutes(30)).code("fasting_attested") == (
        "fasting_not_attested"
    )
    assert Case().fact("fasting", {"attested": True}, T0 - minutes(30)).code("fasting_attested") is None
    assert Case().fact("fasting", {"attested": True}, T0 - days(1) - minutes(1)).code("fasting_attested") == (
        "fasting_not_attested"
    )


def test_fasting_from_the_previous_session_does_not_count() -> None:
    """An attestation made before the last dosing does not carry over."""
    case = Case().fact("fasting", {"attested": True}, T0 - minutes(300)).dose(T0 - minutes(240))
    assert case.code("fasting_attested") == "fasting_not_attested"


def test_escort_missing() -> None:
    """Dosing needs an escort arranged since the last dosing."""
    escort = {"name": "Escort Sample", "phone": "+1 555 010 0199"}
    assert Case().code("escort_arranged") == "escort_missing"
    assert Case().fact("escort", escort, T0 - days(1) + minutes(1)).code("escort_arranged") is None
    stale = Case().fact("escort", escort, T0 - minutes(300)).dose(T0 - minutes(240))
    assert stale.code("escort_arranged") == "escort_missing"


def test_clinician_not_present() -> None:
    """Dosing needs the clinician's presence recorded within the pre-dose window."""
    present = {"clinician": "Jordan Sample, LCSW"}
    assert Case().code("clinician_present") == "clinician_not_present"
    assert Case().fact("clinician_present", present, T0 - minutes(15)).code("clinician_present") is None
    assert Case().fact("clinician_present", present, T0 - minutes(121)).code("clinician_present") == (
        "clinician_not_present"
    )


# --- discharge ---------------------------------------------------------------------------------


def test_observation_incomplete_at_119_minutes() -> None:
    """119 minutes after dosing the client is not yet discharged; at 120 they may be."""
    case = Case().dose(T0)
    blocker = case.run("observation_elapsed", T0 + minutes(119))
    assert blocker is not None
    assert blocker.code == "observation_incomplete"
    assert dict(blocker.facts) == {"observed_minutes": "119", "minimum": "120"}
    assert case.code("observation_elapsed", T0 + minutes(119) + timedelta(seconds=59)) == "observation_incomplete"
    assert case.code("observation_elapsed", T0 + minutes(120)) is None


def test_client_stable_codes() -> None:
    """Discharge needs a check after dosing, a stable client and the no-driving acknowledgement."""
    dosed = Case().dose(T0)
    assert dosed.code("client_stable", T0 + minutes(120)) == "discharge_check_missing"
    not_stable = Case().dose(T0).fact("discharge_check", {"stable": False, "no_driving_acknowledged": True},
                                      T0 + minutes(110))
    assert not_stable.code("client_stable", T0 + minutes(120)) == "client_not_stable"
    no_ack = Case().dose(T0).fact("discharge_check", {"stable": True, "no_driving_acknowledged": False},
                                  T0 + minutes(110))
    assert no_ack.code("client_stable", T0 + minutes(120)) == "no_driving_not_acknowledged"
    ok = Case().dose(T0).fact("discharge_check", {"stable": True, "no_driving_acknowledged": True},
                              T0 + minutes(110))
    assert ok.code("client_stable", T0 + minutes(120)) is None


def test_discharge_check_from_before_dosing_does_not_count() -> None:
    """A discharge check from the previous session is not this session's."""
    case = Case().fact("discharge_check", {"stable": True, "no_driving_acknowledged": True}, T0 - minutes(5)).dose(T0)
    assert case.code("client_stable", T0 + minutes(120)) == "discharge_check_missing"


# --- reminders' guards and booking guards ------------------------------------------------------


def test_questionnaires_due() -> None:
    """Both PHQ-9 and GAD-7 are due since the last dosing; the message names the missing ones."""
    blocker = Case().run("questionnaires_current")
    assert blocker is not None
    assert blocker.code == "questionnaires_due"
    assert "GAD-7, PHQ-9" in blocker.message
    phq_only = Case().fact("questionnaire", answered("PHQ-9", 12))
    blocker = phq_only.run("questionnaires_current")
    assert blocker is not None
    assert blocker.message.endswith(": GAD-7")
    both = phq_only.fact("questionnaire", answered("GAD-7", 9))
    assert both.code("questionnaires_current") is None
    assert both.dose(T0 + days(1)).code("questionnaires_current", T0 + days(2)) == "questionnaires_due"


def test_total_only_questionnaires_still_count() -> None:
    """Facts stored before item-by-item recording (a total, no items) still satisfy the check-in."""
    old = Case()
    for instrument, score in (("PHQ-9", 12), ("GAD-7", 9)):  # as stored then, not parsed by today's spec
        old.raw = fold_fact(old.raw, "questionnaire", T0, "tester", {"instrument": instrument, "score": score})
    assert old.code("questionnaires_current") is None


def book(kind: str, starts: datetime) -> dict[str, str]:
    return {"kind": kind, "starts_at": starts.isoformat(), "clinician": "np-rowan", "room": "room-1"}


def test_evaluation_booked_needs_an_upcoming_evaluation() -> None:
    """Only an evaluation appointment still ahead and not cancelled counts as booked."""
    assert Case().code("evaluation_booked") == "evaluation_not_booked"
    assert Case().fact("appointment", book("kap_session", T0 + days(3))).code("evaluation_booked") == (
        "evaluation_not_booked"
    )
    booked = Case().fact("appointment", book("evaluation", T0 + days(3)))
    assert booked.code("evaluation_booked") is None
    assert booked.code("evaluation_booked", T0 + days(4)) == "evaluation_not_booked"
    booked.fact("appointment_update", {"appointment": "a1", "action": "cancel"}, T0 + days(1))
    assert booked.code("evaluation_booked", T0 + days(1)) == "evaluation_not_booked"


def test_integration_session_booked_applies_after_dosing() -> None:
    """Before any dosing nothing is due; after one, an upcoming integration session is needed."""
    assert Case().code("integration_session_booked") is None
    dosed = Case().dose(T0)
    assert dosed.code("integration_session_booked", T0 + days(1)) == "integration_session_not_booked"
    dosed.fact("appointment", book("integration_session", T0 + days(3)), T0 + days(1))
    assert dosed.code("integration_session_booked", T0 + days(1)) is None
    assert dosed.code("integration_session_booked", T0 + days(4)) == "integration_session_not_booked"


def test_appointment_open_for_updates() -> None:
    """An appointment update must name an appointment of the case that is still booked."""
    case = Case().fact("appointment", book("evaluation", T0 + days(3)))
    assert case.code("appointment_open", data={"appointment": "a1"}) is None
    assert case.code("appointment_open", data={"appointment": "a2"}) == "appointment_unknown"
    case.fact("appointment_update", {"appointment": "a1", "action": "cancel"})
    blocker = case.run("appointment_open", data={"appointment": "a1"})
    assert blocker is not None
    assert blocker.code == "appointment_closed"
    assert dict(blocker.facts) == {"status": "cancelled"}


def test_when_booking_applies_only_to_kap_sessions() -> None:
    """The booking guards check prerequisites for kap_session appointments and ignore every other kind."""
    empty = Case()
    for guard, code in [
        ("kap_booking_prescription", "prescription_missing"),
        ("kap_booking_consent", "consent_missing"),
        ("kap_booking_intention", "intention_not_set"),
    ]:
        assert empty.code(guard, data={"kind": "kap_session"}) == code
        assert empty.code(guard, data={"kind": "integration_session"}) is None
        assert empty.code(guard, data={}) is None


def test_when_booking_passes_once_prerequisites_hold() -> None:
    """With prescription, consent and intentions in place, a KAP session may be booked."""
    case = (
        Case()
        .fact("prescription", rx("2026-03-01", "2026-09-01"))
        .fact("consent", {"form_version": "2026-01", "signed_on": "2026-03-02"})
        .move("complete_intention_setting")
    )
    for guard in ("kap_booking_prescription", "kap_booking_consent", "kap_booking_intention"):
        assert case.code(guard, data={"kind": "kap_session"}) is None


# --- all blockers together ---------------------------------------------------------------------


def test_every_failing_guard_is_reported() -> None:
    """Evaluating start_kap_session on an empty case reports every failing guard, each named."""
    transition = KAP_PATHWAY.transition_from("ready_for_kap", DOSING)
    assert transition is not None
    verdict = evaluate(KAP_PATHWAY, transition, Case().ctx())
    assert not verdict.allowed
    assert [(b.guard, b.code) for b in verdict.blockers] == [
        ("prescription_valid", "prescription_missing"),
        ("consent_signed", "consent_missing"),
        ("intention_set", "intention_not_set"),
        ("treatment_plan_set", "treatment_plan_missing"),
        ("pre_dose_vitals_in_range", "pre_dose_vitals_missing"),
        ("fasting_attested", "fasting_not_attested"),
        ("escort_arranged", "escort_missing"),
        ("clinician_present", "clinician_not_present"),
    ]


def test_required_data_is_a_blocker() -> None:
    """find_ineligible without a reason is blocked with reason_required."""
    transition = KAP_PATHWAY.transition_from("evaluating", "find_ineligible")
    assert transition is not None
    assert [b.code for b in evaluate(KAP_PATHWAY, transition, Case().ctx()).blockers] == ["reason_required"]
    ctx = Case().ctx(data={"reason": "ketamine allergy recorded"})
    assert evaluate(KAP_PATHWAY, transition, ctx).allowed
