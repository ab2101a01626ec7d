"""PHQ-9 and GAD-7 scoring against the published rules, the questionnaire spec, and measurement-based care."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from kapflow.domain.case import CaseFacts, fold_fact, fold_move
from kapflow.domain.errors import InvalidFact
from kapflow.domain.facts import Derived, FactSpec, Integer
from kapflow.domain.timers import plan_timers
from kapflow.domain.workflow import Workflow
from kapflow.workflows import measures
from kapflow.workflows.clinical_facts import QUESTIONNAIRE

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def items_for(instrument: str, score: int) -> list[int]:
    """Answers of ``instrument`` adding up to ``score`` (highest items first)."""
    inst = measures.instrument(instrument)
    answers = []
    for _ in range(inst.items):
        answers.append(min(inst.item_max, score))
        score -= answers[-1]
    assert score == 0
    return answers


def refused(data: dict[str, Any], field: str) -> str:
    with pytest.raises(InvalidFact) as info:
        QUESTIONNAIRE(data, NOW)
    assert info.value.field == field, info.value.message
    return info.value.reason


# --- the instruments as data ---------------------------------------------------------------


def test_instruments_as_data() -> None:
    """PHQ-9: 9 items, GAD-7: 7 items, each 0-3; the highest totals 27 and 21."""
    assert (measures.PHQ9.items, measures.PHQ9.item_max, measures.PHQ9.max_total) == (9, 3, 27)
    assert (measures.GAD7.items, measures.GAD7.item_max, measures.GAD7.max_total) == (7, 3, 21)
    assert set(measures.INSTRUMENTS) == {"PHQ-9", "GAD-7"}


def test_loinc_codes() -> None:
    """The LOINC codes for export: panels, totals, and PHQ-9 item 9."""
    assert (measures.PHQ9.loinc_panel, measures.PHQ9.loinc_total) == ("44249-1", "44261-6")
    assert measures.PHQ9.loinc_items[9] == "44260-8"
    assert (measures.GAD7.loinc_panel, measures.GAD7.loinc_total) == ("69737-5", "70274-6")


PHQ9_BANDS = [
    (0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
    (15, "moderately_severe"), (19, "moderately_severe"), (20, "severe"), (27, "severe"),
]
GAD7_BANDS = [
    (0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
    (15, "severe"), (21, "severe"),
]


@pytest.mark.parametrize(("score", "band"), PHQ9_BANDS)
def test_phq9_band_boundaries(score: int, band: str) -> None:
    """Every PHQ-9 band boundary: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-27."""
    assert measures.severity("PHQ-9", score) == band
    parsed = QUESTIONNAIRE({"instrument": "PHQ-9", "items": items_for("PHQ-9", score)}, NOW)
    assert (parsed["score"], parsed["severity"], parsed["loinc"]) == (score, band, "44261-6")


@pytest.mark.parametrize(("score", "band"), GAD7_BANDS)
def test_gad7_band_boundaries(score: int, band: str) -> None:
    """Every GAD-7 band boundary: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe."""
    assert measures.severity("GAD-7", score) == band
    parsed = QUESTIONNAIRE({"instrument": "GAD-7", "items": items_for("GAD-7", score)}, NOW)
    assert (parsed["score"], parsed["severity"], parsed["loinc"]) == (score, band, "70274-6")


@pytest.mark.parametrize(("instrument", "score"), [("PHQ-9", 28), ("GAD-7", 22), ("PHQ-9", -1)])
def test_severity_outside_the_range(instrument: str, score: int) -> None:
    with pytest.raises(ValueError, match="between 0 and"):
        measures.severity(instrument, score)


def test_total_sums_the_items() -> None:
    assert measures.total("PHQ-9", [0, 1, 2, 3, 0, 1, 2, 3, 1]) == 13
    assert measures.total("GAD-7", [3, 3, 3, 3, 3, 3, 3]) == 21
    assert measures.total("GAD-7", [0] * 7) == 0


@pytest.mark.parametrize(
    ("instrument", "items", "said"),
    [("PHQ-9", [1] * 8, "item 9 is missing"), ("PHQ-9", [1] * 6, "items 7-9 are missing"),
     ("GAD-7", [1] * 8, "8 given"), ("GAD-7", [1, 1, 4, 1, 1, 1, 1], "item 3"),
     ("PHQ-9", [1, 1, 1, 1, 1, 1, 1, 1, True], "item 9"), ("GAD-7", [], "items 1-7 are missing")],
)
def test_total_refuses_incomplete_answers(instrument: str, items: list[int], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        measures.total(instrument, items)


def test_unknown_instrument() -> None:
    with pytest.raises(ValueError, match="PHQ-9"):
        measures.total("BDI", [1] * 21)


# --- the questionnaire fact ------------------------------------------------------------------


def test_questionnaire_fact_is_recorded_item_by_item() -> None:
    parsed = QUESTIONNAIRE({"instrument": "PHQ-9", "items": [0, 1, 2, 3, 0, 1, 2, 3, 1],
                            "completed_on": "2026-03-01"}, NOW)
    assert parsed == {"instrument": "PHQ-9", "items": [0, 1, 2, 3, 0, 1, 2, 3, 1], "completed_on": "2026-03-01",
                      "score": 13, "severity": "moderate", "loinc": "44261-6"}


@pytest.mark.parametrize("computed", ["score", "severity", "loinc"])
def test_typed_total_is_refused(computed: str) -> None:
    """The total, band and code are computed; giving one (even with the items) says to give the items."""
    reason = refused({"instrument": "PHQ-9", "items": [0] * 9, computed: 0}, computed)
    assert "computed" in reason and "items" in reason
    assert "items" in refused({"instrument": "GAD-7", "score": 5}, "score")


@pytest.mark.parametrize(
    ("items", "said"),
    [([1] * 8, "item 9 is missing"), ([1] * 10, "10 given"), ([1, 1, 1, 1, 4, 1, 1, 1, 1], "item 5"),
     ([1, 1, 1, 1, 1, 1, 1, 1, -1], "item 9"), ([1, 1, "2", 1, 1, 1, 1, 1, 1], "item 3"),
     ("123456789", "list"), (None, "required")],
)
def test_questionnaire_items_refused(items: object, said: str) -> None:
    """Missing, too many, out-of-range or non-number items are refused, naming the problem."""
    data = {"instrument": "PHQ-9"} if items is None else {"instrument": "PHQ-9", "items": items}
    assert said in refused(data, "items")


def test_gad7_items_refused_by_its_own_count() -> None:
    assert "a GAD-7 has 7 items" in refused({"instrument": "GAD-7", "items": [0] * 9}, "items")


def test_derived_values_are_generic() -> None:
    """A spec's computed values are added after its checks; given, they are refused with the hint."""
    spec = FactSpec("pair", (Integer("a", low=0, high=9), Integer("b", low=0, high=9)),
                    (lambda d, _now: ("b", "must differ from a") if d["a"] == d["b"] else None,),
                    derived=Derived(("sum",), lambda d: {"sum": int(str(d["a"])) + int(str(d["b"]))}, "give a and b"))
    assert spec({"a": 2, "b": 3}, NOW) == {"a": 2, "b": 3, "sum": 5}
    with pytest.raises(InvalidFact, match=r"pair\.sum: is computed, not given; give a and b"):
        spec({"a": 2, "b": 3, "sum": 5}, NOW)
    with pytest.raises(InvalidFact, match="must differ"):
        spec({"a": 2, "b": 2}, NOW)
    with pytest.raises(ValueError, match="both a field and computed"):
        FactSpec("clash", (Integer("a", low=0, high=9),), derived=Derived(("a",), lambda d: d, ""))


