"""The practice's settings: a TOML file, read and checked in one place (no adapters imported here).

    database = "sqlite:///kapflow.db"
    timezone = "America/New_York"
    clock = "12h"                # times for staff and clients: "24h" (the default) or "12h"
    urgent_channel = "sms"       # urgent alerts (a safety signal) go here first, where staff have an address
    # Every workflow version with cases on it, oldest first; new cases open on the last.
    workflows = ["kapflow.workflows.kap:KAP_PATHWAY", "practice.workflows:KAP_V2"]

    [closed_days]                # business days skip weekends and these (default: weekends only)
    public_holidays = "US-NY"    # a country's (and region's) public holidays, ISO 3166 codes
    dates = ["2026-12-24"]       # the practice's own closed days
    open = ["2026-11-11"]        # public holidays it works all the same

    [contacts.front_desk]
    email = "desk@practice.example"

    [email]                      # SMTP
    host = "smtp.practice.example"
    port = 587
    sender = "care-team@practice.example"
    username = "kapflow"
    password_env = "KAPFLOW_SMTP_PASSWORD"   # secrets come from the environment, never the file
    starttls = true              # the default; port 465 is implicit TLS. Cleartext only to a loopback
                                 # relay: starttls = false with allow_cleartext_loopback = true

    [maildir]                    # or: email into a local Maildir folder instead of SMTP
    folder = "/srv/kapflow/mail"

    [channels.sms]               # any channel through apprise URLs
    urls_env = "KAPFLOW_SMS_URLS"

    [webhook]
    url = "https://pms.practice.example/hooks/kapflow"
    secret_env = "KAPFLOW_WEBHOOK_SECRET"

    [calendar]                   # CalDAV, or ics_folder = "/srv/kapflow/calendar"
    caldav_url = "https://dav.practice.example/"
    username = "kapflow"
    password_env = "KAPFLOW_CALDAV_PASSWORD"
    name = "kap-appointments"

    [worker]
    interval_seconds = 1
    lease_seconds = 120
    max_attempts = 8

Every problem is reported at once, naming the key and what to put there. A key
no table knows is an error with the likely one ("did you mean 'starttls'?"), and
an inline secret (``password``, ``secret``, ``urls``) is refused: name an
environment variable with its ``*_env`` key instead.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kapflow.domain.billing import FeePolicy
from kapflow.domain.billing_documents import Clinician, Party
from kapflow.domain.npi import npi_problem
from kapflow.errors import ConfigError

DEFAULT_WORKFLOWS = ("kapflow.workflows.kap:KAP_PATHWAY",)
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
IMPLICIT_TLS_PORT = 465

# The keys each table takes; secrets only as *_env keys naming an environment variable.
_TOP_KEYS = ("database", "timezone", "clock", "closed_days", "contacts", "email", "maildir", "channels", "webhook",
             "calendar", "worker", "workflows", "console_url", "urgent_channel", "audit", "serve", "console",
             "billing")
_CLOSED_DAYS_KEYS = ("public_holidays", "dates", "open")
_HOLIDAY_REGION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
CLOCK_STYLES = ("24h", "12h")
_EMAIL_KEYS = ("host", "port", "sender", "username", "password_env", "starttls", "allow_cleartext_loopback")
_MAILDIR_KEYS = ("folder",)
_CHANNEL_KEYS = ("urls_env",)
_WEBHOOK_KEYS = ("url", "secret_env")
_CALENDAR_KEYS = ("caldav_url", "username", "password_env", "name", "ics_folder")
_WORKER_KEYS = ("interval_seconds", "lease_seconds", "max_attempts", "batch", "in_flight")
_SECRETS = frozenset({"password", "secret", "urls", "signing_key", "oidc_client_secret"})
_AUDIT_KEYS = ("origin", "signing_key_env", "signing_key_file", "public_key_file", "checkpoint_file",
               "checkpoint_every_minutes", "witness_email", "witness_webhook")
DEFAULT_SIGNING_KEY_ENV = "KAPFLOW_AUDIT_SIGNING_KEY"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SERVE_KEYS = ("host", "port", "workers", "tls_cert_file", "tls_key_file", "oidc_issuer", "oidc_audience",
               "oidc_role_claim", "cors_origins")
_CONSOLE_KEYS = ("idle_minutes", "totp_roles", "oidc_client_id", "oidc_client_secret_env")
_BILLING_KEYS = ("no_show_fee", "late_cancel_fee", "late_cancel_hours", "practice", "clinicians")
_PRACTICE_KEYS = ("name", "address", "phone", "tax_id", "npi")
_CLINICIAN_KEYS = ("name", "credentials", "npi")
_TAX_ID = re.compile(r"[0-9]{2}-[0-9]{7}")  # an EIN
_CLINICIAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True  # ignored on port 465 (implicit TLS)
    allow_cleartext_loopback: bool = False  # starttls = false is allowed only with this, to a loopback host


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str


@dataclass(frozen=True)
class CalendarSettings:
    caldav_url: str | None = None
    username: str = ""
    password: str = ""
    name: str = "kapflow"
    ics_folder: str | None = None


@dataclass(frozen=True)
class ClosedDaysSettings:
    """Days the practice is closed beyond weekends: business days are counted around them."""

    public_holidays: str | None = None  # "US" or "US-NY": a country (and its region), ISO 3166
    dates: frozenset[date] = frozenset()  # the practice's own closed days
    open: frozenset[date] = frozenset()  # public holidays the practice works all the same


@dataclass(frozen=True)
class WorkerSettings:
    interval_seconds: float = 1.0
    lease_seconds: int = 120
    max_attempts: int = 8
    batch: int = 50
    in_flight: int = 2  # messages being sent at once (a relay across a network answers each one late)


@dataclass(frozen=True)
class AuditSettings:
    """The audit log's checkpoints: who signs them, where they are written and sent, how often."""

    origin: str = "kapflow/audit"  # the log's name in each checkpoint: one per practice database
    signing_key: str | None = None  # the private key's text, from the environment (signing_key_env)
    signing_key_file: str | None = None  # or a file holding it (0600)
    public_key_file: str | None = None  # the verifier keys (old ones too, after a rotation)
    checkpoint_file: str | None = None  # the append-only file every checkpoint is written to
    checkpoint_every_minutes: float = 5.0
    witness_email: str | None = None  # a compliance mailbox each checkpoint is mailed to
    witness_webhook: bool = False  # post each checkpoint to the [webhook] too


