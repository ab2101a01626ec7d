"""The ``kapflow`` command line, run for real against a SQLite file with synthetic cases."""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import FRONT_DESK, INQUIRY, PRESCRIBER, open_case, to_evaluating, to_ready, who
from typer.testing import CliRunner, Result

from kapflow.app.engine import Engine
from kapflow.bootstrap import build_engine
from kapflow.cli import app
from kapflow.config import Settings
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

MARKUP_NAME = "[bold]Mallory[/bold]"
HTML_NAME = "<b>Sample</b>"
MARKUP_NOTE = "see [link=https://example.org]this[/link] :smile: [red]now[/red] <i>x</i>"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def seeded(url: str) -> Iterator[Engine]:
    """An engine on the CLI's database, on a fake clock, to put cases where a test needs them."""
    engine = build_engine(url, clock=FakeClock())
    yield engine
    engine.store.close()


def clock_of(engine: Engine) -> FakeClock:
    assert isinstance(engine.clock, FakeClock)
    return engine.clock


def kapflow(url: str, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, ["--db", url, *args], env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, code: int) -> str:
    """The command failed with ``code``: one line on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("kapflow: ")
    assert result.stdout == ""
    return result.stderr


def test_open_record_and_fire_move_a_case_from_the_command_line(url: str) -> None:
    """An inquiry opened, an evaluation booked and paid, and the evaluation started, all through the CLI."""
    opened = as_json(kapflow(url, "open", "--actor", "fd-avery", "--role", "front_desk",
                             "--data", json.dumps(INQUIRY), "--json"))
    case_id = opened["case_id"]
    assert opened["state"] == "inquiry"

    # The CLI runs on the wall clock, and only an appointment still ahead counts as booked.
    starts = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    booked = kapflow(url, "record", case_id, "appointment", "--actor", "fd-avery", "--role", "front_desk",
                     "--data", json.dumps({"kind": "evaluation", "clinician": "np-rowan", "starts_at": starts}))
    assert booked.exit_code == 0, booked.stderr
    assert f"{case_id}: recorded appointment a1 (state inquiry), version 2" in booked.stdout

    moved = kapflow(url, "fire", case_id, "book_evaluation", "--actor", "fd-avery", "--role", "front_desk")
    assert moved.exit_code == 0, moved.stderr
    assert "book_evaluation: inquiry -> evaluation_booked, version 3" in moved.stdout

    kapflow(url, "record", case_id, "payment", "--actor", "fd-avery", "--role", "front_desk",
            "--data", '{"amount": "250.00", "purpose": "evaluation_fee"}')
    outcome = as_json(kapflow(url, "fire", case_id, "start_evaluation", "--actor", "np-rowan",
                              "--role", "prescriber", "--expected-version", "4", "--json"))
    assert (outcome["from_state"], outcome["state"], outcome["version"]) == ("evaluation_booked", "evaluating", 5)


def test_cases_lists_filters_and_limits(url: str, seeded: Engine) -> None:
    """``cases`` shows every case with its client and state; --state filters, --limit caps."""
    first = open_case(seeded)
    clock_of(seeded).advance(minutes=5)
    second = open_case(seeded, first_name="Other", last_name="Client-Two")
    seeded.record(second, "appointment", {"kind": "evaluation", **who(second),
                                          "starts_at": "2026-01-08T10:00:00+00:00"},
                  actor=FRONT_DESK)
    seeded.fire(second, "book_evaluation", actor=FRONT_DESK)

    table = kapflow(url, "cases")
    assert table.exit_code == 0, table.stderr
    for text in (first, second, "Sample Client-One", "Other Client-Two", "evaluation_booked", "2 case(s)"):
        assert text in table.stdout

    rows = as_json(kapflow(url, "cases", "--state", "evaluation_booked", "--json"))
    assert [(r["id"], r["state"], r["version"]) for r in rows] == [(second, "evaluation_booked", 3)]
    assert [r["id"] for r in as_json(kapflow(url, "cases", "--limit", "1", "--json"))] == [first]


def test_case_show_gives_state_versions_facts_and_every_blocker_of_what_comes_next(url: str, seeded: Engine) -> None:
    """``case show`` names the state, versions, facts recorded and each available trigger's blockers."""
    case_id = open_case(seeded)
    seeded.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T10:00:00+00:00"},
                  actor=FRONT_DESK)
    seeded.fire(case_id, "book_evaluation", actor=FRONT_DESK)

    shown = kapflow(url, "case", "show", case_id)
    assert shown.exit_code == 0, shown.stderr
    for text in (f"case {case_id}", "state evaluation_booked", "version 3", "workflow kap v1", "appointment",
                 "start_evaluation", "evaluation_fee_unpaid: $250 evaluation fee is due before the evaluation"):
        assert text in shown.stdout

    body = as_json(kapflow(url, "case", "show", case_id, "--json"))
    assert body["case"]["state"] == "evaluation_booked"
    assert body["case"]["workflow_version"] == "1"
    assert {f["kind"]: f["count"] for f in body["facts"]} == {"inquiry": 1, "appointment": 1}
    available = {v["trigger"]: v for v in body["available"]}
    assert {"start_evaluation", "hold", "withdraw"} <= set(available)
    assert [b["code"] for b in available["start_evaluation"]["blockers"]] == ["evaluation_fee_unpaid"]


