"""Operational logs with structlog, with protected health information removed before rendering.

Redaction works by allow-list: only keys known to carry ids, codes, states
and counts pass through; every other value is replaced by ``[redacted]``.
An allow-list fails safe: a new field someone logs is hidden until it is
reviewed and added here. Tracebacks are rendered as plain text without
local variables (locals can hold a client's data).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

SAFE_KEYS = frozenset(
    {
        "event", "level", "timestamp", "logger", "exception",
        "case_id", "trigger", "source", "dest", "state", "code", "kind", "workflow",
        "version", "count", "duration_ms", "seq", "attempt", "attempts", "error",
        "error_code", "channel", "message_key", "timer_id", "worker", "status", "path", "fact_kind",
        "method", "status_code", "cases", "events", "problems", "url_scheme",
        "timers", "sent", "failed", "gave_up", "dropped", "role", "route", "size", "key_id", "actor", "via",
    }
)
REDACTED = "[redacted]"
_MAX_VALUE = 500


class RedactPHI:
    """A structlog processor: keep allow-listed keys, redact the rest, cap lengths."""

    def __init__(self, allowed: Iterable[str] = SAFE_KEYS) -> None:
        self.allowed = frozenset(allowed)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key not in self.allowed:
                event_dict[key] = REDACTED
            elif isinstance(event_dict[key], str) and len(event_dict[key]) > _MAX_VALUE:
                event_dict[key] = event_dict[key][:_MAX_VALUE] + "..."
        return event_dict


class _Settings:
    level = logging.WARNING
    json = False
    stream: TextIO | None = None


_settings = _Settings()
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50, "exception": 40}


def _drop_below_level(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _LEVELS.get(method, 20) < _settings.level:
        raise structlog.DropEvent
    return event_dict


# Built once: a renderer keeps only its configuration, so one serves every line and thread (building the console's
# took 5 µs a line, on every request the service logs).
_JSON = structlog.processors.JSONRenderer()
_CONSOLE = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)


def _render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    return str((_JSON if _settings.json else _CONSOLE)(logger, method, event_dict))


def _safe_exc_info(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Render a logged exception as frames plus its type; only kapflow's own messages are kept.

    Other libraries' messages can quote the values they choked on (a name, a
    note), so they are left out; kapflow's messages carry ids and codes only.
    """
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    _type, exc, tb = exc_info
    if exc is None:
        return event_dict
    frames = "".join(traceback.format_tb(tb))
    from kapflow.domain.errors import KapflowError

    said = f": {exc}" if isinstance(exc, KapflowError) else " (message withheld: it may quote client data)"
    event_dict["exception"] = f"Traceback (most recent call last):\n{frames}{type(exc).__name__}{said}"
    return event_dict


class _Sink:
    """Writes rendered lines to the stream chosen by ``configure_logging`` (stderr by default)."""

    def msg(self, message: str) -> None:
        print(message, file=_settings.stream or sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


_PROCESSORS: list[Any] = [
    _drop_below_level,
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _safe_exc_info,  # frames and type only: never locals, never a third-party message
    RedactPHI(),
    _render,
]


def configure_logging(*, json: bool = False, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Choose where kapflow's logs go, how they render and from which level.

    kapflow's loggers carry their own processor chain, so redaction holds
    whatever the embedding application does with structlog's global config.
    """
    _settings.json = json
    _settings.level = level
    _settings.stream = stream


def get_logger(name: str) -> Any:
    """A kapflow logger: events pass through ``RedactPHI`` before rendering, always."""
    return structlog.wrap_logger(_Sink(), processors=_PROCESSORS).bind(logger=name)


@contextmanager
def logging_configured(
    *, json: bool = False, level: int = logging.INFO, stream: TextIO | None = None
) -> Iterator[None]:
    """``configure_logging`` for the length of a ``with`` block (a command), then the settings before it."""
    saved = (_settings.json, _settings.level, _settings.stream)
    configure_logging(json=json, level=level, stream=stream)
    try:
        yield
    finally:
        _settings.json, _settings.level, _settings.stream = saved
