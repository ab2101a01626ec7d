"""Kill -9 the real worker process at random points and check what reached a real SMTP server.

Used by ``test_worker_crash.py`` (a bounded number of runs in the suite, on a
SQLite file and on PostgreSQL) and by ``crash_stress.py`` (as many runs as you
ask for). Every case gets an
evaluation booked with the fee unpaid, so one fee reminder per case is due at
once; the worker turns each into an outbox row and sends it by SMTP.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract.servers import SmtpServer
from support import FRONT_DESK, open_case, query, who

from kapflow.bootstrap import build_engine
from kapflow.config import load_settings

WORKER = [sys.executable, "-c", "from kapflow.cli import main; main()"]
# Generous for a loaded machine: CI shares two cores with the server and other suites. A missed
# deadline fails the test saying so, not as a lost message found later.
DELIVERY_SECONDS = 180


@dataclass
class Practice:
    folder: Path
    url: str
    config: Path
    expected: set[str]

    def worker(self, *extra: str) -> subprocess.Popen[bytes]:
        # Its log lines go to a file: a pipe nobody reads while it runs would fill and block the worker.
        with (self.folder / "worker.log").open("ab") as log:
            return subprocess.Popen(
                [*WORKER, "--config", str(self.config), "worker", *extra],
                cwd=self.folder, stdout=subprocess.PIPE, stderr=log,
            )

    def outstanding(self) -> int:
        """Timers not yet settled plus messages not yet sent."""
        timers = query(self.url, "SELECT count(*) FROM timers WHERE status IN ('pending', 'claimed') "
                                 "AND due_at <= :now", now=datetime.now(UTC).isoformat())[0][0]
        unsent = query(self.url, "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")[0][0]
        return int(timers) + int(unsent)

    def attempts(self) -> dict[str, int]:
        return {str(k): int(a) for k, a in query(self.url, "SELECT key, attempts FROM outbox")}


def make_practice(folder: Path, smtp: SmtpServer, cases: int, url: str | None = None) -> Practice:
    """A practice on ``url`` (default: a SQLite file in ``folder``) with ``cases`` fee reminders due."""
    folder.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{folder / 'practice.db'}"
    config = folder / "kapflow.toml"
    config.write_text(
        f'database = "{url}"\n'
        "[email]\n"
        f'host = "{smtp.host}"\nport = {smtp.port}\nsender = "care-team@practice.example"\n'
        # the worker's subprocess cannot trust the test server's certificate: a loopback relay in clear
        "starttls = false\nallow_cleartext_loopback = true\n"
        "[contacts.front_desk]\n"
        'email = "desk@practice.example"\n'
        "[worker]\n"
        "interval_seconds = 0.05\nlease_seconds = 1\nbatch = 5\n",
        encoding="utf-8",
    )
    engine = build_engine(settings=load_settings(config))
    expected = set()
    starts = datetime.now(UTC) + timedelta(days=10)
    for n in range(cases):
        case_id = open_case(engine, last_name=f"Client-{n:03d}", email=f"client{n:03d}@example.org")
        engine.book_appointment(case_id, "evaluation", starts, actor=FRONT_DESK, **who(case_id))
        engine.fire(case_id, "book_evaluation", actor=FRONT_DESK)
        expected.add(f"{case_id}:m1:evaluation_fee_due:email")
        expected.add(f"{case_id}:a1:s0:appointment_booked_notice:email")
    engine.store.close()
    return Practice(folder, url, config, expected)


def wait_until_delivered(practice: Practice, workers: str, seconds: float = DELIVERY_SECONDS) -> None:
    """Block until nothing is outstanding; fail naming the deadline missed and what is left."""
    deadline = time.monotonic() + seconds
    while practice.outstanding() and time.monotonic() < deadline:
        time.sleep(0.1)  # polling real processes, bounded by the deadline
    left = practice.outstanding()
    if left:
        raise AssertionError(f"deadline missed: {left} message(s) still outstanding {seconds:g} s after "
                             f"{workers} started polling (the machine may be overloaded; see worker.log)")


def wait_until_polling(process: subprocess.Popen[bytes]) -> None:
    """Block until the worker says it is polling (its signal handlers are then in place)."""
    assert process.stdout is not None
    line = process.stdout.readline()  # the worker's first line; bounded by the caller's timeouts
    if b"polling every" not in line:
        raise RuntimeError(f"the worker did not start: {line!r}")


@dataclass
class RunReport:
    kills: int
    received: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    clean_exit: int | None = None

    @property
    def lost(self) -> set[str]:
        return {k for k, n in self.received.items() if n == 0}

    @property
    def repeated(self) -> dict[str, int]:
        return {k: n for k, n in self.received.items() if n > 1}


def crash_run(practice: Practice, smtp: SmtpServer, rng: random.Random, kills: int) -> RunReport:
    """Start and kill -9 the worker ``kills`` times, then let one finish and stop it with SIGTERM."""
    for _kill in range(kills):
        process = practice.worker()
        time.sleep(rng.uniform(0.2, 1.0))  # startup takes ~0.4 s: kills land in start-up, work and idling
        process.kill()
        process.communicate(timeout=30)
    survivor = practice.worker()
    try:
        wait_until_polling(survivor)
        wait_until_delivered(practice, "the surviving worker")
        survivor.send_signal(signal.SIGTERM)
        survivor.communicate(timeout=30)
    finally:
        if survivor.poll() is None:  # never leave a worker behind a failed run
            survivor.kill()
            survivor.communicate()
    keys = [m.key for m in smtp.mails]
    return RunReport(
        kills=kills,
        received={k: keys.count(k) for k in practice.expected | {k for k in keys if k}},
        attempts=practice.attempts(),
        clean_exit=survivor.returncode,
    )