def test_check_prints_every_blocker_with_its_sentence(url: str, seeded: Engine) -> None:
    """``check`` lists each blocker's code and sentence (the role's too when given) and writes nothing."""
    case_id = open_case(seeded)
    seeded.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T10:00:00+00:00"},
                  actor=FRONT_DESK)
    seeded.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    events_before = len(seeded.history(case_id))

    checked = kapflow(url, "check", case_id, "start_evaluation", "--actor", "fd-avery", "--role", "front_desk")
    assert checked.exit_code == 3, checked.stderr  # blocked, as the README's exit codes say
    assert "start_evaluation is blocked (2):" in checked.stdout
    assert "not_permitted: a front desk may not do this; ask: prescriber" in checked.stdout
    assert "evaluation_fee_unpaid: $250 evaluation fee is due before the evaluation (paid so far: $0)" in checked.stdout

    as_verdict = kapflow(url, "check", case_id, "start_evaluation", "--json")
    assert as_verdict.exit_code == 3
    verdict = json.loads(as_verdict.stdout)
    assert verdict["allowed"] is False
    assert [b["code"] for b in verdict["blockers"]] == ["evaluation_fee_unpaid"]

    seeded.record(case_id, "payment", {"amount": "250.00", "purpose": "evaluation_fee"}, actor=FRONT_DESK)
    allowed = kapflow(url, "check", case_id, "start_evaluation", "--role", "prescriber")
    assert "start_evaluation can happen now" in allowed.stdout
    assert len(seeded.history(case_id)) == events_before + 1  # the payment only: checks write nothing


def test_history_prints_a_table_or_the_audit_events_as_json(url: str, seeded: Engine) -> None:
    """``history`` shows who did what and when; --json is exactly ``AuditEvent.as_dict()`` per event."""
    case_id = open_case(seeded)
    seeded.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": "2026-01-08T10:00:00+00:00"},
                  actor=FRONT_DESK)
    seeded.fire(case_id, "book_evaluation", actor=FRONT_DESK)

    table = kapflow(url, "history", case_id)
    assert table.exit_code == 0, table.stderr
    for text in ("opened", "fact", "appointment", "transition", "book_evaluation", "evaluation_booked", "fd-avery"):
        assert text in table.stdout

    events = as_json(kapflow(url, "history", case_id, "--json"))
    assert events == json.loads(json.dumps([ev.as_dict() for ev in seeded.history(case_id)]))
    assert [e["kind"] for e in events] == ["opened", "fact", "transition"]


def test_a_blocked_fire_exits_3_with_every_blocker_on_stderr(url: str, seeded: Engine) -> None:
    """Starting a KAP session without its checklist is refused: exit 3, every blocker on one stderr line."""
    case_id = open_case(seeded)
    to_ready(seeded, clock_of(seeded), case_id)
    checked = kapflow(url, "check", case_id, "start_kap_session", "--json")
    assert checked.exit_code == 3
    expected = json.loads(checked.stdout)["blockers"]
    assert {"pre_dose_vitals_missing", "fasting_not_attested", "escort_missing", "clinician_not_present"} <= {
        b["code"] for b in expected
    }

    refused = kapflow(url, "fire", case_id, "start_kap_session", "--actor", "th-jordan", "--role", "therapist")
    line = assert_one_line_error(refused, 3)
    assert "transition_blocked" in line
    for blocker in expected:
        assert f"{blocker['code']}: {blocker['message']}" in line
    history = seeded.history(case_id)
    assert history[-1].kind == "refused"
    assert seeded.case(case_id).state == "ready_for_kap"


