"""SMS, chat and many other channels through apprise URLs (``twilio://``, ``json://``, ``mailto://``, ...).

apprise does not say why a service failed (no status codes reach the
caller), so every failure is reported as transient: the worker retries, and
gives up after its own attempt limit. With several URLs, a failure of one
makes the retry resend to the others too: give each notifier one URL where
duplicates matter.

A URL may name the message's recipient with ``{recipient}`` (URL-quoted on
substitution): ``twilio://SID:TOKEN@15550000000/{recipient}`` texts each
client at the number from their message; a URL without it always goes to the
targets it names (a staff chat room, say). apprise silently drops targets it
finds invalid, so recipients are best validated where they are recorded.

Where a service accepts custom headers (``json``, ``form``, ``xml``,
``mailto`` and their secure forms), the message key travels as an
``X-Kapflow-Message-Key`` header so the receiver can deduplicate.

Errors name a URL's scheme only: the rest of an apprise URL usually holds a
token or a password. For the same reason, and because apprise logs each
recipient's address at INFO, importing this adapter puts a filter on
apprise's own logger: its records below WARNING are dropped, and the rest keep
their level but lose their text (they may quote an address or a token).
"""

from __future__ import annotations

import logging
import urllib.parse
import warnings
from collections.abc import Sequence

from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message

with warnings.catch_warnings():
    # apprise's PGP helper imports the standard library's deprecated imghdr
    # module (Python 3.11-3.12), lazily, when the email plugin first loads.
    # Importing the helper here keeps that one warning inside this block.
    warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
    import apprise
    import apprise.utils.pgp



class _WithheldText(logging.Filter):
    """Keeps apprise's warnings and errors, never their words (an address, a URL with its token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg = "apprise %s (text withheld: it may quote a recipient or a token)"
        record.args = (record.levelname.lower(),)
        record.exc_info = record.exc_text = None
        return True


def _quiet_apprise() -> None:
    log = logging.getLogger("apprise")
    if not any(isinstance(f, _WithheldText) for f in log.filters):
        log.addFilter(_WithheldText())


_quiet_apprise()

ADAPTER = "apprise"
KEY_HEADER = "X-Kapflow-Message-Key"
RECIPIENT = "{recipient}"
_CHECK_RECIPIENT = "kapflow-check"  # stands in for {recipient} when check() parses a URL
_HEADER_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"})


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.isalnum() else "(no scheme)"


def _for_recipient(url: str, recipient: str) -> str:
    return url.replace(RECIPIENT, urllib.parse.quote(recipient, safe="@+"))


def _with_key(url: str, key: str) -> str:
    """``url`` with the key as a custom header, for schemes whose apprise plugin sends ``+Header=value``."""
    if _scheme(url) not in _HEADER_SCHEMES:
        return url
    param = f"+{KEY_HEADER}={urllib.parse.quote(key, safe='')}"
    return f"{url}{'&' if '?' in url else '?'}{param}"


class AppriseNotifier:
    """Delivers one channel's messages to every apprise URL given; the subject becomes the title."""

    def __init__(self, channel: str, urls: str | Sequence[str], *, timeout: float = 10) -> None:
        self._channel = channel
        self._urls = (urls,) if isinstance(urls, str) else tuple(urls)
        self._timeout = timeout

    @property
    def channel(self) -> str:
        return self._channel

    def check(self) -> None:
        """Every URL is one apprise understands; nothing is sent (apprise cannot probe without sending)."""
        if not self._urls:
            raise AdapterConfigError(ADAPTER, f"no URL given for channel {self._channel!r}")
        for url in self._urls:
            if not apprise.Apprise().add(_for_recipient(url, _CHECK_RECIPIENT)):
                raise AdapterConfigError(
                    ADAPTER,
                    f"a {_scheme(url)} URL for channel {self._channel!r} is malformed or unsupported; "
                    "see apprise's documentation for that service",
                )

    def send(self, message: Message) -> None:
        if not message.recipient and any(RECIPIENT in url for url in self._urls):
            raise DeliveryFailed(self._channel, "the message has no recipient", permanent=True)
        services = apprise.Apprise()
        for url in self._urls:
            if not services.add(_with_key(_for_recipient(url, message.recipient), message.key)):
                raise DeliveryFailed(self._channel, f"misconfigured: a {_scheme(url)} URL is malformed")
        result = services.notify(body=message.body, title=message.subject, timeout=self._timeout)
        # notify() returns an AppriseResult, truthy only when every service accepted the message.
        if not result:
            failed = sum(1 for r in result if not r)
            raise DeliveryFailed(
                self._channel, f"{failed} of {len(self._urls)} service(s) failed ({result.status.name.lower()})"
            )