# --- reading facts, old and new ------------------------------------------------------------------

TOTAL_ONLY = {"instrument": "PHQ-9", "score": 12, "completed_on": None}
"""A questionnaire fact stored before item-by-item recording."""


def test_phq9_item9() -> None:
    answered = QUESTIONNAIRE({"instrument": "PHQ-9", "items": [0, 0, 0, 0, 0, 0, 0, 0, 2]}, NOW)
    assert measures.phq9_item9(answered) == 2
    assert measures.phq9_item9({**answered, "items": [1] * 8 + [0]}) == 0
    assert measures.phq9_item9(TOTAL_ONLY) is None
    assert measures.phq9_item9(QUESTIONNAIRE({"instrument": "GAD-7", "items": [3] * 7}, NOW)) is None


def test_total_only_facts_still_read() -> None:
    assert measures.fact_total(TOTAL_ONLY) == 12
    assert measures.fact_severity(TOTAL_ONLY) == "moderate"
    assert measures.fact_total({"instrument": "GAD-7"}) is None
    assert measures.fact_severity({"instrument": "GAD-7", "score": 40}) is None


# --- measurement-based care ------------------------------------------------------------------------


class Entry(NamedTuple):
    data: dict[str, Any]
    at: datetime


def phq9(score: int, day: int) -> Entry:
    return Entry(QUESTIONNAIRE({"instrument": "PHQ-9", "items": items_for("PHQ-9", score)}, NOW), NOW + timedelta(day))


def gad7(score: int, day: int) -> Entry:
    return Entry(QUESTIONNAIRE({"instrument": "GAD-7", "items": items_for("GAD-7", score)}, NOW), NOW + timedelta(day))


@pytest.mark.parametrize(("baseline", "latest", "response"),
                         [(20, 10, True), (20, 11, False), (21, 10, True), (21, 11, False), (1, 0, True),
                          (0, 0, False)])