def test_a_role_that_may_not_fire_is_refused_with_exit_3(url: str, seeded: Engine) -> None:
    """The front desk may not start an evaluation: refused, exit 3, the allowed roles named."""
    case_id = open_case(seeded)
    line = assert_one_line_error(
        kapflow(url, "fire", case_id, "book_evaluation", "--actor", "np-rowan", "--role", "prescriber"), 3
    )
    assert "not_permitted" in line and "front_desk" in line


def test_an_unknown_case_exits_4(url: str, seeded: Engine) -> None:
    """Every command that takes a case id says which id is unknown, with exit 4 (on a database that exists)."""
    for args in (
        ("case", "show", "case-missing"),
        ("history", "case-missing"),
        ("check", "case-missing", "book_evaluation"),
        ("fire", "case-missing", "book_evaluation", "--actor", "fd-avery", "--role", "front_desk"),
        ("record", "case-missing", "payment", "--actor", "fd-avery", "--role", "front_desk",
         "--data", '{"amount": "250", "purpose": "evaluation_fee"}'),
        ("audit", "verify", "--case", "case-missing"),
    ):
        line = assert_one_line_error(kapflow(url, *args), 4)
        assert "unknown_case" in line and "case-missing" in line


@pytest.mark.parametrize("data", ["{bad", '{"reason": "x",}', "[1, 2]", '"text"', ""])
def test_bad_json_in_data_exits_2_and_writes_nothing(url: str, seeded: Engine, data: str) -> None:
    """--data that is not a JSON object is a clear input error, exit 2, and nothing is written."""
    case_id = open_case(seeded)
    before = seeded.case(case_id).event_count
    line = assert_one_line_error(
        kapflow(url, "fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk", "--data", data), 2
    )
    assert "--data" in line and "JSON" in line
    assert seeded.case(case_id).event_count == before


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("fire", "{case}", "teleport", "--actor", "fd-avery", "--role", "front_desk"), "unknown_trigger"),
        (("fire", "{case}", "book_evaluation", "--actor", "fd-avery", "--role", "janitor"), "invalid_input"),
        (("record", "{case}", "payment", "--actor", "fd-avery", "--role", "front_desk",
          "--data", '{"amount": "lots", "purpose": "evaluation_fee"}'), "invalid_fact"),
        (("record", "{case}", "horoscope", "--actor", "fd-avery", "--role", "front_desk", "--data", "{}"),
         "unknown_fact_kind"),
        (("cases", "--state", "sideways"), "invalid_input"),
        (("cases", "--limit", "0"), "invalid_input"),
        (("check", "{case}", "book_evaluation", "--actor", "fd-avery"), "invalid_input"),
    ],
)
def test_other_bad_input_exits_2(url: str, seeded: Engine, args: tuple[str, ...], code: str) -> None:
    """Unknown triggers, roles, fact kinds and states, and invalid facts, are input errors (exit 2)."""
    case_id = open_case(seeded)
    line = assert_one_line_error(kapflow(url, *(a.replace("{case}", case_id) for a in args)), 2)
    assert line.startswith(f"kapflow: {code}: ")


def test_a_stale_expected_version_exits_3_and_an_idempotency_key_replays(url: str, seeded: Engine) -> None:
    """--expected-version guards against lost updates; --idempotency-key repeats a command safely."""
    case_id = open_case(seeded)
    stale = kapflow(url, "fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk",
                    "--data", '{"reason": "travelling"}', "--expected-version", "7")
    assert "concurrency_conflict" in assert_one_line_error(stale, 3)

    args = ("fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk",
            "--data", '{"reason": "travelling"}', "--idempotency-key", "hold-1")
    first, again = kapflow(url, *args), kapflow(url, *args)
    assert first.exit_code == again.exit_code == 0
    assert "replayed" not in first.stdout
    assert "hold: inquiry -> on_hold, version 2 [replayed: this key was used before]" in again.stdout
    assert seeded.case(case_id).version == 2


