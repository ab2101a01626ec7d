"""Hypothesis strategies shared by the test suite (one file for all of them).

Each block is headed by the tests that use it; add new strategies in a block
of their own below the existing ones.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

# --- unit: KAP guards (tests/unit/test_kap_guards.py) ---------------------------------

PAYMENT_PURPOSES = ("evaluation_fee", "psychotherapy", "other")


def money_amounts(max_cents: int = 60_000) -> st.SearchStrategy[Decimal]:
    """Positive dollar amounts with exactly two decimals (0.01 up to ``max_cents`` cents)."""
    return st.integers(min_value=1, max_value=max_cents).map(lambda cents: Decimal(cents).scaleb(-2))


def payments() -> st.SearchStrategy[dict[str, str]]:
    """Payment fact data: an amount as text and one of the pathway's purposes."""
    return st.fixed_dictionaries(
        {"amount": money_amounts().map(str), "purpose": st.sampled_from(PAYMENT_PURPOSES)}
    )


def blood_pressures() -> st.SearchStrategy[tuple[int, int]]:
    """(systolic, diastolic) pairs the vitals fact accepts: both in range, diastolic below systolic."""
    return st.integers(min_value=60, max_value=260).flatmap(
        lambda systolic: st.tuples(
            st.just(systolic), st.integers(min_value=30, max_value=min(160, systolic - 1))
        )
    )


def dosing_offsets_hours(max_days: int = 30) -> st.SearchStrategy[list[int]]:
    """Hours before now at which past KAP sessions started (0 = now), at most 8 of them."""
    return st.lists(st.integers(min_value=0, max_value=max_days * 24), max_size=8)


# --- unit: payload policy (tests/unit/test_payload.py) --------------------------------

FORBIDDEN_CONTROLS = tuple(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])
"""Control characters the text policy refuses (C0 but tab, LF and CR; DEL; C1)."""


def policy_texts(max_size: int = 200) -> st.SearchStrategy[str]:
    """Text the payload policy accepts: any character except surrogates and the refused controls."""
    return st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(FORBIDDEN_CONTROLS)),
        max_size=max_size,
    )


def texts_with_forbidden_control(max_size: int = 100) -> st.SearchStrategy[str]:
    """Otherwise acceptable text with at least one refused control character inserted."""
    return st.tuples(
        policy_texts(max_size), st.sampled_from(FORBIDDEN_CONTROLS), policy_texts(max_size)
    ).map(lambda parts: "".join(parts))


# --- stateful test strategies ---
# Used by tests/integration/test_stateful.py. Dates are absolute, around the FakeClock's
# start (2026-01-05), so a drawn prescription may be valid, not yet valid or expired by the
# time it is checked. "Invalid" draws are only *likely* invalid: the state machine classifies
# every command by what the engine did, never by what the strategy intended. Surrogates are
# left out of free text: a lone surrogate is a known bug (tests/integration/test_bad_input.py).

from collections.abc import Mapping  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from kapflow.domain.case import Actor  # noqa: E402
from kapflow.domain.workflow import Workflow  # noqa: E402
from kapflow.workflows.kap import KAP_PATHWAY as _KAP  # noqa: E402
from kapflow.workflows.kap import facts as _kap_facts  # noqa: E402

STATEFUL_ANCHOR = date(2026, 1, 5)

# The shapes both workflows' state machines draw from; each workflow's block below fills them in.


def _people(workflow: Workflow, prefix: str = "") -> tuple[Actor, ...]:
    """Two synthetic people per role of ``workflow``, auditor and system included."""
    return tuple(
        Actor(f"{prefix}{role.replace('_', '-')}-{n}", role) for role in sorted(workflow.roles) for n in (1, 2)
    )


def _actors(people: tuple[Actor, ...], strangers: list[Actor]) -> st.SearchStrategy[Actor]:
    """Mostly ``people`` (3 in 4), now and then one of the ``strangers`` (a role or id the workflow refuses)."""
    return st.one_of(
        st.sampled_from(people),
        st.sampled_from(people),
        st.sampled_from(people),
        st.sampled_from(strangers),
    )


def _triggers(workflow: Workflow, foreign: str) -> st.SearchStrategy[str]:
    """Any trigger ``workflow`` defines, and rarely ``foreign``, one it does not."""
    return st.one_of(
        st.sampled_from(sorted(workflow.triggers())),
        st.sampled_from(sorted(workflow.triggers())),
        st.just(foreign),
    )