def test_response_is_a_fall_of_half(baseline: int, latest: int, response: bool) -> None:
    """Response: the latest at most 50% of the baseline (exactly half counts); a baseline of 0 cannot."""
    assert measures.responded(baseline, latest) is response


@pytest.mark.parametrize(("latest", "remission"), [(4, True), (5, False), (0, True)])
def test_remission_is_phq9_below_5(latest: int, remission: bool) -> None:
    assert measures.in_remission("PHQ-9", latest) is remission
    assert measures.in_remission("GAD-7", latest) is None


def test_progress_from_baseline() -> None:
    """Baseline, latest, trajectory, response, remission per instrument; old total-only facts included."""
    facts = [phq9(16, 0), gad7(11, 0), Entry(TOTAL_ONLY, NOW + timedelta(14)), phq9(4, 28)]
    shown = measures.progress(facts, baseline_by=NOW + timedelta(1))
    phq = shown["PHQ-9"]
    assert isinstance(phq, dict)
    assert phq["baseline"] == {"score": 16, "severity": "moderately_severe", "on": "2026-03-02"}
    assert phq["latest"] == {"score": 4, "severity": "minimal", "on": "2026-03-30"}
    assert [p["score"] for p in phq["trajectory"]] == [16, 12, 4]
    assert (phq["change"], phq["response"], phq["remission"], phq["rise_alert"]) == (-12, True, True, False)
    gad = shown["GAD-7"]
    assert isinstance(gad, dict)
    assert (gad["baseline"], gad["latest"], gad["response"], gad["remission"]) == (
        {"score": 11, "severity": "moderate", "on": "2026-03-02"},) * 2 + (False, None)


def test_baseline_is_the_one_the_evaluation_saw() -> None:
    """The latest questionnaire recorded at or before the evaluation's end is the baseline (one recorded
    exactly then counts); with none by then, or no evaluation, the first of all."""
    facts = [phq9(10, 0), phq9(12, 2), phq9(17, 9)]
    assert measures.progress(facts, NOW + timedelta(2))["PHQ-9"]["baseline"]["score"] == 12  # type: ignore[index]
    assert measures.progress(facts, NOW + timedelta(1))["PHQ-9"]["baseline"]["score"] == 10  # type: ignore[index]
    assert measures.progress(facts, NOW - timedelta(1))["PHQ-9"]["baseline"]["score"] == 10  # type: ignore[index]
    assert measures.progress(facts, None)["PHQ-9"]["baseline"]["score"] == 10  # type: ignore[index]


@pytest.mark.parametrize(("latest", "alert"), [(14, False), (15, True), (20, True), (5, False)])
def test_rise_of_five_from_baseline_alerts(latest: int, alert: bool) -> None:
    shown = measures.progress([phq9(10, 0), phq9(latest, 14)])
    assert shown["PHQ-9"]["rise_alert"] is alert  # type: ignore[index]


def test_no_questionnaires_no_progress() -> None:
    assert measures.progress([]) == {}


def test_case_measures_from_a_cases_facts_and_moves() -> None:
    """The engine's view: questionnaire facts of the case (old total-only ones too), the baseline taken by
    the end of the evaluation (the first move by one of the given triggers)."""
    raw: dict[str, Any] = {"facts": [], "moves": []}
    for day, data in ((0, measures.answered("PHQ-9", 18)), (1, measures.answered("PHQ-9", 14)),
                      (20, {"instrument": "PHQ-9", "score": 12}), (40, measures.answered("PHQ-9", 9))):
        raw = fold_fact(raw, "questionnaire", NOW + timedelta(day), "client-1", data)
    raw = fold_move(raw, "find_suitable", "evaluating", "evaluated", NOW - timedelta(1))
    shown = measures.case_measures(CaseFacts(raw), ("find_suitable",))["PHQ-9"]
    assert isinstance(shown, dict)
    # Nothing recorded by the evaluation's end: the first of all is the baseline.
    assert (shown["baseline"]["score"], shown["latest"]["score"], shown["response"]) == (18, 9, True)
    assert [p["score"] for p in shown["trajectory"]] == [18, 14, 12, 9]
    evaluated = fold_move(raw | {"moves": []}, "find_suitable", "evaluating", "evaluated", NOW + timedelta(2))
    view = measures.measures_summary("find_ineligible", "find_suitable")(CaseFacts(evaluated))
    assert view["PHQ-9"]["baseline"]["score"] == 14  # type: ignore[index]  # the one the evaluation saw
    assert view["PHQ-9"]["response"] is False  # type: ignore[index]  # 9 is more than half of 14
    assert measures.case_measures(CaseFacts(), ("find_suitable",)) == {}


def test_both_workflows_show_their_measures() -> None:
    from kapflow.workflows.kap import KAP_PATHWAY
    from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

    for wf in (KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY):
        assert wf.facts["questionnaire"].spec is QUESTIONNAIRE
        assert "measures" in wf.summaries