def test_audit_verify_reports_ok(url: str, seeded: Engine) -> None:
    """A history written only by the engine verifies, as text and as JSON, for all cases or one."""
    case_id = open_case(seeded)
    to_evaluating(seeded, clock_of(seeded), case_id)
    ok = kapflow(url, "audit", "verify")
    assert ok.exit_code == 0, ok.stderr
    assert "audit verified: 1 cases, 5 events, ok" in ok.stdout
    assert as_json(kapflow(url, "audit", "verify", "--case", case_id, "--json")) == {
        "ok": True, "cases": 1, "events": 5, "problems": [],
    }


def test_audit_verify_exits_1_naming_the_first_tampered_row(url: str, seeded: Engine, tmp_path: Path) -> None:
    """An audit row edited behind the engine's back fails verification: exit 1, case and row named."""
    clean, tampered = open_case(seeded), open_case(seeded)
    for case_id in (clean, tampered):
        to_evaluating(seeded, clock_of(seeded), case_id)
    with closing(sqlite3.connect(tmp_path / "cli.db")) as db, db:
        (seq,) = db.execute("SELECT seq FROM audit_events WHERE case_id = ? AND case_seq = 2", (tampered,)).fetchone()
        db.execute("UPDATE audit_events SET data = ? WHERE seq = ?", ('{"kind":"appointment","fact":{}}', seq))

    broken = kapflow(url, "audit", "verify")
    assert broken.exit_code == 1
    assert "Traceback" not in broken.stderr
    assert f"case {tampered}: first broken row: seq {seq} (event 2 of the case)" in broken.stdout
    assert "the row was edited" in broken.stdout
    assert clean not in broken.stdout
    assert "audit BROKEN" in broken.stdout

    report = json.loads(kapflow(url, "audit", "verify", "--json").stdout)
    assert report["ok"] is False
    assert [(p["case_id"], p["seq"], p["case_seq"]) for p in report["problems"]] == [(tampered, seq, 2)]
    assert kapflow(url, "audit", "verify", "--case", clean).exit_code == 0
    assert kapflow(url, "audit", "verify", "--case", tampered).exit_code == 1


def test_free_text_from_the_database_is_printed_verbatim(url: str) -> None:
    """Names and notes holding rich markup, emoji codes or HTML are printed exactly as stored."""
    intake = {**INQUIRY, "first_name": MARKUP_NAME, "last_name": HTML_NAME, "message": MARKUP_NOTE}
    case_id = as_json(kapflow(url, "open", "--actor", "fd-avery", "--role", "front_desk",
                              "--data", json.dumps(intake), "--json"))["case_id"]
    held = kapflow(url, "fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk",
                   "--data", json.dumps({"reason": MARKUP_NOTE}))
    assert held.exit_code == 0, held.stderr

    listed = kapflow(url, "cases").stdout
    assert f"{MARKUP_NAME} {HTML_NAME}" in listed
    shown = kapflow(url, "case", "show", case_id).stdout
    assert f"client: {MARKUP_NAME} {HTML_NAME}" in shown
    history = kapflow(url, "history", case_id).stdout
    assert json.dumps({"reason": MARKUP_NOTE}, separators=(",", ":")) in history
    assert "😄" not in listed + shown + history
    assert [e["data"] for e in as_json(kapflow(url, "history", case_id, "--json"))][-1] == {"reason": MARKUP_NOTE}


def test_c1_control_characters_are_refused_as_bad_input(url: str, seeded: Engine) -> None:
    """A U+009B (a terminal's CSI) in --data is refused at the edge: exit 2, one line, nothing written."""
    case_id = open_case(seeded)
    result = kapflow(url, "fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk",
                     "--data", '{"reason": "call back \\u009b31m later"}')
    assert "U+009B" in assert_one_line_error(result, 2)
    assert seeded.case(case_id).event_count == 1


