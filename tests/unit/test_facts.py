"""The KAP pathway's fact specs: valid data normalises, invalid data names kind and field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from kapflow.domain.errors import InvalidFact
from kapflow.domain.facts import FactSpec
from kapflow.workflows.kap import facts as kf

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

INQUIRY = {
    "first_name": "Sample",
    "last_name": "Client-Two",
    "date_of_birth": "1990-06-15",
    "email": "sample.two@example.org",
    "concerns": ["anxiety"],
}
PRESCRIPTION = {"prescriber": "NP Sample", "issued_on": "2026-03-01", "expires_on": "2026-08-28"}


def refused(spec: FactSpec, data: Any, field: str, now: datetime = NOW) -> InvalidFact:
    """Assert ``spec`` refuses ``data`` with an InvalidFact naming its kind and ``field``."""
    with pytest.raises(InvalidFact) as info:
        spec(data, now)
    err = info.value
    assert (err.kind, err.field) == (spec.kind, field), err.message
    assert err.message.startswith(f"{spec.kind}.{field}: ")
    return err


# --- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("250", "250.00"), (250, "250.00"), ("99.5", "99.50"), (Decimal("0.01"), "0.01"), (0.1, "0.10"),
     (" 125.25 ", "125.25")],
)
def test_money_normalises_to_two_decimals(given: object, stored: str) -> None:
    """Amounts are stored as text with exactly two decimals."""
    assert kf.PAYMENT({"amount": given, "purpose": "evaluation_fee"}, NOW)["amount"] == stored


def test_payment_defaults() -> None:
    """A payment without a method is by card, with no reference."""
    assert kf.PAYMENT({"amount": "250", "purpose": "evaluation_fee"}, NOW) == {
        "amount": "250.00", "purpose": "evaluation_fee", "method": "card", "reference": None,
    }


@pytest.mark.parametrize(
    "given",
    [
        "2026-03-05T10:00:00-05:00",
        "2026-03-05T15:00:00Z",
        datetime(2026, 3, 5, 16, 0, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_times_are_stored_in_utc(given: object) -> None:
    """An appointment time with any offset is stored as ISO 8601 in UTC."""
    parsed = kf.APPOINTMENT({"clinician": "np-rowan", "kind": "evaluation", "starts_at": given}, NOW)
    assert parsed["starts_at"] == "2026-03-05T15:00:00.000000+00:00"


@pytest.mark.parametrize(
    ("kind", "minutes"),
    [("evaluation", 60), ("intention_setting", 60), ("kap_session", 135), ("integration_session", 60),
     ("prescriber_checkin", 30), ("reassessment", 60)],
)
def test_appointment_minutes_default_per_kind(kind: str, minutes: int) -> None:
    """An appointment without minutes gets its kind's default length."""
    parsed = kf.APPOINTMENT({"clinician": "np-rowan", "kind": kind, "starts_at": "2026-03-05T15:00:00+00:00"}, NOW)
    assert parsed["minutes"] == minutes
    assert parsed["location"] == "in_person"


def test_appointment_minutes_given_within_range() -> None:
    """A KAP session of 150 minutes is accepted as given."""
    parsed = kf.APPOINTMENT(
        {"clinician": "np-rowan", "kind": "kap_session", "starts_at": "2026-03-05T15:00:00+00:00", "minutes": 150}, NOW
    )
    assert parsed["minutes"] == 150


def test_appointment_minutes_outside_the_kind_range() -> None:
    """A 60-minute KAP session is refused: a KAP session lasts 120-180 minutes."""
    err = refused(kf.APPOINTMENT, {"clinician": "np-rowan", "kind": "kap_session",
                                   "starts_at": "2026-03-05T15:00:00+00:00", "minutes": 60}, "minutes")
    assert "120-180" in err.reason


def test_inquiry_normalises() -> None:
    """An inquiry keeps its text, normalises the date and sorts and de-duplicates concerns."""
    parsed = kf.INQUIRY({**INQUIRY, "date_of_birth": date(1990, 6, 15), "concerns": ["ptsd", "anxiety", "ptsd"]}, NOW)
    assert parsed["date_of_birth"] == "1990-06-15"
    assert parsed["concerns"] == ["anxiety", "ptsd"]
    assert parsed["preferred_contact"] == "email"
    assert parsed["phone"] is None


def test_inquiry_with_phone_only() -> None:
    """A phone number alone is enough contact."""
    data = {k: v for k, v in INQUIRY.items() if k != "email"}
    assert kf.INQUIRY({**data, "phone": "+1 555 010 0123"}, NOW)["phone"] == "+1 555 010 0123"