@dataclass(frozen=True)
class ServeSettings:
    """``kapflow serve``: where it listens, its TLS certificate, and the practice's OpenID provider."""

    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 1
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    oidc_issuer: str | None = None  # without it the API takes API keys only
    oidc_audience: str | None = None
    oidc_role_claim: str = "kapflow_role"
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none: CORS off)


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's sign-in: idle sign-out, the roles that must use a second factor, the OpenID client."""

    idle_minutes: float = 15.0
    totp_roles: tuple[str, ...] = ()  # local accounts of these roles sign in with a TOTP code too
    oidc_client_id: str | None = None  # with [serve] oidc_issuer: sign-in through the practice's provider
    oidc_client_secret: str | None = None  # from the environment (oidc_client_secret_env); none: a public client


@dataclass(frozen=True)
class BillingSettings:
    """The practice's missed-visit fees, and who it is on a superbill: itself and its clinicians by id."""

    no_show_fee: Decimal | None = None
    late_cancel_fee: Decimal | None = None
    late_cancel_hours: int = 24
    practice: Party | None = None
    clinicians: Mapping[str, Clinician] = field(default_factory=dict)

    def fee_policy(self) -> FeePolicy:
        return FeePolicy(self.no_show_fee, self.late_cancel_fee, self.late_cancel_hours)


