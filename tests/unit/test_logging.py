"""Operational logs: protected health information is redacted before rendering, in every format."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from io import StringIO

import pytest
import structlog

import kapflow.logging as klog
from kapflow.logging import REDACTED, SAFE_KEYS, RedactPHI, configure_logging, get_logger

FIRST_NAME = "Zephyrine"
EMAIL = "zephyrine.quill@example.org"
NOTE = "Synthetic note about sleep and panic"
DATA = {"date_of_birth": "1991-02-03", "phone": "+1 555 010 0177"}
LOCAL_SECRET = "Quillfeather-Synthetic-Local"

PHI = {"first_name": FIRST_NAME, "email": EMAIL, "note": NOTE, "data": DATA}
SAFE = {"case_id": "case-7f3a", "trigger": "start_kap_session"}


@pytest.fixture
def stream() -> Iterator[StringIO]:
    """Send kapflow's logs to a StringIO at DEBUG; put the previous settings back afterwards."""
    saved = (klog._settings.json, klog._settings.level, klog._settings.stream)
    out = StringIO()
    configure_logging(stream=out, level=logging.DEBUG)
    yield out
    configure_logging(json=saved[0], level=saved[1], stream=saved[2])


def phi_values() -> list[str]:
    return [FIRST_NAME, EMAIL, NOTE, DATA["date_of_birth"], DATA["phone"]]


def fail_with_local() -> None:
    """Raise with a synthetic client name held only in a local variable."""
    client_name = LOCAL_SECRET
    raise ValueError(f"lookup failed after {len(client_name)} characters")


def test_console_redacts_phi_and_keeps_safe_keys(stream: StringIO) -> None:
    """Console lines show ids and triggers but never names, contacts, notes or data."""
    get_logger("kapflow.test").info("case_moved", **SAFE, **PHI)
    line = stream.getvalue()
    assert "case_moved" in line
    assert "case_id=case-7f3a" in line
    assert "trigger=start_kap_session" in line
    for key in PHI:
        assert f"{key}={REDACTED}" in line
    for value in phi_values():
        assert value not in line


def test_json_redacts_phi_and_keeps_safe_keys(stream: StringIO) -> None:
    """JSON records carry [redacted] for PHI keys and the real value for safe keys."""
    configure_logging(json=True, stream=stream, level=logging.DEBUG)
    get_logger("kapflow.test").warning("case_moved", **SAFE, **PHI)
    text = stream.getvalue()
    record = json.loads(text)
    assert record["event"] == "case_moved"
    assert record["level"] == "warning"
    assert record["logger"] == "kapflow.test"
    assert {k: record[k] for k in SAFE} == SAFE
    assert {k: record[k] for k in PHI} == dict.fromkeys(PHI, REDACTED)
    for value in phi_values():
        assert value not in text


def test_unknown_keys_are_redacted(stream: StringIO) -> None:
    """The allow-list fails safe: a key nobody reviewed is hidden."""
    get_logger("kapflow.test").info("screened", diagnosis="F33.2 synthetic", case_id="case-1")
    line = stream.getvalue()
    assert f"diagnosis={REDACTED}" in line
    assert "F33.2" not in line


def test_bound_and_context_values_are_redacted(stream: StringIO) -> None:
    """PHI bound to the logger or to the context vars is redacted like PHI passed per call."""
    structlog.contextvars.bind_contextvars(last_name="Synthetica", case_id="case-ctx")
    try:
        get_logger("kapflow.test").bind(email=EMAIL).info("bound")
    finally:
        structlog.contextvars.clear_contextvars()
    line = stream.getvalue()
    assert "Synthetica" not in line
    assert EMAIL not in line
    assert "case_id=case-ctx" in line


def test_exception_in_console_has_no_local_values(stream: StringIO) -> None:
    """A logged exception shows its traceback but not the values of local variables."""
    log = get_logger("kapflow.test")
    try:
        fail_with_local()
    except ValueError:
        log.exception("lookup_failed", case_id="case-7f3a", first_name=FIRST_NAME)
    text = stream.getvalue()
    assert "Traceback" in text
    assert "ValueError (message withheld" in text  # a third-party message may quote client data
    assert "lookup failed after 28" not in text
    assert "fail_with_local" in text
    assert "case_id=case-7f3a" in text
    assert LOCAL_SECRET not in text
    assert FIRST_NAME not in text


def test_exception_in_json_has_no_local_values(stream: StringIO) -> None:
    """The JSON rendering of an exception carries the traceback text without local values."""
    configure_logging(json=True, stream=stream, level=logging.DEBUG)
    log = get_logger("kapflow.test")
    try:
        fail_with_local()
    except ValueError:
        log.error("lookup_failed", exc_info=True, case_id="case-7f3a")
    text = stream.getvalue()
    record = json.loads(text)
    assert "ValueError" in record["exception"]
    assert record["level"] == "error"
    assert LOCAL_SECRET not in text


def test_level_filter_drops_lower_levels(stream: StringIO) -> None:
    """Below the configured level nothing is written."""
    configure_logging(stream=stream, level=logging.WARNING)
    log = get_logger("kapflow.test")
    log.debug("dropped_debug", case_id="c")
    log.info("dropped_info", case_id="c")
    log.warning("kept_warning", case_id="c")
    text = stream.getvalue()
    assert "dropped" not in text
    assert "kept_warning" in text


def test_long_safe_values_are_capped(stream: StringIO) -> None:
    """An allow-listed value over 500 characters is cut short."""
    configure_logging(json=True, stream=stream, level=logging.DEBUG)
    get_logger("kapflow.test").info("long", path="/" + "p" * 999)
    record = json.loads(stream.getvalue())
    assert record["path"] == "/" + "p" * 499 + "..."


def test_redact_processor_with_own_allow_list() -> None:
    """RedactPHI keeps exactly the keys it is configured with."""
    processor = RedactPHI(allowed={"event", "case_id"})
    out = processor(None, "info", {"event": "e", "case_id": "c", "trigger": "t"})
    assert out == {"event": "e", "case_id": "c", "trigger": REDACTED}


def test_phi_keys_are_not_allow_listed() -> None:
    """None of the usual PHI field names is on the allow-list."""
    phi_keys = {"first_name", "last_name", "email", "phone", "note", "data", "date_of_birth", "message", "name"}
    assert not phi_keys & SAFE_KEYS


def test_kapflow_error_messages_are_kept_in_logged_tracebacks(stream: StringIO) -> None:
    """kapflow's own exception messages (ids and codes only) stay in a logged traceback."""
    from kapflow.errors import UnknownCase

    log = get_logger("kapflow.test")
    try:
        raise UnknownCase("case-0001")
    except UnknownCase:
        log.exception("lookup_failed", case_id="case-0001")
    assert "UnknownCase: no case with id 'case-0001'" in stream.getvalue()
