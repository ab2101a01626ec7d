"""The composition root: the one place an ``Engine`` and a worker are assembled from settings.

Adapters are imported here and nowhere else in ``kapflow``, and only those
the settings ask for, so a practice without CalDAV never imports caldav.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from kapflow.app.audit_log import Checkpointer, Witness
from kapflow.app.dispatch import DeliveryPolicy, Dispatcher
from kapflow.app.engine import Engine
from kapflow.audit import checkpoint_file
from kapflow.audit.log_verify import LogReport
from kapflow.audit.proof import ProofReport
from kapflow.audit.signing import Ed25519Signer, Ed25519Verifier, generate_key, load_verifiers
from kapflow.config import Settings
from kapflow.domain.calendar import ClockStyle, PracticeCalendar
from kapflow.domain.messages import practice_timezone
from kapflow.domain.superbill import Practice
from kapflow.domain.workflow import Workflow
from kapflow.errors import ConfigError, StorageError, missing_extra
from kapflow.ports import Calendar, Clock, Notifier
from kapflow.public_holidays import closed_days
from kapflow.store import schema
from kapflow.store.backup import BackupInfo, RestoreInfo, backup_sqlite, restore_sqlite
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
        fees=settings.billing.fee_policy(),
        documents=Practice(settings.billing.practice, settings.billing.clinicians),
    )


def practice_calendar(settings: Settings) -> PracticeCalendar:
    """The practice's calendar from its settings: zone, closed days (public holidays and its own), clock."""
    clock: ClockStyle = "12h" if settings.clock == "12h" else "24h"
    return PracticeCalendar(practice_timezone(settings.timezone), closed_days(settings.closed_days), clock)


def upgrade_schema(url: str) -> schema.Upgrade:
    """Create the database's schema, or upgrade it to this kapflow's newest revision."""
    return schema.upgrade(url)


NAME_INDEX_REVISION = "0011"  # the revision adding the name index: a database older than it fills it in


def index_client_names(url: str, settings: Settings) -> int:
    """Index the client names of the cases opened before the name index (``Engine.index_client_names``)."""
    engine = build_engine(url, settings=settings, create_database=False)
    try:
        return engine.index_client_names()
    finally:
        engine.close()


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


def backup_database(url: str, target: str | Path, *, overwrite: bool = False) -> BackupInfo:
    """A consistent, private (0600) copy of the live SQLite database at ``url`` in the file ``target``.

    Safe while commands and the worker write; ``overwrite`` replaces a file already there. A
    PostgreSQL URL is a ``StorageError`` saying to use pg_dump and continuous archiving instead.
    """
    return backup_sqlite(url, Path(target), overwrite=overwrite)


def restore_database(source: str | Path, url: str, *, replace: bool = False) -> RestoreInfo:
    """Put the backup ``source`` back into the SQLite database at ``url``.

    A database holding any case is overwritten only with ``replace`` (stop the worker and the API first).
    """
    return restore_sqlite(Path(source), url, replace=replace)


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
    policy = DeliveryPolicy(lease=timedelta(seconds=w.lease_seconds), batch=w.batch, max_attempts=w.max_attempts,
                            in_flight=w.in_flight)
    notifiers, calendar = build_notifiers(settings, engine.clock), build_calendar(settings, engine.clock)
    return Dispatcher(engine, notifiers, calendar, worker_id=worker_id, policy=policy)


# ------------------------------------------------------------------ the audit log's keys and checkpoints


def audit_signer(settings: Settings) -> Ed25519Signer | None:
    """The checkpoint signing key: from the environment (``audit.signing_key_env``) or ``audit.signing_key_file``."""
    a = settings.audit
    text = a.signing_key
    if text is None and a.signing_key_file is not None:
        path = Path(a.signing_key_file)
        try:
            if path.stat().st_mode & 0o077:
                raise ConfigError("settings", [f"audit.signing_key_file {path} is readable by others: "
                                               f"chmod 600 {path}"])
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("settings", [f"audit.signing_key_file: cannot read {path} "
                                           f"({exc.strerror or type(exc).__name__})"]) from None
    return Ed25519Signer.from_text(text.strip()) if text else None


def audit_verifiers(public_key_file: str | Path) -> list[Ed25519Verifier]:
    """The verifier keys of a public key file (every key the log has used)."""
    try:
        text = Path(public_key_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--public-key", [f"cannot read {public_key_file} "
                                           f"({exc.strerror or type(exc).__name__})"]) from None
    return load_verifiers(text)