@dataclass(frozen=True)
class Settings:
    database: str | None = None
    timezone: str = "UTC"
    clock: str = "24h"  # "24h" or "12h": how staff and clients read times
    closed_days: ClosedDaysSettings = field(default_factory=ClosedDaysSettings)
    contacts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    email: SmtpSettings | None = None
    maildir: str | None = None
    channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # channel -> apprise URLs
    webhook: WebhookSettings | None = None
    calendar: CalendarSettings | None = None
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    workflows: tuple[str, ...] = DEFAULT_WORKFLOWS  # "module:attribute" of each version, oldest first
    console_url: str | None = None  # the console's base URL: staff alerts link to the case's page
    urgent_channel: str | None = None  # the channel urgent alerts go on first, e.g. "sms"
    audit: AuditSettings = field(default_factory=AuditSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)

    def delivery_channels(self) -> frozenset[str] | None:
        """The channels a worker with these settings delivers on; None when it names no adapter (any)."""
        named = {"email"} if self.email or self.maildir else set()
        named |= set(self.channels) | ({"webhook"} if self.webhook else set())
        return frozenset(named) or None


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None, *, secrets: bool = True) -> Settings:
    """Settings from a TOML file (or defaults without one); secrets resolved from ``env``.

    ``secrets=False``: for commands that deliver nothing (reads, the case commands), a secret whose
    variable is not set is no problem; the adapters needing it are left out of the settings.
    """
    if path is None:
        return Settings()
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file ({exc.strerror or type(exc).__name__})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return parse_settings(raw, source, os.environ if env is None else env, secrets=secrets)


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], *, secrets: bool = True) -> None:
        self.env = env
        self.secrets = secrets  # whether an unset secret's variable is a problem
        self.problems: list[str] = []

    def keys(self, raw: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        """Every key ``raw`` has that ``known`` lacks is a problem: an inline secret, or a typo with a suggestion."""
        prefix = f"{where}." if where else ""
        for key in sorted(set(map(str, raw)) - set(known)):
            if key in _SECRETS and f"{key}_env" in known:
                self.problems.append(
                    f"{prefix}{key}: secrets are not read from the settings file; put it in an environment "
                    f"variable and name that with {prefix}{key}_env"
                )
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
            self.problems.append(f"unknown setting {prefix}{key}; {hint}")

    def table(self, raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append(f"[{key}] must be a table")
            return None
        return value

    def text(self, raw: Mapping[str, Any], where: str, key: str, *, required: bool = True,
             secret: bool = False) -> str | None:
        """``key``'s text; a ``secret`` only through ``{key}_env`` (an inline one is reported by ``keys``)."""
        value = None if secret else raw.get(key)
        if value is None and f"{key}_env" in raw:
            name = raw[f"{key}_env"]
            value = self.env.get(str(name))
            if value is None:
                if self.secrets:
                    self.problems.append(f"{where}.{key}_env names {name!r}, which is not set in the environment")
                return None
        if value is None:
            if required and not (secret and key in raw):
                self.problems.append(f"{where}.{key}{'_env' if secret else ''} is required")
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{where}.{key} must be non-empty text")
            return None
        return value

    def number(self, raw: Mapping[str, Any], where: str, key: str, default: float, low: float, high: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.problems.append(f"{where}.{key} must be a number from {low:g} to {high:g}")
            return default
        return float(value)

    def whole(self, raw: Mapping[str, Any], where: str, key: str, default: int, low: int, high: int) -> int:
        """A count or a port: a whole number (2.5 workers is a typo, not 2)."""
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problems.append(f"{where}.{key} must be a whole number from {low} to {high}")
            return default
        return value


def parse_settings(raw: Mapping[str, Any], source: str, env: Mapping[str, str], *, secrets: bool = True) -> Settings:
    r = _Reader(env, secrets=secrets)
    r.keys(raw, "", _TOP_KEYS)
    settings = Settings(
        database=r.text(raw, "", "database", required=False),
        timezone=r.text(raw, "", "timezone", required=False) or "UTC",
        clock=_clock(r, raw.get("clock", "24h")),
        closed_days=_closed_days(r, r.table(raw, "closed_days")),
        contacts=_contacts(r, raw),
        email=_smtp(r, r.table(raw, "email")),
        maildir=_maildir(r, r.table(raw, "maildir"), "email" in raw),
        channels=_channels(r, r.table(raw, "channels")),
        webhook=_webhook(r, r.table(raw, "webhook")),
        calendar=_calendar(r, r.table(raw, "calendar")),
        worker=_worker(r, r.table(raw, "worker") or {}),
        workflows=_workflows(r, raw.get("workflows")),
        console_url=_console_url(r, raw.get("console_url")),
        urgent_channel=r.text(raw, "", "urgent_channel", required=False),
        audit=_audit(r, r.table(raw, "audit") or {}),
        serve=_serve(r, r.table(raw, "serve") or {}),
        console=_console(r, r.table(raw, "console") or {}),
        billing=_billing(r, r.table(raw, "billing") or {}),
    )
    if settings.console.oidc_client_id and not settings.serve.oidc_issuer:
        r.problems.append("console.oidc_client_id needs serve.oidc_issuer: the provider the console signs in through")
    if r.problems:
        raise ConfigError(source, r.problems)
    return settings


def _clock(r: _Reader, value: object) -> str:
    if value not in CLOCK_STYLES:
        r.problems.append('clock must be "24h" (14:30) or "12h" (2:30 PM)')
        return "24h"
    return str(value)


def _closed_days(r: _Reader, t: Mapping[str, Any] | None) -> ClosedDaysSettings:
    if t is None:
        return ClosedDaysSettings()
    r.keys(t, "closed_days", _CLOSED_DAYS_KEYS)
    region = t.get("public_holidays")
    if region is not None and not (isinstance(region, str) and _HOLIDAY_REGION.fullmatch(region)):
        r.problems.append('closed_days.public_holidays must be a country code, with a region if any, such as '
                          '"US", "US-NY" or "AU-NSW"')
        region = None
    return ClosedDaysSettings(region, _dates(r, t, "dates"), _dates(r, t, "open"))


def _dates(r: _Reader, t: Mapping[str, Any], key: str) -> frozenset[date]:
    value = t.get(key, [])
    days: set[date] = set()
    for item in value if isinstance(value, list) else [value]:
        try:
            days.add(item if isinstance(item, date) else date.fromisoformat(str(item)))
        except ValueError:
            r.problems.append(f"closed_days.{key} must be a list of dates such as [\"2026-12-24\"]; "
                              f"{str(item)[:30]!r} is not one")
    return frozenset(days)


def _console_url(r: _Reader, value: object) -> str | None:
    """An https URL (http only on this machine): alert links must not travel in clear."""
    if value is None:
        return None
    parsed = urlsplit(str(value)) if isinstance(value, str) else None
    loopback = parsed is not None and parsed.hostname in LOOPBACK_HOSTS
    secure = parsed is not None and (parsed.scheme == "https" or (parsed.scheme == "http" and loopback))
    if parsed is None or not parsed.hostname or not secure:
        r.problems.append("console_url must be an https URL such as https://kapflow.practice.example "
                          "(http only for 127.0.0.1 or localhost)")
        return None
    return str(value)


def _contacts(r: _Reader, raw: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    table = r.table(raw, "contacts") or {}
    out: dict[str, dict[str, str]] = {}
    for role, channels in table.items():
        if not isinstance(channels, dict) or not all(isinstance(v, str) for v in channels.values()):
            r.problems.append(f"contacts.{role} must map channels to addresses, e.g. email = \"desk@...\"")
            continue
        out[str(role)] = {str(k): str(v) for k, v in channels.items()}
    return out


def _smtp(r: _Reader, t: Mapping[str, Any] | None) -> SmtpSettings | None:
    if t is None:
        return None
    r.keys(t, "email", _EMAIL_KEYS)
    host, sender = r.text(t, "email", "host"), r.text(t, "email", "sender")
    port = r.whole(t, "email", "port", 587, 1, 65535)
    username = r.text(t, "email", "username", required=False)
    password = r.text(t, "email", "password", required=False, secret=True)
    if (username is None) != ("password_env" not in t) and "password" not in t:
        r.problems.append("email.username and email.password_env go together")
    starttls, loopback = _flag(r, t, "starttls", True), _flag(r, t, "allow_cleartext_loopback", False)
    if not starttls and port != IMPLICIT_TLS_PORT:
        # Reminders name clients and their appointments; a password in clear is anyone's on the path.
        if not loopback:
            r.problems.append("email.starttls = false sends mail (and any password) in clear: keep starttls = "
                              "true (or port 465), or for a relay on this machine set allow_cleartext_loopback = "
                              "true")
        elif host is not None and host.lower() not in LOOPBACK_HOSTS:
            r.problems.append(f"email.allow_cleartext_loopback is only for a relay on this machine "
                              f"(127.0.0.1, ::1 or localhost), not {host}")
    if host is None or sender is None:
        return None
    return SmtpSettings(host, port, sender, username, password, starttls, loopback)


def _flag(r: _Reader, t: Mapping[str, Any], key: str, default: bool) -> bool:
    value = t.get(key, default)
    if not isinstance(value, bool):
        r.problems.append(f"email.{key} must be true or false")
        return default
    return value


def _maildir(r: _Reader, t: Mapping[str, Any] | None, has_smtp: bool) -> str | None:
    if t is None:
        return None
    r.keys(t, "maildir", _MAILDIR_KEYS)
    if has_smtp:
        r.problems.append("email goes either by SMTP ([email]) or into a folder ([maildir]), not both")
    return r.text(t, "maildir", "folder")


def _channels(r: _Reader, t: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, spec in (t or {}).items():
        if not isinstance(spec, dict):
            r.problems.append(f"channels.{name} must be a table with urls_env")
            continue
        r.keys(spec, f"channels.{name}", _CHANNEL_KEYS)
        if "urls" in spec:
            continue  # an inline secret, reported by keys()
        urls = None
        if "urls_env" in spec:
            joined = r.env.get(str(spec["urls_env"]))
            if joined is None:
                if r.secrets:
                    r.problems.append(f"channels.{name}.urls_env names {spec['urls_env']!r}, which is not set")
                continue
            urls = [u for u in joined.split() if u]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            r.problems.append(f"channels.{name}.urls_env must name a variable holding apprise URLs "
                              "(separated by white space)")
            continue
        out[str(name)] = tuple(urls)
    return out


def _webhook(r: _Reader, t: Mapping[str, Any] | None) -> WebhookSettings | None:
    if t is None:
        return None
    r.keys(t, "webhook", _WEBHOOK_KEYS)
    url, secret = r.text(t, "webhook", "url"), r.text(t, "webhook", "secret", secret=True)
    return WebhookSettings(url, secret) if url and secret else None


def _calendar(r: _Reader, t: Mapping[str, Any] | None) -> CalendarSettings | None:
    if t is None:
        return None
    r.keys(t, "calendar", _CALENDAR_KEYS)
    folder = r.text(t, "calendar", "ics_folder", required=False)
    url = r.text(t, "calendar", "caldav_url", required=False)
    if (folder is None) == (url is None):
        r.problems.append("calendar needs exactly one of caldav_url or ics_folder")
        return None
    if url is None:
        return CalendarSettings(ics_folder=folder)
    return CalendarSettings(
        caldav_url=url,
        username=r.text(t, "calendar", "username") or "",
        password=r.text(t, "calendar", "password", secret=True) or "",
        name=r.text(t, "calendar", "name", required=False) or "kapflow",
    )


def _worker(r: _Reader, t: Mapping[str, Any]) -> WorkerSettings:
    r.keys(t, "worker", _WORKER_KEYS)
    return WorkerSettings(
        interval_seconds=r.number(t, "worker", "interval_seconds", 1.0, 0.05, 3600),
        lease_seconds=r.whole(t, "worker", "lease_seconds", 120, 1, 86400),
        max_attempts=r.whole(t, "worker", "max_attempts", 8, 1, 100),
        batch=r.whole(t, "worker", "batch", 50, 1, 10000),
        in_flight=r.whole(t, "worker", "in_flight", 2, 1, 16),
    )


def _audit(r: _Reader, t: Mapping[str, Any]) -> AuditSettings:
    r.keys(t, "audit", _AUDIT_KEYS)
    env_name = str(t.get("signing_key_env", DEFAULT_SIGNING_KEY_ENV))
    webhook = t.get("witness_webhook", False)
    if not isinstance(webhook, bool):
        r.problems.append("audit.witness_webhook must be true or false")
        webhook = False
    return AuditSettings(
        origin=r.text(t, "audit", "origin", required=False) or "kapflow/audit",
        signing_key=r.env.get(env_name) or None,
        signing_key_file=r.text(t, "audit", "signing_key_file", required=False),
        public_key_file=r.text(t, "audit", "public_key_file", required=False),
        checkpoint_file=r.text(t, "audit", "checkpoint_file", required=False),
        checkpoint_every_minutes=r.number(t, "audit", "checkpoint_every_minutes", 5.0, 0.1, 1440),
        witness_email=r.text(t, "audit", "witness_email", required=False),
        witness_webhook=webhook,
    )


def _serve(r: _Reader, t: Mapping[str, Any]) -> ServeSettings:
    r.keys(t, "serve", _SERVE_KEYS)
    cert, key = (r.text(t, "serve", k, required=False) for k in ("tls_cert_file", "tls_key_file"))
    if (cert is None) != (key is None):
        r.problems.append("serve.tls_cert_file and serve.tls_key_file go together")
    issuer, audience = (r.text(t, "serve", k, required=False) for k in ("oidc_issuer", "oidc_audience"))
    if (issuer is None) != (audience is None):
        r.problems.append("serve.oidc_issuer and serve.oidc_audience go together: tokens are checked for both")
    return ServeSettings(
        host=r.text(t, "serve", "host", required=False) or "127.0.0.1",
        port=r.whole(t, "serve", "port", 8443, 1, 65535),
        workers=r.whole(t, "serve", "workers", 1, 1, 64),
        tls_cert_file=cert, tls_key_file=key, oidc_issuer=issuer, oidc_audience=audience,
        oidc_role_claim=r.text(t, "serve", "oidc_role_claim", required=False) or "kapflow_role",
        cors_origins=_origins(r, t.get("cors_origins", [])),
    )


def _console(r: _Reader, t: Mapping[str, Any]) -> ConsoleSettings:
    r.keys(t, "console", _CONSOLE_KEYS)
    roles = t.get("totp_roles", [])
    if not isinstance(roles, list) or not all(isinstance(v, str) and v for v in roles):
        r.problems.append('console.totp_roles must be a list of roles, e.g. ["prescriber", "auditor"]')
        roles = []
    return ConsoleSettings(
        idle_minutes=r.number(t, "console", "idle_minutes", 15.0, 1, 720),
        totp_roles=tuple(roles),
        oidc_client_id=r.text(t, "console", "oidc_client_id", required=False),
        oidc_client_secret=r.text(t, "console", "oidc_client_secret", required=False, secret=True),
    )


def _billing(r: _Reader, t: Mapping[str, Any]) -> BillingSettings:
    r.keys(t, "billing", _BILLING_KEYS)
    practice = r.table(t, "practice")
    clinicians = r.table(t, "clinicians") or {}
    return BillingSettings(
        no_show_fee=_fee(r, t, "no_show_fee"), late_cancel_fee=_fee(r, t, "late_cancel_fee"),
        late_cancel_hours=r.whole(t, "billing", "late_cancel_hours", 24, 1, 168),
        practice=_practice(r, practice) if practice is not None else None,
        clinicians={str(cid): found for cid, table in clinicians.items()
                    if (found := _clinician(r, str(cid), table)) is not None},
    )


def _fee(r: _Reader, t: Mapping[str, Any], key: str) -> Decimal | None:
    value = t.get(key)
    if value is None:
        return None
    try:
        amount = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        r.problems.append(f'billing.{key} must be an amount in dollars and cents as text, e.g. "75.00"')
        return None
    return amount


def _practice(r: _Reader, t: Mapping[str, Any]) -> Party | None:
    """The practice as a superbill names it; every key is required (a superbill never has a blank field)."""
    r.keys(t, "billing.practice", _PRACTICE_KEYS)
    where = "billing.practice"
    name, phone = r.text(t, where, "name"), r.text(t, where, "phone")
    tax_id, npi = r.text(t, where, "tax_id"), r.text(t, where, "npi")
    address = t.get("address")
    if not isinstance(address, list) or not address or not all(isinstance(v, str) and v.strip() for v in address):
        r.problems.append(f"{where}.address must be a list of lines, "
                          'e.g. ["12 Sample Street", "Springfield, ST 00000"]')
        address = None
    if tax_id is not None and not _TAX_ID.fullmatch(tax_id):
        r.problems.append(f"{where}.tax_id must be the practice's EIN, 9 digits as NN-NNNNNNN")
        tax_id = None
    npi = _npi(r, where, npi)
    if None in (name, phone, tax_id, npi, address):
        return None
    return Party(str(name), tuple(address or ()), str(phone), str(tax_id), str(npi))


def _clinician(r: _Reader, cid: str, t: object) -> Clinician | None:
    where = f"billing.clinicians.{cid}"
    if not _CLINICIAN_ID.fullmatch(cid) or not isinstance(t, dict):
        r.problems.append(f"{where} must be a table named by the clinician's id as appointments name it, e.g. "
                          "[billing.clinicians.np-rowan]")
        return None
    r.keys(t, where, _CLINICIAN_KEYS)
    name, credentials = r.text(t, where, "name"), r.text(t, where, "credentials")
    npi = _npi(r, where, r.text(t, where, "npi"))
    if name is None or credentials is None or npi is None:
        return None
    return Clinician(name, credentials, npi)


def _npi(r: _Reader, where: str, value: str | None) -> str | None:
    problem = npi_problem(value) if value is not None else None
    if problem is not None:
        r.problems.append(f"{where}.npi {problem}")
        return None
    return value


def _origins(r: _Reader, value: object) -> tuple[str, ...]:
    """Exact origins (scheme://host[:port]); never "*": a wildcard with credentials is what CORS exists to stop."""
    if not isinstance(value, list) or not all(isinstance(v, str) and _ORIGIN.fullmatch(v) for v in value):
        r.problems.append('serve.cors_origins must be a list of origins such as "https://pms.example" '
                          '(scheme, host and port only; no "*")')
        return ()
    return tuple(value)


def _workflows(r: _Reader, value: Any) -> tuple[str, ...]:
    """Import paths only: they are resolved into workflows by the composition root, not here."""
    if value is None:
        return DEFAULT_WORKFLOWS
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and _IMPORT_PATH.fullmatch(v)
                                                           for v in value):
        r.problems.append('workflows must be a non-empty list of "module:attribute" import paths, oldest first, '
                          'e.g. ["kapflow.workflows.kap:KAP_PATHWAY"]')
        return DEFAULT_WORKFLOWS
    return tuple(value)