def test_integer_from_digit_string() -> None:
    """Vitals given as digit strings become integers."""
    parsed = kf.VITALS({"phase": "pre_dose", "systolic": "122", "diastolic": "78"}, NOW)
    assert (parsed["systolic"], parsed["diastolic"]) == (122, 78)


def test_questionnaire_scores_at_the_top() -> None:
    """Every item at 3 gives the highest PHQ-9 (27) and GAD-7 (21) totals, computed by the spec."""
    assert kf.QUESTIONNAIRE({"instrument": "PHQ-9", "items": [3] * 9}, NOW)["score"] == 27
    assert kf.QUESTIONNAIRE({"instrument": "GAD-7", "items": [3] * 7}, NOW)["score"] == 21


def test_treatment_plan_end_early_without_sessions() -> None:
    """Ending a plan early needs no session count."""
    assert kf.TREATMENT_PLAN({"action": "end_early", "reason": "goals met"}, NOW)["sessions"] is None


def test_prescription_normalises_with_default_medication() -> None:
    """A prescription gets the default medication name."""
    assert kf.PRESCRIPTION(PRESCRIPTION, NOW)["medication"] == "ketamine troche"


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["0", "-5", 0, -0.01, "0.00"])
def test_payment_not_positive(amount: object) -> None:
    """Zero and negative payments are refused."""
    err = refused(kf.PAYMENT, {"amount": amount, "purpose": "evaluation_fee"}, "amount")
    assert err.reason == "must be greater than zero"


@pytest.mark.parametrize("amount", ["1.005", "250.001", 0.333])
def test_payment_with_three_decimals(amount: object) -> None:
    """More than two decimals is refused rather than rounded."""
    err = refused(kf.PAYMENT, {"amount": amount, "purpose": "evaluation_fee"}, "amount")
    assert err.reason == "must have at most two decimals"


@pytest.mark.parametrize("amount", ["abc", "", True, "NaN", "Infinity", [250]])
def test_payment_not_an_amount(amount: object) -> None:
    """Text that is not a number, booleans, lists and non-finite values are refused."""
    refused(kf.PAYMENT, {"amount": amount, "purpose": "evaluation_fee"}, "amount")


def test_payment_too_large() -> None:
    """An amount above the field's ceiling is refused."""
    refused(kf.PAYMENT, {"amount": "100000.01", "purpose": "other"}, "amount")


def test_payment_unknown_purpose() -> None:
    """A purpose outside the pathway's list is refused."""
    refused(kf.PAYMENT, {"amount": "10", "purpose": "donation"}, "purpose")


def test_blood_pressure_out_of_range() -> None:
    """400/10 is refused on the systolic reading, the first field out of range."""
    err = refused(kf.VITALS, {"phase": "pre_dose", "systolic": 400, "diastolic": 10}, "systolic")
    assert "between 60 and 260" in err.reason


def test_diastolic_out_of_range() -> None:
    """A diastolic reading of 10 is refused even with a plausible systolic."""
    refused(kf.VITALS, {"phase": "pre_dose", "systolic": 120, "diastolic": 10}, "diastolic")


@pytest.mark.parametrize(("systolic", "diastolic"), [(120, 120), (100, 130)])
def test_diastolic_not_below_systolic(systolic: int, diastolic: int) -> None:
    """A diastolic reading at or above the systolic one is refused."""
    err = refused(kf.VITALS, {"phase": "pre_dose", "systolic": systolic, "diastolic": diastolic}, "diastolic")
    assert err.reason == "must be lower than systolic"


@pytest.mark.parametrize("value", [120.5, True, "12O", "", [120]])
def test_integer_field_not_a_whole_number(value: object) -> None:
    """Fractions, booleans and non-digit text are refused for a whole-number field."""
    refused(kf.VITALS, {"phase": "pre_dose", "systolic": value, "diastolic": 70}, "systolic")


@pytest.mark.parametrize("value", ["²", "--120"])
def test_integer_field_with_digit_like_text(value: str) -> None:
    """Text that str.isdigit() accepts but int() does not is refused as an InvalidFact, not a crash."""
    refused(kf.VITALS, {"phase": "pre_dose", "systolic": value, "diastolic": 70}, "systolic")


def test_unknown_questionnaire() -> None:
    """Only PHQ-9 and GAD-7 are recorded; a BDI is refused."""
    err = refused(kf.QUESTIONNAIRE, {"instrument": "BDI", "items": [1] * 21}, "instrument")
    assert "PHQ-9" in err.reason


def test_questionnaire_total_typed_in_is_refused() -> None:
    """A total is computed from the items, never typed in: a given score says to give the items."""
    err = refused(kf.QUESTIONNAIRE, {"instrument": "PHQ-9", "score": 12}, "score")
    assert "computed" in err.reason and "items" in err.reason


