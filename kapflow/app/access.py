"""Reads are audited: recording who read a case through the API, and the auditor's query of those records.

``record_access`` is a command like any other, through the runner, and the smallest one: one
transaction with one INSERT into the access log. It neither reads nor locks the case row, so a read
never waits for, nor holds up, a command changing the case; it does not check that the case exists
(the entry point records a read it served). On SQLite it takes the database's one write lock for that
INSERT, as every command does; on PostgreSQL it waits for no other command. The sequencer places each
record in the audit log, so a signed checkpoint covers it and verification finds it deleted or edited.
"""

from __future__ import annotations

from datetime import datetime

from kapflow.app.command_input import check_actor_shape
from kapflow.app.context import AppContext
from kapflow.app.runner import Transaction
from kapflow.domain.access import AccessRecord, check_limit, check_role_length, check_view, check_window
from kapflow.domain.case import Actor
from kapflow.domain.payload import check_identifier

DEFAULT_LIMIT = 1000


def record_access(app: AppContext, actor: Actor, case_id: str, view: str) -> None:
    """Record that ``actor`` read ``view`` of ``case_id`` now; ``InvalidInput`` (nothing written) if malformed."""
    check_actor_shape(actor)
    check_role_length(actor.role)
    check_identifier(case_id, "case_id")
    check_view(view)

    def body(tx: Transaction) -> None:
        tx.uow.access().add(AccessRecord(tx.now(), actor.id, actor.role, actor.via, case_id, view))

    app.runner.run(body, case_id=case_id)


def accesses(
    app: AppContext, *, case_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
    actor: str | None = None, limit: int = DEFAULT_LIMIT,
) -> list[AccessRecord]:
    """Reads of ``case_id`` (None: every case) by ``actor`` (None: anyone) from ``since`` (inclusive) to
    ``until`` (exclusive), oldest first, at most ``limit``. Reads only."""
    if case_id is not None:
        check_identifier(case_id, "case_id")
    if actor is not None:
        check_identifier(actor, "actor")
    check_window(since, until)
    return app.store.access().find(case_id=case_id, actor=actor, since=since, until=until, limit=check_limit(limit))
