"""The worker's two loops as plain steps: settle due timers, deliver the outbox.

``Dispatcher.run_timers_once`` and ``run_outbox_once`` each claim a batch
(leases: a dead worker's claims are taken over when they expire) and settle
what they did through the command runner: a timer batch in one transaction,
each delivery attempt in one (its result and, when the worker gives up, the
audit event on the case, together). The scheduler in ``kapflow.worker`` calls
them on an interval; tests call them directly after moving a fake clock.

Delivery is at least once: a worker killed after the server accepted a
message but before recording it sent will have it sent again when its lease
expires. Every message carries its stable key (SMTP ``Message-ID``, webhook
``webhook-id``) so the receiving side can drop the rare repeat.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from kapflow.app import audit_log
from kapflow.app.engine import Engine
from kapflow.app.events import note_event
from kapflow.app.reminders import SYSTEM_ROLE, TimerRetry, act_on_timers
from kapflow.app.runner import Transaction
from kapflow.domain.appointments import appointments
from kapflow.domain.case import Actor
from kapflow.domain.effects import CALENDAR, CalendarChange
from kapflow.domain.errors import ConcurrencyConflict
from kapflow.domain.events import DeliveryOutcome, EventKind
from kapflow.domain.messages import stale_reason
from kapflow.errors import DeliveryFailed
from kapflow.logging import get_logger
from kapflow.ports import Calendar, CalendarEvent, Message, Notifier, OutboxClaim

_log = get_logger("kapflow.dispatch")


def default_worker_id() -> str:
    return f"worker-{socket.gethostname()[:40]}-{os.getpid()}"


@dataclass
class Tally:
    """What a dispatcher did since the last summary: timers settled, messages sent, failed, given up."""

    timers: int = 0
    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    dropped: int = 0

    def take(self) -> Tally:
        """These counts, and zero from now on."""
        taken = Tally(self.timers, self.sent, self.failed, self.gave_up, self.dropped)
        self.timers = self.sent = self.failed = self.gave_up = self.dropped = 0
        return taken


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: leases, batch sizes, retries with exponential backoff."""

    lease: timedelta = timedelta(minutes=2)
    batch: int = 50
    max_attempts: int = 8
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=2)
    # Messages of a batch being sent at once, each settled once its server answered, in order: a send waits on
    # the server, a settlement on the database. An adapter takes as many at once as its ``concurrency`` says.
    in_flight: int = 2

    def backoff(self, attempts: int) -> timedelta:
        grown: timedelta = self.first_backoff * (2 ** max(attempts - 1, 0))
        return min(grown, self.max_backoff)


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        notifiers: Mapping[str, Notifier],
        calendar: Calendar | None = None,
        *,
        worker_id: str | None = None,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.app = engine.app
        self.queue = engine.app.store.queue()
        self.notifiers = dict(notifiers)
        self.calendar = calendar
        self.worker_id = worker_id or default_worker_id()
        self.policy = policy or DeliveryPolicy()
        self.tally = Tally()
        # How many sends each channel's adapter takes at once (``concurrency``, 1 unless it says more).
        self._gates = {channel: threading.BoundedSemaphore(max(1, int(getattr(n, "concurrency", 1))))
                       for channel, n in self.notifiers.items()}
        self._gates[CALENDAR] = threading.BoundedSemaphore(1)
        self._sending: ThreadPoolExecutor | None = None  # made on the first batch sent (``_senders``)
        self._senders_lock = threading.Lock()

    def check(self) -> None:
        """Check every adapter's configuration at start-up (raises ``AdapterConfigError``)."""
        for notifier in self.notifiers.values():
            notifier.check()
        if self.calendar is not None:
            self.calendar.check()

    def close(self) -> None:
        """Let go of the sending threads and of what the adapters keep open between messages (an SMTP session):
        the worker's shutdown."""
        with self._senders_lock:
            sending, self._sending = self._sending, None
        if sending is not None:
            sending.shutdown(wait=True)
        for notifier in self.notifiers.values():
            close = getattr(notifier, "close", None)  # optional: most adapters keep nothing open
            if close is not None:
                close()

    def run_timers_once(self) -> int:
        now = self.app.clock.now()
        claims = self.queue.claim_timers(self.worker_id, now, now + self.policy.lease, self.policy.batch)
        if claims:
            # A timer whose settlement fails is retried on the same schedule as a message, then parked.
            retry = TimerRetry(self.policy.max_attempts, self.policy.first_backoff, self.policy.max_backoff)
            act_on_timers(self.app, claims, self.worker_id, retry)
            self.tally.timers += len(claims)
        return len(claims)

    def run_outbox_once(self) -> int:
        now = self.app.clock.now()
        claims = self.queue.claim_outbox(self.worker_id, now, now + self.policy.lease, self.policy.batch)
        if len(claims) == 1:
            self._deliver(claims[0])
        elif claims:
            self._deliver_overlapped(claims)
        return len(claims)

    def sequence_audit_log(self) -> int:
        """Place the audit rows committed since the last run in the audit log; how many were placed."""
        return audit_log.sequence(self.app).placed

    def run_until_idle(self, max_rounds: int = 100) -> int:
        """Both loops until neither finds work (tests and ``--once``); returns the claims handled."""
        total = 0
        for _round in range(max_rounds):
            done = self.run_timers_once() + self.run_outbox_once()
            total += done
            if not done:
                break
        return total

    def _deliver(self, claim: OutboxClaim) -> None:
        if self._wanted(claim):
            self._sent(claim, self._attempt(claim))

    def _deliver_overlapped(self, claims: Sequence[OutboxClaim]) -> None:
        """Deliver a batch with each message's sending overlapping the settling of the one before.

        Sending waits on the server, settling on the database's commit: ``DeliveryPolicy.in_flight``
        threads send (each adapter taking as many at once as its ``concurrency``), while this one checks
        the next message and commits the outcomes in order. A message is still settled only once its
        server answered, so a crash repeats at most the messages in flight, each under its own key (at
        least once, as ever).
        """
        window = max(1, self.policy.in_flight)
        sender = self._senders()
        in_flight: deque[tuple[OutboxClaim, Future[Exception | None]]] = deque()
        try:
            for claim in claims:
                if not self._wanted(claim):
                    continue
                in_flight.append((claim, sender.submit(self._attempt, claim)))
                if len(in_flight) > window:  # ``window`` sends go on while the oldest is settled
                    settled, sending = in_flight.popleft()
                    self._sent(settled, sending.result())
            while in_flight:
                settled, sending = in_flight.popleft()
                self._sent(settled, sending.result())
        finally:  # a settlement that raised: no send goes on after this returns (unsettled, each is sent again)
            wait([sending for _claim, sending in in_flight])

    def _senders(self) -> ThreadPoolExecutor:
        """The threads that send, kept from batch to batch: an adapter's session is its sending thread's (an SMTP
        connection), and a pool per batch made a new connection per batch and left the old one open."""
        with self._senders_lock:
            if self._sending is None:
                self._sending = ThreadPoolExecutor(max(1, self.policy.in_flight), thread_name_prefix="kapflow-send")
            return self._sending

    def _wanted(self, claim: OutboxClaim) -> bool:
        """False once the message is settled as one not to send (dropped, or its case unreadable)."""
        try:
            stale = self._stale(claim)
        except Exception as exc:  # its case cannot be read: nothing goes out unchecked; retried, then given up
            self._failed(claim, f"its case could not be checked ({type(exc).__name__})", permanent=False)
            return False
        if stale is not None:
            self._settle(claim, DeliveryOutcome.DROPPED, detail=stale)
            self.tally.dropped += 1
            _log.info("delivery_dropped", case_id=claim.case_id, channel=claim.channel, message_key=claim.key,
                      status=DeliveryOutcome.DROPPED)
            return False
        return True

    def _attempt(self, claim: OutboxClaim) -> Exception | None:
        """Send the message; the failure, if any, as a value (it crosses from the sending thread)."""
        try:
            self._send(claim)
        except Exception as exc:
            return exc
        return None

    def _sent(self, claim: OutboxClaim, failure: Exception | None) -> None:
        """Settle the attempt: sent, or failed (retried later, or given up on)."""
        if isinstance(failure, DeliveryFailed):
            self._failed(claim, failure.reason, permanent=failure.permanent)
            return
        if failure is not None:  # an adapter bug must not stop the loop; the row retries
            self._failed(claim, f"unexpected {type(failure).__name__}", permanent=False)
            return
        self._settle(claim, DeliveryOutcome.SENT)
        self.tally.sent += 1
        _log.info("delivered", case_id=claim.case_id, channel=claim.channel, message_key=claim.key,
                  attempt=claim.attempts, status=DeliveryOutcome.SENT)

    def _stale(self, claim: OutboxClaim) -> str | None:
        """Why the message must not go out now (see ``stale_reason``); calendar changes always go."""
        payload = claim.message.payload
        if claim.channel == CALENDAR or not ("deadline" in payload or "appointment" in payload):
            return None
        case = self.app.store.get_case(claim.case_id)
        if case is None:
            return "the case no longer exists"
        carriers = self.app.workflows.of(case).appointments
        found = appointments(case.id, case.projection, carriers) if carriers else {}
        return stale_reason(payload, found.get(str(payload.get("appointment", ""))), self.app.clock.now())

    def _send(self, claim: OutboxClaim) -> None:
        with self._gates.get(claim.channel) or nullcontext():  # no gate: no adapter, refused below
            self._send_now(claim)

    def _send_now(self, claim: OutboxClaim) -> None:
        if claim.channel == CALENDAR:
            if self.calendar is None:
                raise DeliveryFailed(CALENDAR, "no calendar adapter is configured", permanent=True)
            _apply_calendar(self.calendar, CalendarChange.from_payload(claim.message.payload), self.app.timezone)
            return
        notifier = self.notifiers.get(claim.channel)
        if notifier is None:
            raise DeliveryFailed(claim.channel, f"no notifier for channel {claim.channel!r}", permanent=True)
        queued = claim.message
        notifier.send(
            Message(
                key=queued.key, channel=queued.channel, recipient=queued.recipient, subject=queued.subject,
                body=queued.body, case_id=queued.case_id, audience=queued.audience,
            )
        )

    def _failed(self, claim: OutboxClaim, reason: str, *, permanent: bool) -> None:
        if permanent or claim.attempts >= self.policy.max_attempts:
            self._settle(claim, DeliveryOutcome.GAVE_UP, detail=reason)
            self.tally.gave_up += 1
            _log.warning("delivery_gave_up", case_id=claim.case_id, channel=claim.channel, message_key=claim.key,
                         attempts=claim.attempts, status=DeliveryOutcome.GAVE_UP)
            return
        retry_at = self.app.clock.now() + self.policy.backoff(claim.attempts)
        self._settle(claim, DeliveryOutcome.FAILED, detail=reason, retry_at=retry_at)
        self.tally.failed += 1
        # The reason stays in the outbox row (``kapflow outbox``): a server's answer may quote an address.
        _log.info("delivery_failed", case_id=claim.case_id, channel=claim.channel, message_key=claim.key,
                  attempt=claim.attempts, status=DeliveryOutcome.FAILED)

    def _settle(
        self, claim: OutboxClaim, outcome: DeliveryOutcome, *, detail: str = "", retry_at: datetime | None = None
    ) -> None:
        """Record the attempt (and a message given up, on its case's audit history) in one transaction."""

        def body(tx: Transaction) -> None:
            mine = tx.uow.settle_outbox(claim, self.worker_id, tx.now(), outcome, detail=detail, retry_at=retry_at)
            if mine and outcome in _AUDITED:
                self._audit(tx, claim, _AUDITED[outcome], detail)

        try:
            self.app.runner.run(body, case_id=claim.case_id)
        except ConcurrencyConflict:
            # The runner has logged it; the row's lease runs out and the attempt is made again.
            _log.warning("delivery_result_not_recorded", case_id=claim.case_id, channel=claim.channel)
        except Exception as exc:
            # One row that cannot be settled (its case unreadable, a bug) must not stop the others' delivery.
            _log.error("delivery_result_not_recorded", case_id=claim.case_id, channel=claim.channel,
                       error=type(exc).__name__)
            if outcome in _AUDITED:  # settle without the audit note rather than not at all
                self.app.runner.run(
                    lambda tx: tx.uow.settle_outbox(claim, self.worker_id, tx.now(), outcome, detail=detail),
                    case_id=claim.case_id,
                )

    def _audit(self, tx: Transaction, claim: OutboxClaim, kind: EventKind, reason: str) -> None:
        case = tx.uow.load_case(claim.case_id)
        if case is None:
            return
        data = {"message": claim.key, "channel": claim.channel, "attempts": claim.attempts, "reason": reason}
        actor = Actor(self.worker_id, SYSTEM_ROLE)
        tx.note(case, note_event(case, actor, kind, at=tx.now(), data=data))


_AUDITED = {DeliveryOutcome.GAVE_UP: EventKind.DELIVERY_FAILED, DeliveryOutcome.DROPPED: EventKind.MESSAGE_DROPPED}
"""Delivery outcomes that leave a note on the case's audit history: a message that never went out."""


def _apply_calendar(calendar: Calendar, change: CalendarChange, tz: tzinfo) -> None:
    """The change on the calendar, its times in the practice's zone (a shared calendar shows clinic times)."""
    if change.cancelled:
        calendar.cancel(change.uid)
        return
    calendar.upsert(
        CalendarEvent(
            uid=change.uid, summary=change.summary, starts_at=change.starts_at.astimezone(tz),
            ends_at=change.ends_at.astimezone(tz),
            location=change.location, description=change.description, alarms=change.alarms,
            sequence=change.sequence,
        )
    )