def _trigger_data(field: str, blank: str, controls: list[str]) -> st.SearchStrategy[dict[str, Any] | None]:
    """Nothing, a reason and/or ``field``, a blank ``blank``, or a reason with one of the refused ``controls``."""
    text = stateful_free_text()
    return st.one_of(
        st.none(),
        st.fixed_dictionaries({"reason": text}),
        st.fixed_dictionaries({field: text}),
        st.fixed_dictionaries({"reason": text, field: text}),
        st.fixed_dictionaries({blank: st.sampled_from(["", "   "])}),
        st.fixed_dictionaries({"reason": st.sampled_from(controls)}),
    )


def _valid_facts(table: dict[str, st.SearchStrategy[dict[str, Any]]]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(kind, data) pairs from ``table``, one strategy of valid data per fact kind."""
    return st.one_of(*(st.tuples(st.just(kind), data) for kind, data in sorted(table.items())))


STATEFUL_ACTORS = _people(_KAP)
"""Two synthetic people per role of the KAP pathway, auditor and system included."""


def stateful_actors() -> st.SearchStrategy[Actor]:
    """Mostly real roles of the pathway; now and then an unknown role or a malformed id."""
    return _actors(STATEFUL_ACTORS, [Actor("who-1", "janitor"), Actor("bad id", "front_desk"), Actor("", "therapist")])


def stateful_triggers() -> st.SearchStrategy[str]:
    """Any trigger the KAP workflow defines, and rarely one it does not."""
    return _triggers(_KAP, "teleport")


def stateful_free_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Short non-blank text obeying the payload policy (no controls but tab/LF/CR, no surrogates)."""
    return st.text(
        st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t\n"), min_size=1, max_size=max_size
    ).filter(str.strip)


def stateful_trigger_data() -> st.SearchStrategy[dict[str, Any] | None]:
    """Data sent with a fire: nothing, a reason and/or intentions, blanks, or text breaking the policy."""
    return _trigger_data("intentions", "reason", ["nul\x00", "esc\x1b[0m", "bell\x07"])


def _days(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda d: (STATEFUL_ANCHOR + timedelta(days=d)).isoformat())


def _moment(low_days: int, high_days: int) -> st.SearchStrategy[str]:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return st.integers(low_days * 24 * 4, high_days * 24 * 4).map(
        lambda q: (start + timedelta(minutes=15 * q)).isoformat()
    )


def _prescriptions() -> st.SearchStrategy[dict[str, Any]]:
    def build(issued: int, valid: int) -> dict[str, Any]:
        issued_on = STATEFUL_ANCHOR + timedelta(days=issued)
        return {
            "prescriber": "NP Sample",
            "issued_on": issued_on.isoformat(),
            "expires_on": (issued_on + timedelta(days=valid)).isoformat(),
        }

    return st.builds(build, st.integers(-120, 200), st.integers(1, 365))


def _vitals() -> st.SearchStrategy[dict[str, Any]]:
    def build(phase: str, systolic: int, gap: int) -> dict[str, Any]:
        return {"phase": phase, "systolic": systolic, "diastolic": max(30, min(160, systolic - gap))}

    return st.builds(
        build, st.sampled_from(["pre_dose", "pre_dose", "post_dose", "other"]), st.integers(95, 165),
        st.integers(25, 70),
    )


def _consents(form_version: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"form_version": st.just(form_version), "signed_on": _days(-30, 200)})


def _withdrawals() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"withdrawn_on": _days(-30, 200)})


def _safety_assessments() -> st.SearchStrategy[dict[str, Any]]:
    """A clinician's safety assessment after a PHQ-9 answered above 0 on item 9."""
    return st.fixed_dictionaries({
        "screen": st.sampled_from(["cssrs_screener", "asq", "clinical_interview", "other"]),
        "screen_result": st.sampled_from(["no_current_risk", "low_risk", "moderate_risk", "high_risk"]),
        "plan": st.just("synthetic: safety plan reviewed"),
    })


def _questionnaires() -> st.SearchStrategy[dict[str, Any]]:
    """A PHQ-9 or GAD-7 answered item by item, every item 0-3."""
    return st.one_of(
        st.fixed_dictionaries({"instrument": st.just("PHQ-9"), "items": st.lists(st.integers(0, 3), min_size=9,
                                                                                   max_size=9)}),
        st.fixed_dictionaries({"instrument": st.just("GAD-7"), "items": st.lists(st.integers(0, 3), min_size=7,
                                                                                   max_size=7)}),
    )


