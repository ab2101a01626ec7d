"""The engine: kapflow's one public facade over its commands and queries.

Commands (``open_case``, ``fire``, ``record``, the appointment commands,
``migrate_case``) are each one transaction through the command runner
(``kapflow.app.runner``); queries read the store. The engine owns its store:
``close()`` it, or use it as a context manager.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any

from kapflow.app import access, accounts, audit_log, billing, cases, clients, migrate, queries, work
from kapflow.app.api_keys import ApiKeys
from kapflow.app.audit_export import export_case
from kapflow.app.audit_log import Checkpointer, Sequenced, Witness
from kapflow.app.command_input import instant_text
from kapflow.app.context import AppContext
from kapflow.app.migrate import CaseMigrationPlan
from kapflow.app.names import index_client_names
from kapflow.app.runner import CommandRunner, RetryPolicy
from kapflow.app.workflows import WorkflowSet
from kapflow.audit import AuditReport
from kapflow.audit.export_formats import CaseExport
from kapflow.audit.log_verify import LogReport
from kapflow.audit.note import Checkpoint
from kapflow.audit.proof import ProofReport
from kapflow.domain.access import AccessRecord
from kapflow.domain.accounts import IDLE_TIMEOUT, ConsoleSession, ConsoleUser, SignInAttempt
from kapflow.domain.appointments import Appointment, AppointmentFacts
from kapflow.domain.audit_log import CheckpointRecord
from kapflow.domain.billing import FeePolicy, Ledger
from kapflow.domain.billing_documents import GoodFaithEstimateView, SuperbillView
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, FactEntry, Outcome
from kapflow.domain.errors import InvalidInput
from kapflow.domain.estimate import EstimateRecord
from kapflow.domain.identity import ApiKey
from kapflow.domain.messages import Contacts, practice_timezone
from kapflow.domain.superbill import Practice, SuperbillRecord, SuperbillRequest
from kapflow.domain.verdict import Verdict
from kapflow.domain.work import WorkItem
from kapflow.domain.workflow import Workflow
from kapflow.ports import Clock, Signer, Store, SystemClock


class Engine:
    """kapflow's command and query API over one store and a set of workflows (each in one or more versions)."""

    def __init__(
        self,
        store: Store,
        workflows: Workflow | Sequence[Workflow],
        *,
        clock: Clock | None = None,
        new_case_id: Callable[[], str] = cases.new_case_id,
        contacts: Contacts | None = None,
        timezone: str = "UTC",
        practice: PracticeCalendar | None = None,
        calendar_sync: bool = False,
        retry: RetryPolicy | None = None,
        channels: Collection[str] | None = None,
        console_url: str | None = None,
        urgent_channel: str | None = None,
        fees: FeePolicy | None = None,
        documents: Practice | None = None,
    ) -> None:
        """``channels``: those the practice's worker delivers on (a client's preferred channel is used only
        when it is one of them; None: any). ``console_url``: the console's base URL, for staff alerts' links.
        ``urgent_channel``: the channel urgent alerts go on first (a safety signal's). ``fees``: the practice's
        fees for a no-show or a late cancellation (None: it charges for neither). ``documents``: who the
        practice and its clinicians are on superbills and estimates (its ``[billing]`` settings).
        ``practice``: the practice's calendar (its zone, closed days and clock style); without it, the
        calendar of ``timezone``, open on weekdays, on a 24-hour clock."""
        loaded = WorkflowSet(workflows)
        clock = clock or SystemClock()
        practice = practice or PracticeCalendar(practice_timezone(timezone))
        runner = CommandRunner(store, loaded, clock, calendar_sync=calendar_sync, policy=retry, practice=practice)
        self.app = AppContext(
            store=store, runner=runner, workflows=loaded, clock=clock, practice=practice,
            contacts=contacts or {}, calendar_sync=calendar_sync,
            channels=None if channels is None else frozenset(channels), console_url=console_url,
            urgent_channel=urgent_channel, fees=fees or FeePolicy(), documents=documents or Practice(None, {}),
        )
        self._new_case_id = new_case_id
        self.api_keys = ApiKeys(self.app)  # verification's cache lives as long as the engine

    # ------------------------------------------------------------ the engine's parts

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def clock(self) -> Clock:
        return self.app.clock

    @property
    def workflows(self) -> WorkflowSet:
        """Every loaded version of every loaded workflow."""
        return self.app.workflows

    @property
    def workflow(self) -> Workflow:
        """The version new cases start on when one workflow is loaded (the last one given otherwise)."""
        return self.app.workflows.default

    def close(self) -> None:
        """Close the store's connections."""
        self.app.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- commands

    def open_case(
        self, intake: Mapping[str, Any], *, actor: Actor, idempotency_key: str | None = None,
        workflow: Workflow | str | None = None,
    ) -> Outcome:
        """Open a case from its intake (the workflow's ``intake_fact``: for KAP, the inquiry form).

        ``workflow`` names the workflow (its current version), or gives a loaded version; it may be
        left out when the engine runs one workflow.
        """
        return cases.open_case(self.app, intake, actor=actor, idempotency_key=idempotency_key, workflow=workflow,
                               new_id=self._new_case_id)

    def fire(
        self, case_id: str, trigger: str, *, actor: Actor, data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None, expected_version: int | None = None,
    ) -> Outcome:
        """Move a case with ``trigger``; raises ``Refused`` (audited) or ``InvalidInput`` (nothing written)."""
        return cases.fire(self.app, case_id, trigger, actor=actor, data=data, idempotency_key=idempotency_key,
                          expected_version=expected_version)

    def record(
        self, case_id: str, kind: str, data: Mapping[str, Any], *, actor: Actor,
        idempotency_key: str | None = None, expected_version: int | None = None,
    ) -> Outcome:
        """Record a validated fact on a case (a payment, vitals, consent, ...)."""
        return cases.record(self.app, case_id, kind, data, actor=actor, idempotency_key=idempotency_key,
                            expected_version=expected_version)

    def migrate_case(
        self, case_id: str, to: Workflow, *, actor: Actor, expected_version: int | None = None,
        roles: Collection[str] | None = None,
    ) -> Outcome:
        """Move one case to another loaded version of its workflow, audited (see ``kapflow.app.migrate``)."""
        return migrate.migrate_case(self.app, case_id, to, actor, expected_version=expected_version, roles=roles)

    # ------------------------------------------------------------- appointments

    def book_appointment(
        self, case_id: str, kind: str, starts_at: datetime, *, actor: Actor,
        clinician: str | None = None, room: str | None = None,
        minutes: int | None = None, idempotency_key: str | None = None,
    ) -> Outcome:
        """Book an appointment with ``clinician`` (an id; required) in ``room`` (required for the kinds that
        take one); ``Outcome.extra["appointment"]`` is its id (a1, a2, ...). A clinician or room already
        held at an overlapping time refuses it (``TransitionBlocked``, ``clinician_unavailable`` or
        ``room_unavailable``)."""
        data: dict[str, Any] = {"kind": kind, "starts_at": instant_text(starts_at)}
        for name, value in (("clinician", clinician), ("room", room), ("minutes", minutes)):
            if value is not None:
                data[name] = value
        booking = self._carriers(case_id).booking
        return self.record(case_id, booking, data, actor=actor, idempotency_key=idempotency_key)

    def reschedule_appointment(
        self, case_id: str, appointment: str, starts_at: datetime, *, actor: Actor,
        reason: str | None = None, idempotency_key: str | None = None,
    ) -> Outcome:
        data = {
            "appointment": appointment, "action": "reschedule", "starts_at": instant_text(starts_at), "reason": reason,
        }
        return self._update_appointment(case_id, data, actor, idempotency_key)

    def cancel_appointment(
        self, case_id: str, appointment: str, *, actor: Actor, reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        data = {"appointment": appointment, "action": "cancel", "reason": reason}
        return self._update_appointment(case_id, data, actor, idempotency_key)

    def mark_no_show(
        self, case_id: str, appointment: str, *, actor: Actor, idempotency_key: str | None = None
    ) -> Outcome:
        return self._update_appointment(case_id, {"appointment": appointment, "action": "no_show"}, actor,
                                        idempotency_key)

    def mark_attended(
        self, case_id: str, appointment: str, *, actor: Actor, billed_minutes: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The client attended: the visit's charge lines are posted in this command, if its workflow bills it
        (``billed_minutes``: how long the billed service lasted, when not its usual length)."""
        data: dict[str, Any] = {"appointment": appointment, "action": "attended"}
        if billed_minutes is not None:
            data["billed_minutes"] = billed_minutes
        return self._update_appointment(case_id, data, actor, idempotency_key)

    def appointments(self, case_id: str) -> list[Appointment]:
        return queries.case_appointments(self.app, case_id)

    def _update_appointment(
        self, case_id: str, data: Mapping[str, Any], actor: Actor, key: str | None
    ) -> Outcome:
        return self.record(case_id, self._carriers(case_id).update, data, actor=actor, idempotency_key=key)

    def _carriers(self, case_id: str) -> AppointmentFacts:
        """The fact kinds that carry appointments in the case's workflow, or a clear error if it books none."""
        wf = self.workflow_of(self.case(case_id))
        if wf.appointments is None:
            raise InvalidInput(f"workflow {wf.name!r} books no appointments", field="kind")
        return wf.appointments

    # ----------------------------------------------------------------- API keys

    def create_api_key(
        self, name: str, role: str, delegate_roles: Iterable[str] = (), *, created_by: str
    ) -> tuple[str, ApiKey]:
        """A new API key for the service ``name``: its text (show it once; only its hash is kept) and record.

        ``role``: what the service acts as; ``delegate_roles``: the roles of the people it may act for
        (``Kapflow-On-Behalf-Of``). Each must be a role of a loaded workflow (``InvalidInput`` lists them)."""
        return self.api_keys.create(name, role, delegate_roles, created_by=created_by)

    def list_api_keys(self) -> list[ApiKey]:
        """Every API key, revoked ones too: never a secret or a hash."""
        return self.api_keys.list()

    def revoke_api_key(self, key_id: str, *, revoked_by: str) -> ApiKey:
        """Revoke a key: refused at once in this process, within ``kapflow.app.api_keys.CACHE_TTL`` in others."""
        return self.api_keys.revoke(key_id, revoked_by=revoked_by)

    def authenticate_api_key(self, key_text: str) -> ApiKey:
        """The active key ``key_text`` is, or ``Unauthenticated`` (``malformed``, ``unknown_key``, ``revoked``)."""
        return self.api_keys.authenticate(key_text)

    def api_key_actor(self, key_text: str, on_behalf_of: str | None = None) -> Actor:
        """Who a request with this key acts as: the person its ``Kapflow-On-Behalf-Of`` header value names (in
        a role the key may delegate, else ``NotPermitted``), or the key's service itself; ``via`` names it."""
        return self.api_keys.actor(key_text, on_behalf_of)

    # -------------------------------------------------------- console accounts

    def add_user(
        self, name: str, role: str, password: str, *, totp: bool, actor: Actor,
    ) -> tuple[ConsoleUser, str | None]:
        """A local console account; with ``totp``, its TOTP secret too (shown once). See ``kapflow.app.accounts``."""
        return accounts.add_user(self.app, name, role, password, totp=totp, actor=actor)

    def list_users(self) -> list[ConsoleUser]:
        return accounts.list_users(self.app)

    def disable_user(self, name: str, *, actor: Actor) -> ConsoleUser:
        return accounts.disable_user(self.app, name, actor=actor)

    def set_password(self, name: str, password: str, *, actor: Actor) -> ConsoleUser:
        return accounts.set_password(self.app, name, password, actor=actor)

    def reset_totp(self, name: str, *, actor: Actor) -> str:
        return accounts.reset_totp(self.app, name, actor=actor)

    def totp_uri(self, name: str, secret: str) -> str:
        """The ``otpauth://`` URI of a TOTP secret, for the user's authenticator app."""
        return accounts.totp_uri(name, secret)

    def sign_in(
        self, name: str, password: str, totp_code: str | None, *, source: str | None,
        totp_required_roles: Collection[str] = (),
    ) -> tuple[str, ConsoleSession]:
        """A session for a local account (its token and record); ``Unauthenticated`` with a reason if refused."""
        return accounts.sign_in(self.app, name, password, totp_code, source=source,
                                totp_required_roles=totp_required_roles)

    def open_session(
        self, actor_id: str, role: str, *, via: str, source: str | None = None,
    ) -> tuple[str, ConsoleSession]:
        """A session for someone an OpenID provider signed in (no password)."""
        return accounts.open_session(self.app, actor_id, role, via=via, source=source)

    def record_oidc_refusal(self, source: str | None = None) -> None:
        """Record a refused sign-in through the OpenID provider (the audit log covers it, as every attempt)."""
        accounts.record_oidc_refusal(self.app, source)

    def session(self, token: str, *, idle: timedelta = IDLE_TIMEOUT) -> ConsoleSession | None:
        """The open session of ``token``; None if unknown, ended or idle for ``idle`` (then it is ended)."""
        return accounts.session(self.app, token, idle=idle)

    def sign_out(self, token: str, *, source: str | None = None) -> bool:
        return accounts.sign_out(self.app, token, source=source)

    def sign_in_attempts(
        self, *, since: datetime | None = None, until: datetime | None = None, name: str | None = None,
        limit: int = accounts.DEFAULT_LIMIT,
    ) -> list[SignInAttempt]:
        """Sign-in attempts and session ends, oldest first: for auditors."""
        return accounts.sign_in_attempts(self.app, since=since, until=until, name=name, limit=limit)

    # ------------------------------------------------------------------ queries

    def case(self, case_id: str) -> CaseRecord:
        return queries.case(self.app, case_id)

    def workflow_of(self, case: CaseRecord) -> Workflow:
        """The loaded version ``case`` is on (``WorkflowDefinitionError`` if this engine lacks it)."""
        return self.app.workflows.of(case)

    def facts(self, case_id: str, kind: str | None = None) -> list[FactEntry]:
        return queries.facts(self.app, case_id, kind)

    def summaries(self, case_id: str) -> dict[str, object]:
        """The workflow's read-only views of the case, by name (KAP and psychotherapy: ``measures``, the
        PHQ-9 and GAD-7 baseline, latest, trajectory, response and remission)."""
        return queries.summaries(self.app, case_id)

    def history(self, case_id: str) -> list[AuditEvent]:
        return queries.history(self.app, case_id)

    def cases(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[CaseRecord]:
        return queries.cases(self.app, state=state, limit=limit, offset=offset)

    def case_page(
        self, *, state: str | None = None, workflow: str | None = None, cursor: str | None = None, limit: int = 50,
        blocker: str | None = None, appointment_on: date | None = None, overdue: bool = False,
        name: str | None = None,
    ) -> queries.CasePage:
        """A page of cases, oldest first, optionally in one state and workflow, after ``cursor``; with ``blocker``,
        those a guard with that code holds back now (a bounded scan: follow ``next_cursor``); with
        ``appointment_on``, those with an active appointment starting on that date in the practice's time zone;
        with ``overdue``, those with an overdue reminder (a timer pending 15 minutes past its time, or missed
        or failed); with ``name``, those each word of which begins a word of the client's name, accents and
        case aside ("zoe o" finds Zoë O'Neil). The filters combine; ``InvalidInput`` for a date that is not a
        ``date`` or a name with no letter. An entry point searching by name for a role checks
        ``check_name_search`` first."""
        return queries.case_page(self.app, state=state, workflow=workflow, cursor=cursor, limit=limit,
                                 blocker=blocker, appointment_on=appointment_on, overdue=overdue, name=name)

    def check_name_search(self, role: str, workflow: str | None = None) -> None:
        """``NotPermitted`` unless ``role`` may read the client's name in the workflow searched (or in all)."""
        queries.check_name_search(self.app, role, workflow)

    def index_client_names(self) -> int:
        """Index the client names of cases opened before the name index existed (``kapflow db upgrade`` does
        it after migration 0011); how many cases it indexed. Safe to run again, and while commands run."""
        return index_client_names(self.app)

    def count_cases(self, *, state: str | None = None) -> int:
        return queries.count_cases(self.app, state=state)

    def iter_cases(self) -> Iterator[CaseRecord]:
        """Every case, streamed (one in memory at a time), ordered by id."""
        return self.app.store.iter_cases()

    def timers(self, case_id: str | None = None) -> list[dict[str, Any]]:
        """Reminders planned, sent, skipped, missed or cancelled, and why (one case's, or all)."""
        return queries.timers(self.app, case_id)

    def outbox(self, case_id: str | None = None) -> list[dict[str, Any]]:
        """Messages and calendar changes with their delivery status (one case's, or all)."""
        return queries.outbox(self.app, case_id)

    def work(self, role: str, person: str, *, limit: int = 100) -> list[WorkItem]:
        """What waits on ``person`` acting as ``role`` now ("My work"), oldest first (``kapflow.app.work``)."""
        return work.work_for(self.app, role, person, now=self.app.clock.now(), limit=limit)

    def check(
        self, case_id: str, trigger: str, *, actor: Actor | None = None, data: Mapping[str, Any] | None = None
    ) -> Verdict:
        """Would ``trigger`` fire now (with ``data``)? Every blocker, including role and state. Writes nothing."""
        return queries.check(self.app, case_id, trigger, actor=actor, data=data)

    def available(self, case_id: str, *, actor: Actor | None = None) -> list[Verdict]:
        """A verdict for every trigger that leaves the case's current state."""
        return queries.available(self.app, case_id, actor=actor)

    def ledger(self, case_id: str) -> Ledger:
        """The case's ledger: its charges (posted as its visits completed), payments and adjustments, and the
        balance (``billing.ledger_kinds``: the fact kinds a role must read to be shown it)."""
        return billing.case_ledger(self.app, case_id)

    def issue_superbill(
        self, case_id: str, *, first: date, last: date, actor: Actor, diagnoses: Sequence[str] | None = None,
    ) -> billing.IssuedSuperbill:
        """Issue the case's superbill for the insurance-billed services dated ``first`` to ``last`` (each line
        pointing to the diagnoses made on or before its date; ``diagnoses`` to choose them), recorded on the
        case. ``DocumentIncomplete`` names every gap (the practice's details, a clinician's, the client's
        address, a line without a diagnosis made by its date), and nothing is written. Render it with
        ``document_pdf``."""
        return billing.issue_superbill(self.app, case_id, SuperbillRequest(first, last, diagnoses), actor=actor)

    def superbill(self, case_id: str, reference: str) -> SuperbillView:
        """The superbill issued on the case as ``reference``, made again as it was issued."""
        return billing.superbill(self.app, case_id, reference)

    def superbills(self, case_id: str) -> list[SuperbillRecord]:
        """The superbills issued on the case, oldest first."""
        return billing.superbills(self.app, case_id)

    def estimates(self, case_id: str) -> list[EstimateRecord]:
        """The good faith estimates recorded on the case (one each time its plan was set or extended)."""
        return billing.estimates(self.app, case_id)

    def estimate(self, case_id: str, reference: str, role: str | None = None) -> GoodFaithEstimateView:
        """The good faith estimate recorded as ``reference``, as a document (``DocumentIncomplete`` names every
        gap: the practice's or the clinician's details, the client's address); its diagnoses only for a
        ``role`` that reads them (None: any). Render it with ``document_pdf``."""
        return billing.estimate(self.app, case_id, reference, role)

    def billing_fhir(self, case_id: str) -> str:
        """The case's billing and care as a FHIR R4B Bundle, JSON (the ``fhir`` extra): Patient, EpisodeOfCare,
        CarePlan, Appointment, Encounter, ChargeItem (CPT, ICD-10-CM, place of service), Invoice, Account."""
        return billing.fhir_bundle(self.app, case_id)

    @staticmethod
    def document_pdf(view: SuperbillView | GoodFaithEstimateView) -> bytes:
        """A superbill or good faith estimate as a PDF (the ``pdf`` extra: fpdf2, DejaVu Sans embedded)."""
        return billing.document_pdf(view)

    def readable_facts(self, case_id: str, role: str, kind: str | None = None) -> list[FactEntry]:
        """The case's facts of the kinds ``role`` may read (its workflow's ``read_access``)."""
        return queries.readable_facts(self.app, case_id, role, kind)

    def readable_history(self, case_id: str, role: str) -> list[AuditEvent]:
        """The case's history, the data of events about fact kinds ``role`` may not read withheld."""
        return queries.readable_history(self.app, case_id, role)

    def record_access(self, actor: Actor, case_id: str, view: str) -> None:
        """Record that ``actor`` read ``view`` (``case``, ``facts``, ``history``, ``triggers``, ...) of a case: one
        small transaction that neither reads nor locks the case. The entry point calls it for each read it serves."""
        access.record_access(self.app, actor, case_id, view)

    def accesses(
        self, *, case_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
        actor: str | None = None, limit: int = access.DEFAULT_LIMIT,
    ) -> list[AccessRecord]:
        """Who read ``case_id`` (None: any case), or what ``actor`` read, in [since, until), oldest first."""
        return access.accesses(self.app, case_id=case_id, since=since, until=until, actor=actor, limit=limit)

    def bind_client(self, case_id: str, subject: str, *, actor: Actor) -> bool:
        """Bind a client identity (the identity provider's subject) to the case: audited; staff only."""
        return clients.bind_client(self.app, case_id, subject, actor=actor)

    def unbind_client(self, case_id: str, subject: str, *, actor: Actor) -> bool:
        """Remove a client identity's binding to the case: audited; staff only."""
        return clients.unbind_client(self.app, case_id, subject, actor=actor)

    def invite_client(self, case_id: str, *, actor: Actor) -> tuple[str, datetime]:
        """A one-time invitation for the case's client to bind its identity (staff only, audited): the code,
        shown once, and when it expires."""
        return clients.invite_client(self.app, case_id, actor=actor)

    def accept_invitation(self, code: str, *, actor: Actor) -> str:
        """The signed-in client redeems an invitation: its identity is bound to the case; the case's id."""
        return clients.accept_invitation(self.app, code, actor=actor)

    def client_bound(self, case_id: str, subject: str) -> bool:
        """Whether a client identity may reach the case (it was bound to it by the practice)."""
        return clients.client_bound(self.app, case_id, subject)

    def client_cases(self, subject: str) -> list[str]:
        """The ids of the cases a client identity is bound to."""
        return clients.client_cases(self.app, subject)

    def verify_audit(self, case_id: str | None = None) -> AuditReport:
        return queries.verify_audit(self.app, case_id)

    def audit_log_status(self) -> audit_log.LogStatus:
        """The audit log's size, the rows waiting for a position and the newest checkpoint (no verification)."""
        return audit_log.log_status(self.app)

    def sequence_audit_log(self, *, max_batches: int | None = None) -> Sequenced:
        """Place every committed audit row still waiting in the audit log (one process at a time)."""
        return audit_log.sequence(self.app, max_batches=max_batches)

    def checkpoint(
        self, signer: Signer, *, origin: str, witnesses: Sequence[Witness] = (), force: bool = False
    ) -> CheckpointRecord | None:
        """Sequence, then sign and store the log's new head; None if the newest checkpoint covers it all."""
        return audit_log.checkpoint(self.app, signer, origin, witnesses=witnesses, force=force)

    def checkpointer(
        self, signer: Signer, *, origin: str, witnesses: Sequence[Witness] = (),
        publish: Callable[[Sequence[CheckpointRecord]], int] | None = None,
    ) -> Checkpointer:
        """Checkpoints signed by ``signer`` and handed to ``publish`` (the checkpoint file) once stored."""
        return Checkpointer(self.app, signer, origin, tuple(witnesses), publish)

    def verify_log(
        self, checkpoint_lines: Iterable[str] | None = None,
        open_note: Callable[[str], tuple[Checkpoint, str]] | None = None,
    ) -> LogReport:
        """The audit log against a checkpoint file's signed checkpoints (or, without one, the database's own)."""
        return audit_log.verify_log(self.app, checkpoint_lines, open_note)

    def export_case(self, case_id: str, *, checkpoint_size: int | None = None) -> CaseExport:
        """A case's events with their log positions and inclusion proofs against the newest signed checkpoint
        (or the one of ``checkpoint_size``), for ``kapflow.audit.proof.prove_export``. Reads only."""
        return export_case(self.app, case_id, checkpoint_size)

    def verify_case_log(
        self, case_id: str, checkpoint_lines: Iterable[str], open_note: Callable[[str], tuple[Checkpoint, str]],
    ) -> ProofReport:
        """One case's events proven in the newest checkpoint of a checkpoint file the database still holds."""
        return audit_log.verify_case_log(self.app, case_id, checkpoint_lines, open_note)

    def iter_migration_plans(self, to: Workflow) -> Iterator[CaseMigrationPlan]:
        """A plan for every non-final case on another version of ``to``'s workflow, streamed. Writes nothing."""
        return migrate.iter_migration_plans(self.app, to)

    def plan_migration(self, to: Workflow) -> list[CaseMigrationPlan]:
        """Every in-flight case that could move to ``to``, each with its verdict (the dry run)."""
        return list(self.iter_migration_plans(to))
