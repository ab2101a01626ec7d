"""Longer crash stress: python tests/integration/crash_stress.py [RUNS] [KILLS] [SEED].

Runs the same kill -9 scenario as test_worker_crash.py as many times as asked
and prints, per run, what was lost (must be nothing) and what was repeated
(only messages whose delivery a kill interrupted).
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.servers import SmtpServer
from integration.crash_harness import crash_run, make_practice


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    kills = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    failures = repeats = 0
    for run in range(runs):
        smtp = SmtpServer()
        smtp.start()
        try:
            with tempfile.TemporaryDirectory() as folder:
                practice = make_practice(Path(folder), smtp, cases=8)
                report = crash_run(practice, smtp, random.Random(seed + run), kills)
        finally:
            smtp.stop()
        bad_repeat = [k for k in report.repeated if report.attempts.get(k, 0) < 2]
        ok = not report.lost and not bad_repeat and report.clean_exit == 0
        failures += not ok
        repeats += len(report.repeated)
        print(f"run {run:4d} seed {seed + run}: lost {len(report.lost)}, repeated {len(report.repeated)}, "
              f"exit {report.clean_exit} {'ok' if ok else 'FAILED'}", flush=True)
    print(f"{runs} runs, {runs * kills} kills: {failures} failed, {repeats} messages repeated after a kill")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