def _appointments(minutes: Mapping[str, object], days: int) -> st.SearchStrategy[dict[str, Any]]:
    """A booking of one of the kinds in ``minutes``, within ``days`` of the clock's start, with one of two
    clinicians in one of two rooms (so bookings of several cases may collide and be refused)."""
    return st.fixed_dictionaries({
        "kind": st.sampled_from(sorted(minutes)), "starts_at": _moment(0, days),
        "clinician": st.sampled_from(["np-1", "np-2"]), "room": st.sampled_from(["room-1", "room-2"]),
    })


def _appointment_updates(days: int) -> st.SearchStrategy[dict[str, Any]]:
    """A change to one of three appointment ids (which may not exist); a new time within ``days``."""
    return st.one_of(
        st.fixed_dictionaries({
            "appointment": st.sampled_from(["a1", "a2", "a3"]),
            "action": st.sampled_from(["cancel", "no_show", "attended"]),
        }),
        st.fixed_dictionaries({
            "appointment": st.sampled_from(["a1", "a2", "a3"]), "action": st.just("reschedule"),
            "starts_at": _moment(0, days),
        }),
    )


def _plans() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries({"action": st.sampled_from(["set", "extend"]), "sessions": st.integers(1, 8)}),
        st.just({"action": "end_early", "reason": "synthetic: plan ended"}),
    )


VALID_FACT_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "payment": st.fixed_dictionaries({
        "amount": st.sampled_from(["250", "250.00", "125.00", "100", "50.50", "165.00"]),
        "purpose": st.sampled_from(["evaluation_fee", "evaluation_fee", "psychotherapy", "other"]),
    }),
    "prescription": _prescriptions(),
    "consent": _consents("2026-01"),
    "consent_withdrawn": _withdrawals(),
    "screening": st.fixed_dictionaries({
        "exclusions": st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(_kap_facts.HARD_EXCLUSIONS),
                                                                    max_size=2)),
        "flags": st.one_of(st.just([]), st.lists(st.sampled_from(_kap_facts.REVIEW_FLAGS), max_size=2)),
        "flags_reviewed": st.booleans(),
    }),
    "vitals": _vitals(),
    "fasting": st.fixed_dictionaries({"attested": st.booleans(), "hours": st.integers(0, 14)}),
    "escort": st.fixed_dictionaries({"name": stateful_free_text(20), "phone": st.just("+1 555 010 0142")}),
    "clinician_present": st.fixed_dictionaries({"clinician": stateful_free_text(20)}),
    "discharge_check": st.fixed_dictionaries({"stable": st.booleans(), "no_driving_acknowledged": st.booleans()}),
    "questionnaire": _questionnaires(),
    "treatment_plan": _plans(),
    "appointment": _appointments(_kap_facts.APPOINTMENT_MINUTES, 120),
    "appointment_update": _appointment_updates(120),
    "prescriber_checkin": st.fixed_dictionaries({"prescriber": st.just("NP Sample"), "note": stateful_free_text()}),
    "adverse_event": st.fixed_dictionaries({
        "type": st.sampled_from([t for t in _kap_facts.ADVERSE_EVENT_TYPES if t != "other"]),
        # Mostly mild to severe: a serious one holds the case for review, which a run should not always meet.
        "severity": st.sampled_from(["mild", "moderate", "severe", "mild", "serious"]),
        "onset": _moment(0, 120), "action_taken": st.just("synthetic: observed, comforted"),
    }),
    "safety_assessment": _safety_assessments(),
    # Billing: corrections (often refused: a line that is not there, more than is open), diagnoses, the address.
    "billing_adjustment": st.one_of(
        st.fixed_dictionaries({"action": st.just("void"), "charge": st.sampled_from(["c1", "c2", "c9"]),
                               "reason": st.just("synthetic: posted in error")}),
        st.fixed_dictionaries({"action": st.just("write_off"), "charge": st.sampled_from(["c1", "c2"]),
                               "amount": st.sampled_from(["5.00", "165.00", "900.00"]),
                               "reason": st.just("synthetic: courtesy")}),
        st.fixed_dictionaries({"action": st.just("refund"), "amount": st.sampled_from(["10.00", "250.00"]),
                               "reason": st.just("synthetic: overpaid")}),
    ),
    "diagnosis": st.fixed_dictionaries({"code": st.sampled_from(["F33.1", "F41.1", "F43.10", "f32.9"]),
                                        "diagnosed_on": st.just("2026-01-02")}),
    "client_address": st.fixed_dictionaries({"street": st.just("45 Sample Street"), "city": st.just("Eugene"),
                                             "state": st.just("OR"), "postal_code": st.just("97401")}),
    # Posted by the engine only: recorded by hand, each is refused (not_permitted) whatever the role.
    "charge": st.just({"visit": "a1", "service": "integration_session", "description": "Integration session",
                       "units": 1, "fee": "165.00", "insurance": True, "date_of_service": "2026-01-02"}),
    "superbill_issued": st.just({"reference": "SB-00000000-1", "first": "2026-01-02", "last": "2026-01-02",
                                 "lines": "c1", "diagnoses": "F33.1", "clinician": "np-1", "charged": "165.00",
                                 "paid": "0.00", "balance": "165.00", "issued_on": "2026-01-02"}),
    "good_faith_estimate": st.just({"reference": "GFE-00000000-1", "issued_on": "2026-01-02", "basis": "synthetic",
                                    "lines": "integration_session:1:165.00", "total": "165.00"}),
}
"""For every fact kind the KAP pathway records except the intake: data its spec accepts."""