def test_gad7_with_nine_items() -> None:
    """A GAD-7 answered with nine items (a PHQ-9's count) is refused, naming the count."""
    err = refused(kf.QUESTIONNAIRE, {"instrument": "GAD-7", "items": [1] * 9}, "items")
    assert "7 items" in err.reason


def test_negative_questionnaire_item() -> None:
    """A negative item answer is refused, naming the item."""
    err = refused(kf.QUESTIONNAIRE, {"instrument": "PHQ-9", "items": [0, 0, -1, 0, 0, 0, 0, 0, 0]}, "items")
    assert "item 3" in err.reason


def test_prescription_expiring_before_issue() -> None:
    """A prescription cannot expire before it was issued."""
    err = refused(kf.PRESCRIPTION, {**PRESCRIPTION, "expires_on": "2026-02-01"}, "expires_on")
    assert "after issued_on" in err.reason


def test_prescription_expiring_on_the_day_of_issue() -> None:
    """A prescription expiring the day it was issued is refused too."""
    refused(kf.PRESCRIPTION, {**PRESCRIPTION, "expires_on": PRESCRIPTION["issued_on"]}, "expires_on")


def test_unknown_field() -> None:
    """A field the fact does not have is refused and named."""
    err = refused(kf.PAYMENT, {"amount": "10", "purpose": "other", "tip": "5"}, "tip")
    assert "is not a field of payment" in err.reason


@pytest.mark.parametrize("missing", ["amount", "purpose"])
def test_missing_required_field(missing: str) -> None:
    """A required field that is absent is refused and named."""
    data = {k: v for k, v in {"amount": "10", "purpose": "other"}.items() if k != missing}
    err = refused(kf.PAYMENT, data, missing)
    assert err.reason == "is required"


def test_required_field_given_as_none() -> None:
    """A required field given as null counts as missing."""
    refused(kf.PAYMENT, {"amount": None, "purpose": "other"}, "amount")


def test_not_a_mapping() -> None:
    """Fact data must be an object of named values."""
    refused(kf.PAYMENT, ["amount", "10"], "*")


@pytest.mark.parametrize("starts_at", ["2026-03-05T10:00:00", datetime(2026, 3, 5, 10, 0)])
def test_time_without_time_zone(starts_at: object) -> None:
    """A time without a zone offset is refused: it would be ambiguous."""
    err = refused(kf.APPOINTMENT, {"clinician": "np-rowan", "kind": "evaluation", "starts_at": starts_at}, "starts_at")
    assert "time zone" in err.reason


@pytest.mark.parametrize("starts_at", ["next tuesday", 1772800000, "2026-13-01T10:00:00+00:00"])
def test_time_not_a_time(starts_at: object) -> None:
    """Values that are not ISO 8601 times are refused."""
    refused(kf.APPOINTMENT, {"clinician": "np-rowan", "kind": "evaluation", "starts_at": starts_at}, "starts_at")


@pytest.mark.parametrize("day", ["2026-02-30", "03/01/2026", datetime(2026, 3, 1, tzinfo=UTC), 20260301])
def test_day_not_a_date(day: object) -> None:
    """Invalid dates, other formats, datetimes and numbers are refused for a date field."""
    refused(kf.CONSENT, {"form_version": "2026-01", "signed_on": day}, "signed_on")


def test_date_of_birth_in_the_future() -> None:
    """A date of birth after today is refused."""
    tomorrow = (NOW.date() + timedelta(days=1)).isoformat()
    err = refused(kf.INQUIRY, {**INQUIRY, "date_of_birth": tomorrow}, "date_of_birth")
    assert err.reason == "is in the future"


def test_date_of_birth_today_is_accepted() -> None:
    """A date of birth of today is not in the future."""
    assert kf.INQUIRY({**INQUIRY, "date_of_birth": NOW.date().isoformat()}, NOW)["date_of_birth"] == "2026-03-02"


def test_date_of_birth_too_long_ago() -> None:
    """A date of birth more than 120 years ago is refused."""
    refused(kf.INQUIRY, {**INQUIRY, "date_of_birth": "1900-01-01"}, "date_of_birth")


def test_inquiry_without_email_or_phone() -> None:
    """An inquiry the practice cannot answer is refused, naming the email field."""
    data = {k: v for k, v in INQUIRY.items() if k != "email"}
    err = refused(kf.INQUIRY, data, "email")
    assert "phone" in err.reason


@pytest.mark.parametrize("email", ["not-an-address", "a@b", "two words@example.org"])
def test_bad_email(email: str) -> None:
    """Addresses that are not name@domain.tld are refused."""
    refused(kf.INQUIRY, {**INQUIRY, "email": email}, "email")