# --- the rise alert and the regular check-in (KAP) -------------------------------------------------


def _timers(raw: dict[str, Any], state: str = "ready_for_kap", wf: Workflow | None = None) -> dict[str, datetime]:
    from kapflow.workflows.kap import KAP_PATHWAY

    planned = plan_timers(wf or KAP_PATHWAY, "case-1", state, CaseFacts(raw), NOW)
    return {t.reminder: t.due_at for t in planned.values()
            if t.reminder in ("symptom_rise_alert", "checkin_questionnaires_due")}


def _case(*entries: tuple[int, str, int | str]) -> dict[str, Any]:
    """Questionnaires (day, instrument, total) and moves (day, "move", trigger), in order."""
    raw: dict[str, Any] = {"facts": [], "moves": []}
    for day, what, value in entries:
        if what == "move":
            raw = fold_move(raw, str(value), "s", "d", NOW + timedelta(day))
        else:
            raw = fold_fact(raw, "questionnaire", NOW + timedelta(day), "client-1",
                            QUESTIONNAIRE(measures.answered(what, int(value)), NOW))
    return raw


def test_a_rise_of_five_from_baseline_alerts_the_therapist_at_once() -> None:
    evaluated = ((0, "PHQ-9", 10), (0, "GAD-7", 8), (1, "move", "find_suitable"))
    assert "symptom_rise_alert" not in _timers(_case(*evaluated, (30, "PHQ-9", 14)))
    assert _timers(_case(*evaluated, (30, "PHQ-9", 15)))["symptom_rise_alert"] == NOW + timedelta(30)
    assert _timers(_case(*evaluated, (30, "GAD-7", 13)))["symptom_rise_alert"] == NOW + timedelta(30)
    # Back under the line at the next check-in: no alert stays planned.
    assert "symptom_rise_alert" not in _timers(_case(*evaluated, (30, "PHQ-9", 15), (44, "PHQ-9", 12)))


def test_checkin_questionnaires_every_four_weeks_after_the_first_session() -> None:
    evaluated = ((0, "PHQ-9", 10), (0, "GAD-7", 8), (1, "move", "find_suitable"))
    assert "checkin_questionnaires_due" not in _timers(_case(*evaluated))  # no session yet
    dosed = (*evaluated, (10, "move", "start_kap_session"))
    assert _timers(_case(*dosed))["checkin_questionnaires_due"] == NOW + timedelta(38)
    # Counted from when both were last recorded: one alone does not restart it.
    assert _timers(_case(*dosed, (20, "PHQ-9", 9)))["checkin_questionnaires_due"] == NOW + timedelta(38)
    both = _case(*dosed, (20, "PHQ-9", 9), (21, "GAD-7", 7))
    assert _timers(both)["checkin_questionnaires_due"] == NOW + timedelta(48)


def test_the_rise_and_the_check_in_interval_are_the_workflows_thresholds() -> None:
    """A practice's version may ask for a rise of 7 and check-ins every 2 weeks; summaries follow too."""
    from kapflow.workflows.kap import build_kap_workflow

    tailored = build_kap_workflow("2", symptom_rise_points=7, checkin_every_days=14)
    evaluated = ((0, "PHQ-9", 10), (0, "GAD-7", 8), (1, "move", "find_suitable"))
    assert "symptom_rise_alert" not in _timers(_case(*evaluated, (30, "PHQ-9", 16)), wf=tailored)
    assert "symptom_rise_alert" in _timers(_case(*evaluated, (30, "PHQ-9", 17)), wf=tailored)
    dosed = _case(*evaluated, (10, "move", "start_kap_session"))
    assert _timers(dosed, wf=tailored)["checkin_questionnaires_due"] == NOW + timedelta(24)
    shown = tailored.summaries["measures"](CaseFacts(_case(*evaluated, (30, "PHQ-9", 16))))["PHQ-9"]
    assert isinstance(shown, dict) and shown["rise_alert"] is False


def test_the_psychotherapy_pathway_alerts_its_therapist_on_a_rise_too() -> None:
    from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

    intake = ((0, "PHQ-9", 10), (0, "GAD-7", 8), (1, "move", "complete_intake"))
    timers = _timers(_case(*intake, (30, "PHQ-9", 15)), state="active_treatment", wf=PSYCHOTHERAPY_PATHWAY)
    assert timers["symptom_rise_alert"] == NOW + timedelta(30)


def test_measure_reminders_carry_no_clinical_detail() -> None:
    for reminder in measures.measure_reminders("therapist", "client", ("s",)):
        for text in (reminder.subject, reminder.template):
            assert not re.search(r"PHQ|GAD|depress|anxiety|suicid|ketamine|dos(e|ing)", text, re.IGNORECASE)
