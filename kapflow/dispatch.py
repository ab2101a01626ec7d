"""The worker's two loops as plain steps: settle due timers, deliver the outbox.

``Dispatcher.run_timers_once`` and ``run_outbox_once`` each claim a batch
(leases: a dead worker's claims are taken over when they expire) and handle
every claim in its own transaction. The scheduler in ``kapflow.worker`` calls
them on an interval; tests call them directly after moving a fake clock.

Delivery is at least once: a worker killed after the server accepted a
message but before recording it sent will have it sent again when its lease
expires. Every message carries its stable key (SMTP ``Message-ID``, webhook
``webhook-id``) so the receiving side can drop the rare repeat.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from kapflow.domain.case import Actor
from kapflow.domain.effects import CALENDAR
from kapflow.engine import Engine, LostRace
from kapflow.logging import get_logger
from kapflow.ports import Calendar, CalendarEvent, DeliveryFailed, Message, Notifier, OutboxClaim
from kapflow.reminders import SYSTEM_ROLE, act_on_timers

_log = get_logger("kapflow.dispatch")


def default_worker_id() -> str:
    return f"worker-{socket.gethostname()[:40]}-{os.getpid()}"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: leases, batch sizes, retries with exponential backoff."""

    lease: timedelta = timedelta(minutes=2)
    batch: int = 50
    max_attempts: int = 8
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=2)

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
        self.engine = engine
        self.queue = engine.store.queue()
        self.notifiers = dict(notifiers)
        self.calendar = calendar
        self.worker_id = worker_id or default_worker_id()
        self.policy = policy or DeliveryPolicy()

    def check(self) -> None:
        """Check every adapter's configuration at start-up (raises ``AdapterConfigError``)."""
        for notifier in self.notifiers.values():
            notifier.check()
        if self.calendar is not None:
            self.calendar.check()

    def run_timers_once(self) -> int:
        now = self.engine.clock.now()
        claims = self.queue.claim_timers(self.worker_id, now, now + self.policy.lease, self.policy.batch)
        if claims:
            act_on_timers(self.engine, claims, self.worker_id)
        return len(claims)

    def run_outbox_once(self) -> int:
        now = self.engine.clock.now()
        claims = self.queue.claim_outbox(self.worker_id, now, now + self.policy.lease, self.policy.batch)
        for claim in claims:
            self._deliver(claim)
        return len(claims)

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
        try:
            self._send(claim)
        except DeliveryFailed as failed:
            self._failed(claim, failed.reason, permanent=failed.permanent)
            return
        except Exception as exc:  # an adapter bug must not stop the loop; the row retries
            self._failed(claim, f"unexpected {type(exc).__name__}", permanent=False)
            return
        self.queue.settle(claim, self.worker_id, self.engine.clock.now(), "sent")
        _log.info("delivered", case_id=claim.case_id, channel=claim.channel, attempt=claim.attempts)

    def _send(self, claim: OutboxClaim) -> None:
        if claim.channel == CALENDAR:
            if self.calendar is None:
                raise DeliveryFailed(CALENDAR, "no calendar adapter is configured", permanent=True)
            _apply_calendar(self.calendar, claim.payload)
            return
        notifier = self.notifiers.get(claim.channel)
        if notifier is None:
            raise DeliveryFailed(claim.channel, f"no notifier for channel {claim.channel!r}", permanent=True)
        notifier.send(
            Message(
                key=claim.key, channel=claim.channel, recipient=claim.recipient, subject=claim.subject,
                body=claim.body, case_id=claim.case_id, audience=claim.audience,
            )
        )

    def _failed(self, claim: OutboxClaim, reason: str, *, permanent: bool) -> None:
        now = self.engine.clock.now()
        if permanent or claim.attempts >= self.policy.max_attempts:
            if self.queue.settle(claim, self.worker_id, now, "gave_up", detail=reason):
                self._audit_gave_up(claim, reason)
            _log.warning("delivery_gave_up", case_id=claim.case_id, channel=claim.channel, attempts=claim.attempts)
            return
        retry_at = now + self.policy.backoff(claim.attempts)
        self.queue.settle(claim, self.worker_id, now, "failed", detail=reason, retry_at=retry_at)
        _log.info("delivery_failed", case_id=claim.case_id, channel=claim.channel, attempt=claim.attempts)

    def _audit_gave_up(self, claim: OutboxClaim, reason: str) -> None:
        data = {"message": claim.key, "channel": claim.channel, "attempts": claim.attempts, "reason": reason}
        for _attempt in range(5):
            try:
                with self.engine.store.write() as uow:
                    case = uow.load_case(claim.case_id)
                    if case is None:
                        return
                    event = self.engine.audit_event(case, Actor(self.worker_id, SYSTEM_ROLE), "delivery_failed",
                                                    data=data)
                    self.engine.append_note(uow, case, event)
                    uow.commit()
                    return
            except LostRace:
                continue


def _apply_calendar(calendar: Calendar, payload: Mapping[str, object]) -> None:
    uid = str(payload["uid"])
    if payload.get("cancelled"):
        calendar.cancel(uid)
        return
    alarms = payload.get("alarms_minutes")
    minutes = [int(str(m)) for m in alarms] if isinstance(alarms, list) else []
    calendar.upsert(
        CalendarEvent(
            uid=uid,
            summary=str(payload["summary"]),
            starts_at=datetime.fromisoformat(str(payload["starts_at"])),
            ends_at=datetime.fromisoformat(str(payload["ends_at"])),
            location=str(payload.get("location", "")),
            description=str(payload.get("description", "")),
            alarms=tuple(timedelta(minutes=m) for m in minutes),
            sequence=int(str(payload.get("sequence", 0))),
        )
    )
