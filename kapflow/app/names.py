"""Filling the name index for cases opened before it existed (``kapflow db upgrade`` runs it once).

New cases index their client's name in the command that opens them (``Transaction.insert``), and a
recorded intake fact replaces the words (``Transaction.change``); this fills in the rest, a batch of
cases per transaction, each case locked and read afresh so a name changed meanwhile is not overwritten.
"""

from __future__ import annotations

from kapflow.app.context import AppContext
from kapflow.app.runner import Transaction
from kapflow.domain.names import client_words
from kapflow.logging import get_logger

BATCH = 500
_log = get_logger("kapflow.names")


def index_client_names(app: AppContext, *, batch: int = BATCH) -> int:
    """Index the client names of the cases that have no word indexed; how many cases were indexed."""
    indexed = 0
    after = ""
    while True:
        found = [case.id for case in app.store.unindexed_cases(after, batch)]
        if not found:
            break

        def body(tx: Transaction, ids: list[str] = found) -> int:
            words = 0
            for case_id in ids:
                case, wf = tx.load(case_id)
                named = client_words(case.projection, wf)
                tx.uow.index_words(case_id, named, replacing=True)
                words += bool(named)
            return words

        indexed += app.runner.run(body)
        after = found[-1]
    if indexed:
        _log.info("client_names_indexed", cases=indexed)
    return indexed
