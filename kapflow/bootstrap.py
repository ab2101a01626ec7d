"""The composition root: the one place an ``Engine`` and a worker are assembled from settings.

Adapters are imported here and nowhere else in ``kapflow``, and only those
the settings ask for, so a practice without CalDAV never imports caldav.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from datetime import timedelta

from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.engine import Engine
from kapflow.config import Settings
from kapflow.domain.calendar import ClockStyle, PracticeCalendar
from kapflow.domain.messages import practice_timezone
from kapflow.domain.workflow import Workflow
from kapflow.errors import AdapterConfigError, ConfigError
from kapflow.ports import Calendar, Clock, Notifier
from kapflow.public_holidays import closed_days
from kapflow.store import schema
from kapflow.store.sql import SqlStore, check_location

DEFAULT_DB_URL = "sqlite:///kapflow.db"


def database_url(url: str | None = None, settings: Settings | None = None) -> str:
    """The URL given, else the settings', else ``$KAPFLOW_DB``, else a SQLite file ``kapflow.db`` here."""
    return url or (settings.database if settings else None) or os.environ.get("KAPFLOW_DB") or DEFAULT_DB_URL


def build_engine(
    url: str | None = None,
    workflows: Workflow | Sequence[Workflow] | None = None,
    *,
    clock: Clock | None = None,
    settings: Settings | None = None,
    calendar_sync: bool | None = None,
    create_database: bool = True,
) -> Engine:
    """An engine on a database (default: a SQLite file) running the settings' workflows (default: KAP).

    ``calendar_sync`` (default: whether the settings name a calendar) queues a calendar change for
    every appointment change; a caller bringing its own calendar adapter says so here.
    ``create_database=False`` (for reads) opens only a database that exists at the newest schema
    revision, and says how to make one otherwise: a mistyped URL never leaves an empty database behind.
    """
    settings = settings or Settings()
    if workflows is None:
        workflows = load_workflows(settings.workflows)
    return Engine(
        SqlStore(database_url(url, settings), existing_only=not create_database),
        workflows,
        clock=clock,
        contacts=settings.contacts,
        practice=practice_calendar(settings),
        calendar_sync=settings.calendar is not None if calendar_sync is None else calendar_sync,
        channels=settings.delivery_channels(),
        console_url=settings.console_url,
        urgent_channel=settings.urgent_channel,
    )


def practice_calendar(settings: Settings) -> PracticeCalendar:
    """The practice's calendar from its settings: zone, closed days (public holidays and its own), clock."""
    clock: ClockStyle = "12h" if settings.clock == "12h" else "24h"
    return PracticeCalendar(practice_timezone(settings.timezone), closed_days(settings.closed_days), clock)


def upgrade_schema(url: str) -> schema.Upgrade:
    """Create the database's schema, or upgrade it to this kapflow's newest revision."""
    return schema.upgrade(url)


def schema_revision(url: str) -> str | None:
    """The database's schema revision (None: no schema yet). Writes nothing, and creates no database."""
    check_location(url, must_exist=True)
    return schema.current(url)


def newest_revision() -> str:
    """This kapflow's newest schema revision."""
    return schema.head()


def schema_differences(url: str) -> list[str]:
    """Where the database differs from this kapflow's models (empty: it matches). Writes nothing."""
    check_location(url, must_exist=True)
    return list(schema.check(url))


BASELINE_REVISION = schema.BASELINE


def load_workflows(paths: Sequence[str]) -> list[Workflow]:
    """The workflow versions named by ``module:attribute`` import paths, in order; every problem at once."""
    problems: list[str] = []
    found: list[Workflow] = []
    for path in paths:
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"workflows: cannot import {module_name!r} from {path!r} ({type(exc).__name__}: {exc})")
            continue
        value = getattr(module, attribute, None)
        if not isinstance(value, Workflow):
            what = "nothing" if value is None else f"a {type(value).__name__}"
            problems.append(f"workflows: {path!r} is {what}, not a kapflow Workflow")
        elif value.key in {wf.key for wf in found}:
            problems.append(f"workflows: {path!r} repeats {value.name} version {value.version!r}")
        else:
            found.append(value)
    if problems:
        raise ConfigError("settings", problems)
    return found


def build_notifiers(settings: Settings, clock: Clock | None = None) -> dict[str, Notifier]:
    """The notifiers the settings name; ``clock`` (the engine's) dates what they send."""
    notifiers: dict[str, Notifier] = {}
    if settings.email is not None:
        from kapflow.adapters.notify.smtp import SmtpNotifier

        s = settings.email
        notifiers["email"] = SmtpNotifier(
            s.host, s.port, s.sender, username=s.username, password=s.password, starttls=s.starttls,
            allow_cleartext_loopback=s.allow_cleartext_loopback, clock=clock,
        )
    if settings.maildir is not None:
        from kapflow.adapters.notify.maildir import MaildirNotifier

        notifiers["email"] = MaildirNotifier(settings.maildir, clock=clock)
    if settings.channels:
        try:
            from kapflow.adapters.notify.apprise import AppriseNotifier
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, "notify", "apprise") from None

        for channel, urls in settings.channels.items():
            notifiers[channel] = AppriseNotifier(channel, urls)
    if settings.webhook is not None:
        from kapflow.adapters.notify.webhook import WebhookNotifier

        notifiers["webhook"] = WebhookNotifier(settings.webhook.url, settings.webhook.secret)
    return notifiers


def missing_extra(exc: ModuleNotFoundError, extra: str, adapter: str) -> AdapterConfigError | ModuleNotFoundError:
    """The error for an adapter whose optional dependency is not installed: it names the extra to install."""
    if exc.name is None or exc.name.startswith("kapflow"):
        return exc  # kapflow itself is broken: not a missing extra
    return AdapterConfigError(
        adapter, f"needs the {exc.name} package: install kapflow[{extra}] (pip install 'kapflow[{extra}]')"
    )


def build_calendar(settings: Settings, clock: Clock | None = None) -> Calendar | None:
    """The calendar the settings name, if any; ``clock`` (the engine's) stamps its events (DTSTAMP)."""
    c = settings.calendar
    if c is None:
        return None
    if c.ics_folder is not None:
        from kapflow.adapters.calendar.ics import IcsCalendar

        return IcsCalendar(c.ics_folder, clock=clock)
    try:
        from kapflow.adapters.calendar.caldav import CalDAVCalendar
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "calendar", "caldav") from None

    assert c.caldav_url is not None
    return CalDAVCalendar(c.caldav_url, c.username, c.password, c.name, clock=clock)


def build_dispatcher(engine: Engine, settings: Settings, *, worker_id: str | None = None) -> Dispatcher:
    """The worker's dispatcher with the adapters the settings name; call ``check()`` before running it."""
    w = settings.worker
    policy = DeliveryPolicy(lease=timedelta(seconds=w.lease_seconds), batch=w.batch, max_attempts=w.max_attempts)
    notifiers, calendar = build_notifiers(settings, engine.clock), build_calendar(settings, engine.clock)
    return Dispatcher(engine, notifiers, calendar, worker_id=worker_id, policy=policy)
