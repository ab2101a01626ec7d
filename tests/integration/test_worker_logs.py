"""A running worker says what it does: a line per delivery and per failure, and a periodic summary, no PHI."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

from support import FRONT_DESK, INQUIRY, who

from kapflow.logging import logging_configured
from kapflow.testing import ReminderKit
from kapflow.worker import Worker

DESK = {"front_desk": {"email": "desk@practice.example"}}


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _fee_reminder_due(kit: ReminderKit) -> str:
    case_id = kit.engine.open_case(INQUIRY, actor=FRONT_DESK).case_id
    kit.engine.book_appointment(case_id, "evaluation", kit.clock.now() + timedelta(days=5), actor=FRONT_DESK,
                                **who(case_id))
    kit.engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
    return case_id


def test_each_delivery_and_failure_is_one_line_and_the_summary_counts_them(tmp_path: Path) -> None:
    """Sent and failed deliveries each log their message key, channel and outcome; the summary adds them up."""
    kit = ReminderKit(tmp_path, contacts=DESK)
    stream = io.StringIO()
    try:
        case_id = _fee_reminder_due(kit)
        kit.email.fail_next(1)
        with logging_configured(json=True, stream=stream):
            kit.run()
            kit.clock.advance(hours=1)
            kit.run()
            Worker(kit.dispatcher, interval=1).log_summary()
        lines = _lines(stream)
        deliveries = [line for line in lines if line["event"] in ("delivered", "delivery_failed")]
        emails = [d for d in deliveries if d["channel"] == "email"]  # the calendar's changes are delivered too
        (failed,) = [d for d in emails if d["event"] == "delivery_failed"]  # the booking's notice, then the fee's
        retried = [(d["event"], d["status"]) for d in emails if d["message_key"] == failed["message_key"]]
        assert retried == [("delivery_failed", "failed"), ("delivered", "sent")]
        delivered = sorted(d["message_key"] for d in emails if d["event"] == "delivered")
        assert delivered == sorted(m.key for m in kit.email.sent) and len(delivered) == 2
        assert all(d["case_id"] == case_id for d in deliveries)
        (summary,) = [line for line in lines if line["event"] == "worker_summary"]
        sent = sum(d["event"] == "delivered" for d in deliveries)
        assert (summary["sent"], summary["failed"], summary["gave_up"]) == (sent, 1, 0)
        assert summary["timers"] >= 1
        text = stream.getvalue()
        assert all(str(value) not in text for value in (INQUIRY["email"], INQUIRY["last_name"], "simulated"))
    finally:
        kit.close()


def test_the_summary_starts_again_from_zero(tmp_path: Path) -> None:
    """Each summary counts what happened since the one before."""
    kit = ReminderKit(tmp_path, contacts=DESK)
    stream = io.StringIO()
    try:
        _fee_reminder_due(kit)
        kit.run()
        worker = Worker(kit.dispatcher, interval=1)
        with logging_configured(json=True, stream=stream):
            worker.log_summary()
            worker.log_summary()
        first, second = (line for line in _lines(stream) if line["event"] == "worker_summary")
        assert first["sent"] == len(kit.email.sent) + len(kit.calendar.events()) >= 2
        assert second["sent"] == second["timers"] == 0
    finally:
        kit.close()


def test_the_worker_command_logs_its_deliveries(tmp_path: Path) -> None:
    """``kapflow worker --once`` writes a line per delivery on stderr, naming no client."""
    from typer.testing import CliRunner

    from kapflow.cli import app

    settings = tmp_path / "kapflow.toml"
    settings.write_text(f'database = "sqlite:///{tmp_path / "k.db"}"\n[maildir]\nfolder = "{tmp_path / "mail"}"\n',
                        encoding="utf-8")
    runner = CliRunner()
    opened = runner.invoke(app, ["--config", str(settings), "open", "--actor", "fd-1", "--role", "front_desk",
                                 "--data", json.dumps(INQUIRY), "--json"])
    case_id = json.loads(opened.stdout)["case_id"]
    for args in (["appointment", "book", case_id, "evaluation", "2099-01-05T15:00:00+00:00", "--clinician", "np-1"],
                 ["fire", case_id, "book_evaluation"]):
        assert runner.invoke(app, ["--config", str(settings), *args, "--actor", "fd-1", "--role", "front_desk"]
                             ).exit_code == 0
    worked = runner.invoke(app, ["--config", str(settings), "worker", "--once"])
    assert worked.exit_code == 0, worked.stderr
    assert "delivered" in worked.stderr and case_id in worked.stderr
    assert INQUIRY["email"] not in worked.stderr and INQUIRY["last_name"] not in worked.stderr
