"""The composition root: the one place an ``Engine`` and a worker are assembled from settings.

Adapters are imported here and nowhere else in ``kapflow``, and only those
the settings ask for, so a practice without CalDAV never imports caldav.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

from kapflow.config import Settings
from kapflow.dispatch import DeliveryPolicy, Dispatcher
from kapflow.domain.workflow import Workflow
from kapflow.engine import Engine
from kapflow.ports import Calendar, Clock, Notifier
from kapflow.store.sql import SqlStore

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
) -> Engine:
    """An engine on a database (default: a SQLite file) running the KAP pathway unless told otherwise."""
    if workflows is None:
        from kapflow.workflows.kap import KAP_PATHWAY

        workflows = KAP_PATHWAY
    settings = settings or Settings()
    return Engine(
        SqlStore(database_url(url, settings)),
        workflows,
        clock=clock,
        contacts=settings.contacts,
        timezone=settings.timezone,
        calendar_sync=settings.calendar is not None,
    )


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    if settings.email is not None:
        from kapflow.adapters.notify.smtp import SmtpNotifier

        s = settings.email
        notifiers["email"] = SmtpNotifier(
            s.host, s.port, s.sender, username=s.username, password=s.password, starttls=s.starttls
        )
    if settings.maildir is not None:
        from kapflow.adapters.notify.maildir import MaildirNotifier

        notifiers["email"] = MaildirNotifier(settings.maildir)
    if settings.channels:
        from kapflow.adapters.notify.apprise import AppriseNotifier

        for channel, urls in settings.channels.items():
            notifiers[channel] = AppriseNotifier(channel, urls)
    if settings.webhook is not None:
        from kapflow.adapters.notify.webhook import WebhookNotifier

        notifiers["webhook"] = WebhookNotifier(settings.webhook.url, settings.webhook.secret)
    return notifiers


def build_calendar(settings: Settings) -> Calendar | None:
    c = settings.calendar
    if c is None:
        return None
    if c.ics_folder is not None:
        from kapflow.adapters.calendar.ics import IcsCalendar

        return IcsCalendar(c.ics_folder)
    from kapflow.adapters.calendar.caldav import CalDAVCalendar

    assert c.caldav_url is not None
    return CalDAVCalendar(c.caldav_url, c.username, c.password, c.name)


def build_dispatcher(engine: Engine, settings: Settings, *, worker_id: str | None = None) -> Dispatcher:
    """The worker's dispatcher with the adapters the settings name; call ``check()`` before running it."""
    w = settings.worker
    policy = DeliveryPolicy(lease=timedelta(seconds=w.lease_seconds), batch=w.batch, max_attempts=w.max_attempts)
    return Dispatcher(engine, build_notifiers(settings), build_calendar(settings), worker_id=worker_id, policy=policy)