def build_checkpointer(engine: Engine, settings: Settings) -> Checkpointer | None:
    """Checkpoints as the settings say (witnesses, the checkpoint file); None without a signing key."""
    signer = audit_signer(settings)
    if signer is None:
        return None
    a = settings.audit
    witnesses = [Witness("email", a.witness_email)] if a.witness_email else []
    if a.witness_webhook:
        witnesses.append(Witness("webhook", "witness"))
    path = a.checkpoint_file
    publish = None if path is None else (lambda records: checkpoint_file.publish(path, records))
    return engine.checkpointer(signer, origin=a.origin, witnesses=witnesses, publish=publish)


def log_verification(engine: Engine, settings: Settings) -> Callable[[], LogReport]:
    """Verifies the audit log against the practice's checkpoint file and public keys when its settings name
    both, else against the database's own checkpoints (weaker: the report says it is not trusted)."""
    a = settings.audit
    if a.checkpoint_file is None or a.public_key_file is None:
        return lambda: engine.verify_log(None, None)
    lines, keys = a.checkpoint_file, a.public_key_file
    return lambda: engine.verify_log(checkpoint_file.read_lines(lines),
                                     checkpoint_file.note_opener(audit_verifiers(keys)))


def case_proof(engine: Engine, settings: Settings) -> Callable[[str], ProofReport] | None:
    """Proves a case's events in the newest checkpoint of the practice's checkpoint file (None: no file)."""
    a = settings.audit
    if a.checkpoint_file is None or a.public_key_file is None:
        return None
    lines, keys = a.checkpoint_file, a.public_key_file
    return lambda case_id: engine.verify_case_log(case_id, checkpoint_file.read_lines(lines),
                                                  checkpoint_file.note_opener(audit_verifiers(keys)))


def write_key_pair(name: str, private_path: str | Path, public_path: str | Path) -> str:
    """A new checkpoint key: the private key file (0600, refused if it exists) and the public key file.

    The public key is appended to its file, which lists every key the log has used (a rotation keeps
    old checkpoints verifiable). Returns the verifier key's text.
    """
    signer_text, verifier_text = generate_key(name)
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("keygen", [f"{private_path} exists: a key is never overwritten; choose another "
                                     "path, or move the old key away first"]) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(signer_text + "\n")
        out.flush()
        os.fsync(out.fileno())
    with Path(public_path).open("a", encoding="utf-8") as pub:
        pub.write(verifier_text + "\n")
    return verifier_text


# ------------------------------------------------------------------ the HTTP API


def build_api(url: str, settings: Settings, *, processes: int = 1) -> Any:
    """The HTTP API (a FastAPI app) over an engine on ``url``: API keys, and OpenID tokens if configured;
    ``processes``: how many serve it (with more than one, a kept-alive connection is closed now and then, so the
    client's connections spread among them: ``SpreadConnections``)."""
    try:
        from kapflow.http.app import create_app
        from kapflow.http.console.pages import ConsoleConfig, ConsoleOidc
        from kapflow.http.identity import RequestAuthenticator
        from kapflow.http.oidc import OidcSettings, OidcVerifier
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "serve", "serve") from None
    engine = build_engine(url, settings=settings, create_database=False)
    s = settings.serve
    oidc = None
    if s.oidc_issuer is not None and s.oidc_audience is not None:
        oidc = OidcVerifier(OidcSettings(issuer=s.oidc_issuer, audience=s.oidc_audience,
                                         role_claim=s.oidc_role_claim))

    def ready() -> None:  # the database answers, at this kapflow's schema (StorageError: 503)
        if schema.current(url) != schema.head():
            raise StorageError("the database's schema is not this kapflow's newest: run kapflow db upgrade")

    c = settings.console
    client = None
    if s.oidc_issuer is not None and c.oidc_client_id is not None:
        client = ConsoleOidc(issuer=s.oidc_issuer, client_id=c.oidc_client_id, client_secret=c.oidc_client_secret,
                             role_claim=s.oidc_role_claim)
    console = ConsoleConfig(idle=timedelta(minutes=c.idle_minutes), totp_roles=c.totp_roles,
                            oidc_name=s.oidc_issuer if client else None, oidc=client,
                            verify_log=log_verification(engine, settings), prove_case=case_proof(engine, settings))
    return create_app(engine, RequestAuthenticator(engine, oidc), ready=ready, cors_origins=s.cors_origins,
                      console=console, requests_per_connection=REQUESTS_PER_CONNECTION if processes > 1 else 0)


REQUESTS_PER_CONNECTION = 100
"""Answers on a kept-alive connection before a service of several processes closes it (nginx's
``keepalive_requests`` was 100 for years): a reconnection, and with TLS a handshake, a hundred requests."""
