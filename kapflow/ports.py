"""The ports: small Protocols the engine depends on, implemented by infrastructure and adapters.

- ``Clock``: where time comes from (``SystemClock``; ``kapflow.testing.FakeClock`` in tests).
- ``Store`` and ``UnitOfWork``: persistence, one database transaction per command.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol

from kapflow.domain.case import AuditEvent, CaseRecord
from kapflow.domain.errors import StorageError


class DuplicateIdempotencyKey(StorageError):
    """A concurrent command stored the same idempotency key first; the engine answers from it."""

    code = "duplicate_idempotency_key"

    def __init__(self) -> None:
        super().__init__("a concurrent command used the same idempotency key; retry to get its result")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, time-zone aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UnitOfWork(Protocol):
    """One database transaction. Nothing is visible to others until ``commit``."""

    def load_case(self, case_id: str) -> CaseRecord | None: ...

    def insert_case(self, case: CaseRecord) -> None: ...

    def update_case(self, case: CaseRecord, *, expected_event_count: int) -> bool:
        """Write ``case`` only if the stored row still has ``expected_event_count``; False if not."""
        ...

    def append_event(self, event: AuditEvent) -> int:
        """Append an audit event; returns its global sequence number."""
        ...

    def find_idempotent(self, key: str) -> tuple[str, str] | None:
        """The (fingerprint, result JSON) stored under an idempotency key, if any."""
        ...

    def save_idempotent(self, key: str, case_id: str, fingerprint: str, result: str) -> None:
        """Store a command's result under its key; ``DuplicateIdempotencyKey`` if the key is taken."""
        ...

    def commit(self) -> None: ...


class Store(Protocol):
    """A database of cases and their audit history."""

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work holding the write lock (SQLite) or a transaction (PostgreSQL)."""
        ...

    def get_case(self, case_id: str) -> CaseRecord | None: ...

    def list_cases(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Sequence[CaseRecord]: ...

    def count_cases(self, *, state: str | None = None) -> int: ...

    def history(self, case_id: str) -> Sequence[AuditEvent]: ...

    def iter_audit(self, case_id: str | None = None) -> Iterator[AuditEvent]:
        """Every audit event in global order (or one case's), streamed."""
        ...

    def case_heads(self) -> Iterator[tuple[str, int, str]]:
        """(case id, event count, head hash) of every case, streamed."""
        ...

    def close(self) -> None: ...
