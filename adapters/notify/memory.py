"""A notifier that keeps messages in a list: for tests, demos and ``kapflow.testing``.

It can be told to fail its next sends, to rehearse outages: the worker must
retry transient failures and give up on permanent ones.
"""

from __future__ import annotations

import threading

from kapflow.errors import DeliveryFailed
from kapflow.ports import Message


class MemoryNotifier:
    """Records every delivered message in ``sent``, in order."""

    def __init__(self, channel: str = "email") -> None:
        self._channel = channel
        self._lock = threading.Lock()
        self._failures: list[bool] = []  # one entry per planned failure: is it permanent?
        self.sent: list[Message] = []
        self.attempts = 0

    @property
    def channel(self) -> str:
        return self._channel

    def check(self) -> None:
        """Nothing to check: memory is always there."""

    def fail_next(self, count: int = 1, *, permanent: bool = False) -> None:
        """Make the next ``count`` sends raise ``DeliveryFailed`` (after any failures already planned)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            self._failures.extend([permanent] * count)

    def send(self, message: Message) -> None:
        with self._lock:
            self.attempts += 1
            if self._failures:
                permanent = self._failures.pop(0)
                kind = "permanent" if permanent else "transient"
                raise DeliveryFailed(self._channel, f"simulated {kind} failure", permanent=permanent)
            self.sent.append(message)

    def keys(self) -> list[str]:
        """The keys of the delivered messages, in order."""
        with self._lock:
            return [m.key for m in self.sent]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self._failures.clear()
            self.attempts = 0
