"""No protected health information from the database in logs or exception chains, whatever the host's logging."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from dataclasses import replace
from typing import cast

import pytest
from support import INQUIRY, open_case, to_evaluating

from kapflow import Engine
from kapflow.domain.case import AuditEvent
from kapflow.errors import StorageError
from kapflow.store.sql import SqlStore
from kapflow.testing import FakeClock
from kapflow.workflows.kap import KAP_PATHWAY

SECRET = "Secret-Sample-Surname"  # a synthetic value that must never leave the database through kapflow
PHI = [INQUIRY["first_name"], INQUIRY["email"], INQUIRY["date_of_birth"], INQUIRY["phone"], INQUIRY["message"],
       SECRET]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def sqlalchemy_debug() -> Iterator[_Capture]:
    """The ``sqlalchemy`` loggers at DEBUG with a capturing handler, as a host debugging its app would set."""
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger("sqlalchemy").addHandler(capture)
    yield capture
    logging.getLogger("sqlalchemy").removeHandler(capture)
    for lg, level in saved:
        lg.setLevel(level)


def leaks(text: str) -> list[str]:
    return [value for value in PHI if value in text]


def test_debug_logging_of_sqlalchemy_shows_no_row_values(
    any_ready_url: str, clock: FakeClock, sqlalchemy_debug: _Capture
) -> None:
    """Commands, reads, the worker's queue and verify_audit log no intake value, even at DEBUG."""
    store = SqlStore(any_ready_url)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        case_id = open_case(engine, last_name=SECRET)
        to_evaluating(engine, clock, case_id)
        engine.case(case_id)
        engine.history(case_id)
        engine.cases()
        assert engine.verify_audit().ok
        store.queue().timers(case_id)
        store.queue().outbox(case_id)
        list(store.iter_cases())
    finally:
        store.close()
    text = "\n".join(sqlalchemy_debug.lines)
    assert "SELECT" in text  # the host's DEBUG setting is in force: statements are logged, rows are not
    assert leaks(text) == []


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.postgres
def test_postgres_an_integrity_error_keeps_the_failing_row_out_of_the_exception(
    postgres_ready_url: str, clock: FakeClock
) -> None:
    """PostgreSQL quotes the failing row; the StorageError carries no driver error and no row value."""
    store = SqlStore(postgres_ready_url)
    try:
        engine = Engine(store, KAP_PATHWAY, clock=clock)
        case_id = open_case(engine, last_name=SECRET)
        first: AuditEvent = engine.history(case_id)[0]
        bad = replace(first, case_seq=first.case_seq + 100, kind=cast(str, None))
        with pytest.raises(StorageError) as raised, store.write() as uow:
            uow.load_case(case_id)
            uow.append_event(bad)
            uow.commit()
    finally:
        store.close()
    error = raised.value
    assert _chain(error) == [error]
    assert error.__context__ is None and error.__cause__ is None
    text = "".join(traceback.format_exception(error))
    assert "Failing row" not in text
    assert leaks(text) == [] and leaks(repr(error.args)) == []
