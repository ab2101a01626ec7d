"""The worker process: APScheduler runs the dispatcher's two loops on an interval. The only APScheduler importer.

APScheduler is only the metronome. Its job store is in memory and private to
this process (never shared, never the truth): what is due lives in kapflow's
timers and outbox tables, so a restarted worker, or a second one, simply
carries on from there. SIGTERM and SIGINT stop it cleanly: the scheduler
stops taking new runs and waits for the running ones to finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from kapflow.app.audit_log import Checkpointer
from kapflow.app.dispatch import Dispatcher
from kapflow.logging import get_logger

_log = get_logger("kapflow.worker")
# APScheduler's own log lines (skipped runs, job tracebacks) bypass kapflow's redaction: keep only fatal ones.
logging.getLogger("apscheduler").setLevel(logging.CRITICAL)


class Worker:
    """Runs ``run_timers_once`` and ``run_outbox_once`` every ``interval`` seconds until stopped, each on a
    thread of its own (the timers of one batch are acted on while the messages of another go out), and each
    again at once while it finds a full batch.

    It also places new audit rows in the audit log every ``sequence_every`` seconds and, with a
    ``checkpointer`` (a signing key is configured), signs a checkpoint every ``checkpoint_every``
    seconds when the log has grown. The sequencer takes a lock, so any number of workers may run it.
    """

    def __init__(
        self, dispatcher: Dispatcher, *, interval: float = 1.0, summary_every: float = 60.0,
        checkpointer: Checkpointer | None = None, checkpoint_every: float = 300.0, sequence_every: float = 10.0,
    ) -> None:
        if min(interval, summary_every, checkpoint_every, sequence_every) <= 0:
            raise ValueError("the worker's interval and periods must be positive numbers of seconds")
        self.checkpointer = checkpointer
        self.checkpoint_every = checkpoint_every
        self.sequence_every = sequence_every
        self.dispatcher = dispatcher
        self.interval = interval
        self.summary_every = summary_every
        self._stop = threading.Event()
        self._scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)

    def _job(self, name: str, step: Callable[[], object], every: float | None = None) -> None:
        # First run at once (catching up after downtime), then every interval.
        # A periodic job (``every``) first runs one period from now. APScheduler reads an explicit
        # ``next_run_time=None`` as "paused", so it is passed only for the loops that start at once.
        start = {"next_run_time": datetime.now(UTC)} if every is None else {}
        self._scheduler.add_job(
            step, IntervalTrigger(seconds=every or self.interval), id=name, name=name, **start,
        )

    def _draining(self, step: Callable[[], int]) -> Callable[[], None]:
        """``step`` again at once while it found a full batch: a burst (the morning's reminders, a backlog after
        downtime) goes out as fast as the database and the servers take it, not a batch per ``interval``.
        A batch that fails is retried later (backoff), so a server that is down does not keep it busy."""
        batch = self.dispatcher.policy.batch

        def run() -> None:
            while step() >= batch and not self._stop.is_set():
                pass

        return run

    def log_summary(self) -> None:
        """One line: what the worker did since the last summary (so a quiet worker is seen to be alive)."""
        done = self.dispatcher.tally.take()
        _log.info("worker_summary", worker=self.dispatcher.worker_id, timers=done.timers, sent=done.sent,
                  failed=done.failed, gave_up=done.gave_up, dropped=done.dropped)

    def run(self, *, install_signals: bool = True, on_start: Callable[[], None] | None = None) -> None:
        """Block until ``stop()`` or a SIGTERM/SIGINT; both loops run once immediately.

        ``on_start`` is called once the signal handlers are in place and the loops scheduled.
        """
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self._job("timers", self._draining(self.dispatcher.run_timers_once))
        self._job("outbox", self._draining(self.dispatcher.run_outbox_once))
        self._job("summary", self.log_summary, every=self.summary_every)
        self._job("audit_log", self.dispatcher.sequence_audit_log, every=self.sequence_every)
        if self.checkpointer is not None:
            self._job("checkpoint", self.checkpointer, every=self.checkpoint_every)
        self._scheduler.start()
        _log.info("worker_started", worker=self.dispatcher.worker_id)
        if on_start is not None:
            on_start()
        # Wake up now and then: a signal delivered to one of the scheduler's threads only
        # runs its Python handler once the main thread executes again.
        while not self._stop.wait(0.2):
            pass
        self._scheduler.shutdown(wait=True)
        self.dispatcher.close()
        self.log_summary()
        _log.info("worker_stopped", worker=self.dispatcher.worker_id)

    def stop(self) -> None:
        self._stop.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        _log.info("worker_stopping", worker=self.dispatcher.worker_id, code=signal.Signals(signum).name)
        self.stop()

    def _on_error(self, event: JobExecutionEvent) -> None:
        # A loop that raised (database down, say) runs again at the next tick; the error is logged, not fatal.
        _log.error("worker_loop_failed", worker=self.dispatcher.worker_id, error=type(event.exception).__name__)