def test_a_lone_surrogate_in_data_is_bad_input(url: str, seeded: Engine) -> None:
    """JSON's \\ud800 escape decodes to text no database can store: exit 2, nothing written."""
    case_id = open_case(seeded)
    result = kapflow(url, "fire", case_id, "hold", "--actor", "fd-avery", "--role", "front_desk",
                     "--data", '{"reason": "\\ud800"}')
    assert "surrogate" in assert_one_line_error(result, 2)
    assert seeded.case(case_id).event_count == 1


def test_the_database_comes_from_kapflow_db_when_no_option_is_given(url: str, seeded: Engine) -> None:
    """Without --db, the KAPFLOW_DB environment variable names the database."""
    case_id = open_case(seeded)
    result = CliRunner().invoke(app, ["cases", "--json"], env={"KAPFLOW_DB": url})
    assert [r["id"] for r in as_json(result)] == [case_id]


def test_diagram_is_mermaid_with_every_state_and_labelled_transition(tmp_path: Path) -> None:
    """The diagram names every state and trigger, with roles and guards, final states and resume's returns."""
    result = CliRunner().invoke(app, ["diagram"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "stateDiagram-v2" in text
    assert f"[*] --> {KAP_PATHWAY.initial}" in text
    for state in KAP_PATHWAY.states:
        assert f"    {state.name}\n" in text
        assert (f"    {state.name} --> [*]" in text) == state.final
    for transition in KAP_PATHWAY.transitions:
        assert f": {transition.trigger} (" in text
    assert "evaluation_booked --> evaluating : start_evaluation (prescriber) if evaluation_fee_paid" in text
    hold_sources = next(t.sources for t in KAP_PATHWAY.transitions if t.trigger == "hold")
    for source in hold_sources:
        assert f"on_hold --> {source} : resume (" in text
    assert "<previous>" not in text

    out = tmp_path / "kap.mmd"
    assert CliRunner().invoke(app, ["diagram", "--output", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == text


def test_a_png_diagram_needs_pygraphviz(tmp_path: Path) -> None:
    """--format png writes a PNG with pygraphviz, or says clearly to install kapflow[diagram]."""
    out = tmp_path / "kap.png"
    result = CliRunner().invoke(app, ["diagram", "--format", "png", "--output", str(out)])
    try:
        import pygraphviz  # noqa: F401
    except ImportError:
        assert "kapflow[diagram]" in assert_one_line_error(result, 1)
        assert not out.exists()
    else:
        assert result.exit_code == 0, result.stderr
        assert out.read_bytes().startswith(b"\x89PNG")
    assert_one_line_error(CliRunner().invoke(app, ["diagram", "--format", "png"]), 2)


def test_prescriber_fires_from_the_command_line_are_audited_with_actor_and_role(url: str, seeded: Engine) -> None:
    """The actor and role given on the command line are what the audit history records."""
    case_id = open_case(seeded)
    to_evaluating(seeded, clock_of(seeded), case_id)
    seeded.record(case_id, "screening", {"exclusions": [], "flags": []}, actor=PRESCRIBER)
    result = kapflow(url, "fire", case_id, "find_suitable", "--actor", "np-cli", "--role", "prescriber")
    assert result.exit_code == 0, result.stderr
    moved, posted = seeded.history(case_id)[-2:]  # the move, then the evaluation's charge it posted
    assert (moved.actor, moved.role, moved.trigger) == ("np-cli", "prescriber", "find_suitable")
    assert moved.to_state == "evaluated"
    assert (posted.actor, posted.kind, posted.data["kind"]) == ("np-cli", "fact", "charge")


def test_every_event_the_cli_writes_records_the_operating_system_user(url: str, seeded: Engine) -> None:
    """The claimed actor is recorded as given, and beside it the account that ran the command (its uid's name)."""

    opened = as_json(kapflow(url, "open", "--actor", "fd-avery", "--role", "front_desk",
                             "--data", json.dumps(INQUIRY), "--json"))
    case_id = opened["case_id"]
    starts = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    kapflow(url, "record", case_id, "appointment", "--actor", "fd-avery", "--role", "front_desk",
            "--data", json.dumps({"kind": "evaluation", "clinician": "np-rowan", "starts_at": starts}))
    kapflow(url, "fire", case_id, "book_evaluation", "--actor", "fd-avery", "--role", "front_desk")
    refused = kapflow(url, "fire", case_id, "start_evaluation", "--actor", "mallory", "--role", "prescriber",
                      env={"USER": "spoofed-user", "LOGNAME": "spoofed-user"})  # the account, not $USER
    assert refused.exit_code == 3  # the fee is unpaid: a refusal, audited like the rest
    events = seeded.history(case_id)
    assert len(events) == 4
    account = pwd.getpwuid(os.geteuid()).pw_name
    assert {(e.actor, e.os_user) for e in events} == {("fd-avery", account), ("mallory", account)}
    assert seeded.verify_audit(case_id).ok
    history = as_json(kapflow(url, "history", case_id, "--json"))
    assert {e["os_user"] for e in history} == {account}


def test_the_workers_system_role_is_refused_from_the_command_line(url: str, seeded: Engine) -> None:
    """``--role system`` is the worker's: the CLI refuses it before anything is written (exit 2)."""
    case_id = open_case(seeded)
    seeded.record(case_id, "appointment", {"kind": "evaluation", **who(case_id),
                                           "starts_at": (clock_of(seeded).now() + timedelta(days=3)).isoformat()},
                  actor=FRONT_DESK)
    seeded.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    before = len(seeded.history(case_id))
    for args in (("fire", case_id, "release_evaluation"), ("record", case_id, "payment", "--data",
                                                           '{"amount": "250.00", "purpose": "evaluation_fee"}'),
                 ("open", "--data", json.dumps(INQUIRY))):
        error = assert_one_line_error(kapflow(url, *args, "--actor", "mallory", "--role", "system"), 2)
        assert "system" in error and "worker" in error
    assert len(seeded.history(case_id)) == before
    assert seeded.cases(limit=10) == [seeded.case(case_id)]


@pytest.fixture
def new_york(tmp_path: Path) -> tuple[str, Path]:
    """A case opened at 14:30 UTC on 5 January 2026 (9:30 AM EST), in a practice in New York on a 12-hour clock."""
    url = f"sqlite:///{tmp_path / 'ny.db'}"
    settings = Settings(timezone="America/New_York", clock="12h")
    with build_engine(url, clock=FakeClock(datetime(2026, 1, 5, 14, 30, tzinfo=UTC)), settings=settings) as engine:
        case_id = open_case(engine)
    path = tmp_path / "kapflow.toml"
    path.write_text(f'database = "{url}"\ntimezone = "America/New_York"\nclock = "12h"\n', encoding="utf-8")
    return case_id, path


def _shown(path: Path, *args: str, columns: int) -> str:
    result = CliRunner().invoke(app, ["--config", str(path), *args], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    return result.stdout


@pytest.mark.parametrize("columns", [80, 200])
def test_cases_and_case_show_print_the_practices_time_in_its_clock_style(
    new_york: tuple[str, Path], columns: int,
) -> None:
    """The case list, the case's opened/updated line and its facts read 9:30 AM EST; --utc reads 2:30 PM UTC."""
    case_id, path = new_york
    listed = _shown(path, "cases", columns=columns)
    assert "9:30 AM EST" in listed and "(UTC)" not in listed and "14:30" not in listed
    shown = _shown(path, "case", "show", case_id, columns=columns)
    assert "opened 2026-01-05 9:30 AM EST" in shown and "updated 2026-01-05 9:30 AM EST" in shown
    assert shown.count("9:30 AM EST") == 3  # opened, updated, and the inquiry fact's last time
    assert "(UTC)" not in shown
    for args in (("cases", "--utc"), ("case", "show", case_id, "--utc")):
        utc = _shown(path, *args, columns=columns)
        assert "2:30 PM UTC" in utc and "EST" not in utc


def test_case_json_stays_iso_8601_utc(new_york: tuple[str, Path]) -> None:
    """--json is unchanged by the practice's zone and clock style: instants in ISO 8601 UTC."""
    case_id, path = new_york
    rows = json.loads(_shown(path, "cases", "--json", columns=200))
    assert rows[0]["updated_at"] == "2026-01-05T14:30:00.000000+00:00"
    body = json.loads(_shown(path, "case", "show", case_id, "--json", columns=200))
    assert body["case"]["opened_at"] == "2026-01-05T14:30:00.000000+00:00"
    assert body["facts"][0]["last_at"] == "2026-01-05T14:30:00.000000+00:00"
