"""A calendar on a CalDAV server (RFC 4791: Radicale, Nextcloud, Fastmail, ...), with the ``caldav`` client.

``check()`` finds the calendar by display name (or by its id in the user's
calendar home) and creates it when missing. Every operation opens its own
client and closes it: the port has no ``close()``, and a client left open
holds sockets until garbage collection. The calendar's URL found by
``check()`` is kept, so an operation costs no discovery.

An event is one resource; an update rewrites that resource in place (with
``If-Match`` on its ETag, so a concurrent change fails and is retried rather
than lost), and SEQUENCE is stored as given: caldav's automatic increment is
off, the rules in ``_revision`` decide it.

caldav's objects are handled as ``Any``: its annotations are unions with the
async client's coroutines, which a synchronous client never returns.

caldav's exception text can carry the server's reply, which can echo event
data: errors here keep only status codes and exception class names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error

from kapflow.adapters.calendar._ical import InvalidIcs, event_ics, parse_event
from kapflow.adapters.calendar._revision import CHANNEL, cancelled, normalized, revised
from kapflow.errors import AdapterConfigError, DeliveryFailed, KapflowError
from kapflow.ports import CalendarEvent, Clock, SystemClock

ADAPTER = "caldav"
# Access problems (credentials, permissions, a moved calendar), locks, timeouts
# and rate limits are fixed outside the message: retry. Other 4xx mean the
# server rejects this very content: retrying cannot help.
_RETRYABLE_4XX = frozenset({401, 403, 404, 408, 423, 429})


class CalDAVCalendar:
    """Writes events to the calendar ``calendar_name`` of ``username`` on the server at ``url``."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        calendar_name: str,
        *,
        timeout: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self._url = url
        self._username = username
        self._password = password
        self._name = calendar_name
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._calendar_url: str | None = None

    def check(self) -> None:
        """Reach the server, log in, find the calendar or create it."""
        try:
            with self._client() as client:
                self._calendar_url = str(self._find_or_create(client).url)
        except caldav_error.AuthorizationError as exc:
            self._refused(f"refused access (HTTP {exc.status}); check username, password and rights")
        except caldav_error.NotFoundError:
            self._refused("has nothing at that URL (HTTP 404); check the URL")
        except caldav_error.DAVError as exc:
            self._refused(f"refused the request ({type(exc).__name__}, HTTP {exc.status}); is it a CalDAV server?")
        except OSError as exc:
            self._refused(f"cannot be reached ({type(exc).__name__}); check the URL and that the server runs")
        except Exception as exc:  # caldav fails in assorted ways on answers that are not CalDAV
            self._refused(f"did not answer like a CalDAV server ({type(exc).__name__}); check the URL")

    def upsert(self, event: CalendarEvent) -> None:
        event = normalized(event)
        with self._calendar() as calendar:
            resource = _find(calendar, event.uid)
            stored = None
            if resource is not None:
                try:
                    stored = parse_event(resource.data, event.uid)
                except InvalidIcs:
                    stored = None  # not one of ours any more: replace it whole
            self._save(calendar, resource, revised(stored, event))

    def cancel(self, uid: str) -> None:
        with self._calendar() as calendar:
            resource = _find(calendar, uid)
            if resource is None:
                return
            try:
                stored = parse_event(resource.data, uid)
            except InvalidIcs:
                raise DeliveryFailed(CHANNEL, "the stored event is unreadable", permanent=True) from None
            self._save(calendar, resource, cancelled(stored))

    def get(self, uid: str) -> CalendarEvent | None:
        with self._calendar() as calendar:
            resource = _find(calendar, uid)
            if resource is None:
                return None
            try:
                return parse_event(resource.data, uid)
            except InvalidIcs:
                raise DeliveryFailed(CHANNEL, "the stored event is unreadable", permanent=True) from None

    def _refused(self, problem: str) -> NoReturn:
        raise AdapterConfigError(ADAPTER, f"the CalDAV server for calendar {self._name!r} {problem}") from None

    def _client(self) -> DAVClient:
        # rfc6764 discovery off: the URL is given, and DNS must not redirect it.
        return DAVClient(
            url=self._url,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
            enable_rfc6764=False,
        )

    def _find_or_create(self, client: DAVClient) -> Any:
        principal = client.principal()  # type: ignore[no-untyped-call]  # untyped in caldav 3.6
        try:
            return principal.calendar(name=self._name)
        except caldav_error.NotFoundError:
            pass
        by_id = principal.calendar(cal_id=self._name)
        try:
            by_id.get_display_name()  # 404 unless a calendar lives at that id
            return by_id
        except caldav_error.NotFoundError:
            return principal.make_calendar(name=self._name, cal_id=self._name)

    @contextmanager
    def _calendar(self) -> Iterator[Any]:
        """The calendar, on a client closed afterwards; caldav's errors become ``DeliveryFailed``."""
        try:
            with self._client() as client:
                if self._calendar_url is None:
                    self._calendar_url = str(self._find_or_create(client).url)
                yield client.calendar(url=self._calendar_url)  # type: ignore[no-untyped-call]  # untyped in caldav 3.6
        except KapflowError:
            raise
        except caldav_error.DAVError as exc:
            status = exc.status or 0
            permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
            reason = f"CalDAV server refused ({type(exc).__name__}, HTTP {status or 'unknown'})"
            raise DeliveryFailed(CHANNEL, reason, permanent=permanent) from None
        except OSError as exc:
            raise DeliveryFailed(CHANNEL, f"CalDAV server unavailable ({type(exc).__name__})") from None
        except Exception as exc:  # caldav fails in assorted ways on answers that are not CalDAV
            raise DeliveryFailed(CHANNEL, f"unexpected answer from the CalDAV server ({type(exc).__name__})") from None

    def _save(self, calendar: Any, resource: Any, event: CalendarEvent | None) -> None:
        if event is None:
            return
        text = event_ics(event, stamp=self._clock.now())
        if resource is None:
            calendar.add_event(text, increase_seqno=False)
        else:
            resource.data = text
            resource.save(increase_seqno=False)


def _find(calendar: Any, uid: str) -> Any:
    """The resource holding ``uid``, or None."""
    try:
        return calendar.get_event_by_uid(uid)
    except caldav_error.NotFoundError:
        return None
