"""Crash safety of the real worker process against a real SMTP server (aiosmtpd on 127.0.0.1).

Delivery is at least once, with a stable key per message: a worker killed
between the server's "250 accepted" and its own commit of "sent" has the
message sent again after its lease expires. So the guarantees tested are: no
reminder is ever lost; a message arrives more than once only if its delivery
was interrupted by a kill (its outbox row shows a second attempt); and every
copy carries the same key (X-Kapflow-Message-Key, and a Message-ID derived
from it) for the receiver to drop the repeat. Without crashes, exactly once.

On a SQLite file and, fewer runs, on PostgreSQL (claims there are
``FOR UPDATE SKIP LOCKED``; a killed worker's open transaction dies with its
connection).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract.servers import SmtpServer
from integration.crash_harness import (
    Practice,
    RunReport,
    crash_run,
    make_practice,
    wait_until_delivered,
    wait_until_polling,
)

SCENARIOS = 5
POSTGRES_SCENARIOS = 3
KILLS_PER_SCENARIO = 5  # 25 kill -9 runs on SQLite in the suite; crash_stress.py runs as many as you like
SEED = int(os.environ.get("KAPFLOW_CRASH_SEED", "20261128"))


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def assert_nothing_lost(practice: Practice, report: RunReport, smtp: SmtpServer, seed: int) -> None:
    assert report.lost == set(), f"seed {seed}: lost {sorted(report.lost)}"
    assert set(report.received) == practice.expected, "a message nobody planned reached the server"
    for key in report.repeated:
        assert report.attempts[key] >= 2, f"{key} arrived twice without an interrupted attempt"
    for key in practice.expected:
        assert len({m.message["Message-ID"] for m in smtp.with_key(key)}) == 1
    assert report.clean_exit == 0, "SIGTERM must stop the worker cleanly"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", range(SCENARIOS))
def test_kill_9_at_random_points_loses_nothing(scenario: int, tmp_path: Path, smtp: SmtpServer) -> None:
    """Killed 5 times at random points, the worker still gets every due reminder to the SMTP server."""
    rng = random.Random(SEED + scenario)
    practice = make_practice(tmp_path, smtp, cases=8)
    report = crash_run(practice, smtp, rng, KILLS_PER_SCENARIO)
    assert_nothing_lost(practice, report, smtp, SEED + scenario)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("scenario", range(POSTGRES_SCENARIOS))
def test_kill_9_on_postgres_loses_nothing(
    scenario: int, tmp_path: Path, smtp: SmtpServer, postgres_schema_url: str
) -> None:
    """The same on PostgreSQL: killed 5 times at random points, the worker still delivers every reminder."""
    rng = random.Random(SEED + SCENARIOS + scenario)
    practice = make_practice(tmp_path, smtp, cases=8, url=postgres_schema_url)
    report = crash_run(practice, smtp, rng, KILLS_PER_SCENARIO)
    assert_nothing_lost(practice, report, smtp, SEED + SCENARIOS + scenario)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def practice_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None (a SQLite file in the practice's folder), or a PostgreSQL schema of the test's own."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_schema_url"))


@pytest.mark.slow
def test_two_worker_processes_deliver_each_message_exactly_once(
    tmp_path: Path, smtp: SmtpServer, practice_url: str | None
) -> None:
    """Two worker processes on one database, no crash: every reminder reaches the server exactly once."""
    practice = make_practice(tmp_path, smtp, cases=30, url=practice_url)
    workers = [practice.worker("--worker-id", f"w{n}") for n in range(2)]
    for w in workers:
        wait_until_polling(w)
    wait_until_delivered(practice, "both workers")
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.communicate(timeout=30)
        assert w.returncode == 0
    keys = [m.key for m in smtp.mails]
    assert sorted(keys) == sorted(practice.expected)