def stateful_valid_facts() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(kind, data) pairs the fact specs accept (guards and roles may still refuse them)."""
    return _valid_facts(VALID_FACT_DATA)


_WRONG_VALUES: tuple[Any, ...] = ("", "nul\x00", -1, 10**9, [], {"nested": "x"}, True, "2026-13-45", 1.5)


def stateful_invalid_facts() -> st.SearchStrategy[tuple[str, Any]]:
    """(kind, data) pairs that are very likely rejected: a field dropped, added or spoiled, or no such kind."""

    def spoil(pair: tuple[str, dict[str, Any]], how: int, value: Any) -> tuple[str, Any]:
        kind, data = pair
        data = dict(data)
        key = sorted(data)[how % len(data)]
        if how % 4 == 0:
            del data[key]
        elif how % 4 == 1:
            data["unexpected_field"] = "x"
        elif how % 4 == 2:
            data[key] = value
        else:
            return ("not_a_fact_kind", data)
        return (kind, data)

    return st.one_of(
        st.builds(spoil, stateful_valid_facts(), st.integers(0, 11), st.sampled_from(_WRONG_VALUES)),
        st.tuples(st.sampled_from(sorted(VALID_FACT_DATA)), st.sampled_from([["a"], "text", 42])),
    )


def stateful_facts() -> st.SearchStrategy[tuple[str, Any]]:
    """Mostly well-formed facts, some malformed ones."""
    return st.one_of(stateful_valid_facts(), stateful_valid_facts(), stateful_invalid_facts())


def stateful_intakes() -> st.SearchStrategy[dict[str, Any]]:
    """Inquiry forms: adults and minors, some missing a way to reach them or born in the future."""
    return st.fixed_dictionaries(
        {
            "first_name": st.just("Sample"),
            "last_name": st.sampled_from(["Client-A", "Client-B", "O'Sample", "<b>Client</b>"]),
            "date_of_birth": st.sampled_from(["1980-02-29", "1999-12-31", "2009-06-01", "2030-01-01"]),
            "concerns": st.lists(st.sampled_from(_kap_facts.CONDITIONS), max_size=2, unique=True),
        },
        optional={"email": st.just("client@example.org"), "phone": st.just("+1 555 010 0177")},
    )


def stateful_clock_steps() -> st.SearchStrategy[timedelta]:
    """How far the fake clock moves: minutes within a session, hours, or days to months between sessions."""
    return st.one_of(
        st.integers(1, 180).map(lambda m: timedelta(minutes=m)),
        st.integers(1, 48).map(lambda h: timedelta(hours=h)),
        st.integers(1, 200).map(lambda d: timedelta(days=d)),
    )


def stateful_paperwork() -> st.SearchStrategy[tuple[str, int, int]]:
    """(what, a, b) changes to a case's paperwork, dated relative to the clock by the state machine.

    ``prescription``: issued ``a`` days from today, valid for ``b`` days; ``consent`` and
    ``consent_withdrawn``: today; ``plan``: set (a=0) or extend (a=1) by ``b`` sessions, or end early (a=2).
    """
    return st.one_of(
        st.tuples(st.just("prescription"), st.integers(-200, 3), st.integers(1, 200)),
        st.tuples(st.sampled_from(["consent", "consent_withdrawn"]), st.just(0), st.just(0)),
        st.tuples(st.just("plan"), st.integers(0, 2), st.integers(1, 6)),
    )


# --- psychotherapy pathway ---
# Used by tests/unit/test_psychotherapy_guards.py (session lengths) and
# tests/integration/test_psychotherapy_stateful.py (everything else). Dates are absolute,
# around the FakeClock's start (2026-01-05), as for the KAP state machine above.

from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY as _PSY  # noqa: E402
from kapflow.workflows.psychotherapy import facts as _psy_facts  # noqa: E402


def psychotherapy_session_minutes() -> st.SearchStrategy[int]:
    """How many whole minutes a psychotherapy session lasted: from none to a long double session."""
    return st.integers(min_value=0, max_value=240)


PSYCHOTHERAPY_ACTORS = _people(_PSY, prefix="psy-")
"""Two synthetic people per role of the psychotherapy pathway, auditor and system included."""


def psychotherapy_actors() -> st.SearchStrategy[Actor]:
    """Mostly real roles of the pathway; now and then one it does not know (a prescriber) or a malformed id."""
    return _actors(
        PSYCHOTHERAPY_ACTORS, [Actor("np-1", "prescriber"), Actor("bad id", "therapist"), Actor("", "front_desk")]
    )


def psychotherapy_triggers() -> st.SearchStrategy[str]:
    """Any trigger the psychotherapy workflow defines, and rarely a KAP one it does not."""
    return _triggers(_PSY, "start_kap_session")


def psychotherapy_trigger_data() -> st.SearchStrategy[dict[str, Any] | None]:
    """Data sent with a fire: nothing, a reason and/or goals, blanks, or text breaking the policy."""
    return _trigger_data("goals", "goals", ["nul\x00", "esc\x1b[0m"])


PSYCHOTHERAPY_VALID_FACT_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "payment": st.fixed_dictionaries({
        "amount": st.sampled_from(["165.00", "150", "40.50"]),
        "purpose": st.sampled_from(["psychotherapy", "psychotherapy", "other"]),
    }),
    "consent": _consents("2026-02"),
    "consent_withdrawn": _withdrawals(),
    "questionnaire": _questionnaires(),
    "appointment": _appointments(_psy_facts.APPOINTMENT_MINUTES, 150),
    "appointment_update": _appointment_updates(150),
    "safety_assessment": _safety_assessments(),
}
"""For every fact kind the psychotherapy pathway records except the intake: data its spec accepts."""


def psychotherapy_valid_facts() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(kind, data) pairs the psychotherapy fact specs accept (guards and roles may still refuse them)."""
    return _valid_facts(PSYCHOTHERAPY_VALID_FACT_DATA)