def test_unknown_exclusion_code() -> None:
    """A hard exclusion not in the pathway's list is refused."""
    err = refused(kf.SCREENING, {"exclusions": ["under_18", "bad_mood"], "flags": []}, "exclusions")
    assert "1 unknown" in err.reason and "bad_mood" not in err.reason


def test_exclusions_must_be_a_list() -> None:
    """A single code instead of a list is refused."""
    refused(kf.SCREENING, {"exclusions": "under_18"}, "exclusions")


def test_unknown_choice_is_not_echoed_in_the_error() -> None:
    """An unknown list entry (possibly free text from a client) does not appear in the error message."""
    err = refused(kf.INQUIRY, {**INQUIRY, "concerns": ["Synthetic Private Worry"]}, "concerns")
    assert "Synthetic Private Worry" not in err.message


@pytest.mark.parametrize("action", ["set", "extend"])
def test_treatment_plan_set_without_sessions(action: str) -> None:
    """Setting or extending a plan needs a number of sessions."""
    err = refused(kf.TREATMENT_PLAN, {"action": action}, "sessions")
    assert err.reason == f"is required to {action} a plan"


def test_treatment_plan_end_early_with_sessions() -> None:
    """Ending a plan early takes no session count."""
    refused(kf.TREATMENT_PLAN, {"action": "end_early", "sessions": 2}, "sessions")


@pytest.mark.parametrize("phone", ["12", "call me", "555-0100 ext 4", "+", "-5550100-"])
def test_bad_phone(phone: str) -> None:
    """Phone numbers that are too short or contain letters are refused."""
    err = refused(kf.ESCORT, {"name": "Escort Sample", "phone": phone}, "phone")
    assert "digits" in err.reason


@pytest.mark.parametrize("phone", ["1------2", "1 (((((( 2", "+123456789012345678901234"])
def test_phone_digit_count(phone: str) -> None:
    """A phone number with fewer than 7 or more than 15 digits is refused, as the hint says."""
    refused(kf.ESCORT, {"name": "Escort Sample", "phone": phone}, "phone")


def test_nul_in_text() -> None:
    """A NUL character in free text is refused and named."""
    err = refused(kf.INQUIRY, {**INQUIRY, "message": "hello\x00world"}, "message")
    assert "U+0000" in err.reason


def test_text_over_64_kib() -> None:
    """Free text over 64 KiB is refused."""
    err = refused(kf.INQUIRY, {**INQUIRY, "message": "a" * (64 * 1024 + 1)}, "message")
    assert "64 KiB" in err.reason


def test_text_of_64_kib_is_accepted() -> None:
    """Free text of exactly 64 KiB is accepted."""
    assert len(str(kf.INQUIRY({**INQUIRY, "message": "a" * (64 * 1024)}, NOW)["message"])) == 64 * 1024


def test_text_over_field_limit() -> None:
    """A first name over 100 characters is refused."""
    refused(kf.INQUIRY, {**INQUIRY, "first_name": "A" * 101}, "first_name")


@pytest.mark.parametrize("value", ["", "   ", 42])
def test_text_blank_or_not_text(value: object) -> None:
    """Blank text and non-text values are refused for a text field."""
    refused(kf.INQUIRY, {**INQUIRY, "first_name": value}, "first_name")


def test_boolean_must_be_a_boolean() -> None:
    """'yes' is not a boolean."""
    refused(kf.FASTING, {"attested": "yes"}, "attested")


def test_appointment_update_reschedule_needs_a_time() -> None:
    """Rescheduling needs the new start time, stored in UTC."""
    refused(kf.APPOINTMENT_UPDATE, {"appointment": "a1", "action": "reschedule"}, "starts_at")
    parsed = kf.APPOINTMENT_UPDATE(
        {"appointment": "a1", "action": "reschedule", "starts_at": "2026-03-05T10:00:00-05:00"}, NOW
    )
    assert parsed["starts_at"] == "2026-03-05T15:00:00.000000+00:00"


def test_appointment_update_time_only_to_reschedule() -> None:
    """A start time given with a cancellation is refused."""
    err = refused(
        kf.APPOINTMENT_UPDATE,
        {"appointment": "a1", "action": "cancel", "starts_at": "2026-03-05T15:00:00+00:00"},
        "starts_at",
    )
    assert "not to cancel" in err.reason


@pytest.mark.parametrize("appointment", ["1", "a0", "a1234567", "b1", "a1 "])
def test_appointment_update_bad_id(appointment: str) -> None:
    """Appointment ids look like a1, a2, ..."""
    refused(kf.APPOINTMENT_UPDATE, {"appointment": appointment, "action": "cancel"}, "appointment")
