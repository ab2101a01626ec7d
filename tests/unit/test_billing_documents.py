"""The superbill and Good Faith Estimate views refuse a view put together wrongly (a pointer past the diagnoses,
totals that do not add up, a float for money, a bad code) with a sentence saying what is wrong, and the No
Surprises Act texts say what CMS's standard form says. Every name and number is synthetic."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from decimal import Decimal

import pytest

from kapflow.domain.billing_documents import (
    GFE_DISCLAIMER,
    GFE_DISPUTE_NOTICE,
    ClientDetails,
    Clinician,
    Diagnosis,
    EstimateLine,
    GoodFaithEstimateView,
    Party,
    SuperbillLine,
    SuperbillView,
)

PRACTICE = Party("Example Therapy Group", ("1 Example Way", "Springfield, OR 97477"), "(555) 010-2233",
                 "12-3456789", "1234567893")
CLINICIAN = Clinician("Renée Exampleton", "PhD", "1987654320")
CLIENT = ClientDetails("Zoë Ñúñez-Ærø", date(1987, 4, 3), ("45 Sample Street",), "(555) 010-9876")
DIAGNOSES = (Diagnosis("F33.1", "Major depressive disorder, recurrent, moderate"),
             Diagnosis("F43.10", "Post-traumatic stress disorder, unspecified"))


def line(**changes: object) -> SuperbillLine:
    fields: dict[str, object] = {
        "date_of_service": date(2026, 3, 2), "place_of_service": "11", "code": "90837", "modifiers": (),
        "units": 1, "fee": Decimal("200.00"), "diagnosis_pointers": ("A", "B"),
        "description": "Psychotherapy, 60 min",
    }
    fields.update(changes)
    return SuperbillLine(**fields)  # type: ignore[arg-type]


def superbill(**changes: object) -> SuperbillView:
    fields: dict[str, object] = {
        "practice": PRACTICE, "clinician": CLINICIAN, "client": CLIENT, "diagnoses": DIAGNOSES,
        "lines": (line(), line(date_of_service=date(2026, 3, 9), diagnosis_pointers=("A",))),
        "charged": Decimal("400.00"), "paid": Decimal("150.00"), "balance": Decimal("250.00"),
        "period": (date(2026, 3, 1), date(2026, 3, 31)), "issued_on": date(2026, 4, 1),
        "statement": "Only the psychotherapy is billed.", "reference": "SB-1",
    }
    fields.update(changes)
    return SuperbillView(**fields)  # type: ignore[arg-type]


def estimate(**changes: object) -> GoodFaithEstimateView:
    fields: dict[str, object] = {
        "practice": PRACTICE, "clinician": CLINICIAN,
        "client": dataclasses.replace(CLIENT, phone=""), "diagnoses": (),
        "lines": (EstimateLine("Evaluation", "90791", 1, Decimal("250.00"), Decimal("250.00"), ""),
                  EstimateLine("Psychotherapy, 60 min", "90837", 3, Decimal("175.00"), Decimal("525.00"), ""),
                  EstimateLine("Monitoring", None, 3, Decimal("0.00"), Decimal("0.00"), "No charge")),
        "total": Decimal("775.00"), "issued_on": date(2026, 2, 16), "expected_from": None, "reference": "GFE-1",
        "disclaimer": GFE_DISCLAIMER, "dispute_notice": GFE_DISPUTE_NOTICE,
    }
    fields.update(changes)
    return GoodFaithEstimateView(**fields)  # type: ignore[arg-type]


def test_a_well_formed_superbill_and_estimate_are_accepted() -> None:
    assert superbill().balance == Decimal("250.00")
    assert superbill(paid=Decimal("450.00"), balance=Decimal("-50.00")).balance < 0  # a credit
    assert estimate().total == Decimal("775.00")
    assert estimate(expected_from=date(2026, 3, 2), diagnoses=DIAGNOSES).expected_from == date(2026, 3, 2)


def test_the_views_are_frozen() -> None:
    view = superbill()
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.paid = Decimal("0.00")  # type: ignore[misc]


@pytest.mark.parametrize(("changes", "words"), [
    ({"lines": (line(diagnosis_pointers=("C",)),), "charged": Decimal("200.00"), "balance": Decimal("50.00")},
     "points to diagnosis C, but only 2 diagnoses are listed (A to B)"),
    ({"charged": Decimal("399.00"), "balance": Decimal("249.00")}, "is not the sum of the lines' fees 400.00"),
    ({"balance": Decimal("200.00")}, "is not the amount charged 400.00 less the amount paid 150.00"),
    ({"paid": 150.0}, "must be a finite decimal.Decimal"),
    ({"paid": Decimal("150.001")}, "whole cents"),
    ({"paid": Decimal("NaN")}, "finite decimal.Decimal"),
    ({"diagnoses": ()}, "at least one diagnosis"),
    ({"diagnoses": (DIAGNOSES[0], DIAGNOSES[0])}, "listed twice"),
    ({"lines": ()}, "at least one service line"),
    ({"period": (date(2026, 3, 10), date(2026, 3, 31))}, "outside the period"),
    ({"period": (date(2026, 3, 31), date(2026, 3, 1))}, "starts (2026-03-31) after it ends"),
    ({"issued_on": date(2026, 3, 15)}, "before its last date of service"),
    ({"client": dataclasses.replace(CLIENT, date_of_birth=date(2026, 3, 2))}, "date of birth"),
    ({"statement": "  "}, "statement must be non-empty text"),
    ({"reference": ""}, "document reference must be non-empty text"),
])
def test_a_superbill_put_together_wrongly_is_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=r"^SuperbillView: ") as caught:
        superbill(**changes)
    assert words in str(caught.value)
    assert str(caught.value).endswith(".") or str(caught.value).endswith(")")


@pytest.mark.parametrize(("changes", "words"), [
    ({"place_of_service": "office"}, "two-digit code"),
    ({"code": "9083"}, "not a CPT or HCPCS code"),
    ({"modifiers": ("95", "GT", "59", "XU", "25")}, "at most 4"),
    ({"modifiers": "95"}, "tuple"),
    ({"units": 0}, "at least 1"),
    ({"units": True}, "whole number"),
    ({"fee": Decimal("-1.00")}, "cannot be negative"),
    ({"diagnosis_pointers": ()}, "1 to 4 letters"),
    ({"diagnosis_pointers": ("a",)}, "letters A to L"),
    ({"diagnosis_pointers": ("M",)}, "letters A to L"),
    ({"diagnosis_pointers": ("A", "A")}, "repeated"),
    ({"description": ""}, "description must be non-empty"),
])
def test_a_service_line_put_together_wrongly_is_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=r"^SuperbillLine: ") as caught:
        line(**changes)
    assert words in str(caught.value)


def test_a_hcpcs_code_and_modifiers_are_accepted() -> None:
    assert line(code="G0469", modifiers=("95", "GT")).code == "G0469"


@pytest.mark.parametrize(("changes", "words"), [
    ({"total": Decimal("700.00")}, "the total 700.00 is not the sum of the lines' totals 775.00"),
    ({"lines": ()}, "at least one item or service"),
    ({"total": 775}, "finite decimal.Decimal"),
    ({"client": dataclasses.replace(CLIENT, date_of_birth=date(2026, 2, 17))}, "date of birth"),
    ({"disclaimer": ""}, "disclaimer must be non-empty"),
    ({"dispute_notice": ""}, "dispute notice must be non-empty"),
    ({"expected_from": "2026-03-02"}, "datetime.date"),
])
def test_an_estimate_put_together_wrongly_is_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=r"^GoodFaithEstimateView: ") as caught:
        estimate(**changes)
    assert words in str(caught.value)


def test_an_estimate_line_total_is_its_quantity_times_its_fee() -> None:
    with pytest.raises(ValueError, match=re.escape("is not its quantity 3 times its fee per unit 175.00")):
        EstimateLine("Psychotherapy", "90837", 3, Decimal("175.00"), Decimal("500.00"), "")
    with pytest.raises(ValueError, match="use None for a service without one"):
        EstimateLine("Monitoring", "", 1, Decimal("0.00"), Decimal("0.00"), "")


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Party("", ("1 Way",), "555", "12-3456789", "1234567893"), "name must be non-empty"),
    (lambda: Party("Group", (), "555", "12-3456789", "1234567893"), "address lines"),
    (lambda: Party("Group", ("1 Way",), "555", "12-3456789", "123456789"), "an NPI is 10 digits"),
    (lambda: Clinician("Name", "PhD", "12345678AB"), "an NPI is 10 digits"),
    (lambda: Clinician("Name", "", "1234567893"), "credentials"),
    (lambda: ClientDetails("Name", "1987-04-03", ("1 Way",), ""), "datetime.date"),  # type: ignore[arg-type]
    (lambda: Diagnosis("F331", "Depression"), "not an ICD-10-CM code"),
    (lambda: Diagnosis("33.1F", "Depression"), "not an ICD-10-CM code"),
    (lambda: Diagnosis("F33.1", ""), "description"),
])
def test_parties_and_diagnoses_put_together_wrongly_are_refused(make: object, words: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError) as caught:
        make()
    assert words in str(caught.value)


def test_the_no_surprises_act_texts_say_what_the_standard_form_says() -> None:
    disclaimer = " ".join(GFE_DISCLAIMER.split())
    assert "is not a contract" in disclaimer
    assert "does not require you to obtain the items or services" in disclaimer
    assert "based on information known at the time the estimate was created" in disclaimer
    notice = " ".join(GFE_DISPUTE_NOTICE.split())
    assert "at least $400 more than this Good Faith Estimate" in notice
    assert "within 120 calendar days" in notice
    assert "patient-provider dispute resolution process" in notice
    assert "www.cms.gov/nosurprises" in notice and "1-800-985-3059" in notice
    assert "Keep a copy of this Good Faith Estimate" in notice