def psychotherapy_facts() -> st.SearchStrategy[tuple[str, Any]]:
    """Mostly well-formed facts; some with a field spoilt, a KAP-only kind, or not an object at all."""

    def spoil(pair: tuple[str, dict[str, Any]], value: Any) -> tuple[str, Any]:
        kind, data = pair
        return (kind, {**data, sorted(data)[0]: value})

    return st.one_of(
        psychotherapy_valid_facts(),
        psychotherapy_valid_facts(),
        st.builds(spoil, psychotherapy_valid_facts(), st.sampled_from(_WRONG_VALUES)),
        st.tuples(st.just("vitals"), st.just({"phase": "pre_dose", "systolic": 120, "diastolic": 80})),
        st.tuples(st.sampled_from(sorted(PSYCHOTHERAPY_VALID_FACT_DATA)), st.sampled_from([["a"], "text"])),
    )


def psychotherapy_intakes() -> st.SearchStrategy[dict[str, Any]]:
    """Psychotherapy inquiries: some with no way to reach the client, born in the future, or a KAP-only concern."""
    return st.fixed_dictionaries(
        {
            "first_name": st.just("Sample"),
            "last_name": st.sampled_from(["Client-P", "Client-Q", "<i>Client</i>"]),
            "date_of_birth": st.sampled_from(["1975-07-14", "2001-02-28", "2030-01-01"]),
            "concerns": st.one_of(
                st.lists(st.sampled_from(_psy_facts.CONCERNS), max_size=2, unique=True),
                st.just(["treatment_resistant_depression"]),
            ),
        },
        optional={"email": st.just("client.p@example.org"), "phone": st.just("+1 555 010 0188")},
    )
