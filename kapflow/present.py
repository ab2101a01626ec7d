"""What kapflow's entry points show: JSON shapes, one-line texts, and what an error becomes.

The command line, the HTTP API and the web console all shape their output
here, so they say the same thing the same way: a case, its facts, an audit
event's summary, a command's outcome, a verdict, the audit report, and the
exit code (CLI) or HTTP status and body (API) of an error.

The shapes carry text exactly as stored. Text bound for a terminal goes
through ``defang`` first: names and notes may hold anything, and a C1 control
character (U+009B is a terminal's CSI) must not reach the screen raw.

Exit codes (the CLI)::

    0  done (``exit_code(None)``)
    1  anything else: a broken audit chain, a storage or adapter error, a bug
    2  InvalidInput and its subclasses (InvalidFact, UnknownTrigger,
       UnknownFactKind, IdempotencyKeyReused, DocumentIncomplete), ConfigError, and a checkpoint or key
       that is malformed or does not verify (CheckpointFormatError, SignatureInvalid):
       bad input or settings, nothing written
    3  Refused and its subclasses (NotPermitted, TransitionNotAvailable,
       TransitionBlocked, MigrationRefused): refused, and the refusal audited;
       ConcurrencyConflict (an --expected-version the case has left): nothing
       written, reload and retry; ``kapflow check`` of a blocked trigger
    4  UnknownCase

HTTP statuses (the API)::

    422  InvalidInput and its subclasses (IdempotencyKeyReused too: the key was
         sent with another command, a fault of the request, not of the state);
         CheckpointFormatError, SignatureInvalid: a checkpoint sent that does not hold
    404  UnknownCase
    403  NotPermitted
    409  other Refused (not available, blocked, migration refused) and
         ConcurrencyConflict (with LostRace): the case's state says no
    401  WebhookVerificationError: the request is not from the sender it claims;
         Unauthenticated: no credential, or one that does not verify
    501  DiagramUnavailable: this server lacks the optional dependency
    502  DeliveryFailed: a channel or calendar behind kapflow failed
    503  StorageError (with DuplicateIdempotencyKey): the database failed; retry
    500  WorkflowDefinitionError, ConfigError, AdapterConfigError,
         AuditChainBroken, MoveUndefined, and anything that is not a
         KapflowError: the server is at fault

The body of an error is ``err.as_dict()`` (code, message, structured
attributes; no protected health information by the errors' own rule), and for
anything else a fixed sentence: never a traceback, never the exception's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kapflow.app.workflows import WorkflowSet
from kapflow.audit import AuditProblem, AuditReport
from kapflow.audit.log_verify import LogProblem, LogReport
from kapflow.audit.proof import ProofReport
from kapflow.domain.appointments import Appointment
from kapflow.domain.billing import ChargeLine, Ledger
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import AuditEvent, CaseRecord, FactEntry, Outcome
from kapflow.domain.entries import to_iso
from kapflow.domain.estimate import EstimateRecord
from kapflow.domain.events import EventKind
from kapflow.domain.names import client_name_of
from kapflow.domain.superbill import SuperbillRecord
from kapflow.domain.verdict import Verdict
from kapflow.domain.work import WorkItem, readiness_text
from kapflow.domain.workflow import Workflow
from kapflow.errors import (
    AdapterConfigError,
    CheckpointFormatError,
    ConcurrencyConflict,
    ConfigError,
    DeliveryFailed,
    DiagramUnavailable,
    InvalidInput,
    KapflowError,
    NotPermitted,
    Refused,
    SignatureInvalid,
    StorageError,
    Unauthenticated,
    UnknownCase,
    WebhookVerificationError,
    WorkflowDefinitionError,
)

__all__ = [
    "EXIT_DONE",
    "EXIT_INPUT",
    "EXIT_OTHER",
    "EXIT_REFUSED",
    "EXIT_UNKNOWN_CASE",
    "EventSummary",
    "audit_problem_text",
    "audit_report_shape",
    "audit_summary_text",
    "blocker_lines",
    "case_shape",
    "case_workflow",
    "client_name",
    "defang",
    "error_body",
    "event_summary",
    "exit_code",
    "fact_summary",
    "http_status",
    "outbox_shape",
    "outcome_text",
    "timer_shape",
    "verdict_shape",
]

EXIT_DONE, EXIT_OTHER, EXIT_INPUT, EXIT_REFUSED, EXIT_UNKNOWN_CASE = 0, 1, 2, 3, 4

# C1 control characters (U+0080-U+009F; U+009B is a terminal's CSI) shown as JSON-style escapes, never raw.
_C1_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x80, 0xA0)}

# The most specific class first: a subclass listed after its base would never be reached.
_HTTP_STATUS: tuple[tuple[type[KapflowError], int], ...] = (
    (InvalidInput, 422),
    (CheckpointFormatError, 422),
    (SignatureInvalid, 422),
    (Unauthenticated, 401),
    (UnknownCase, 404),
    (NotPermitted, 403),
    (Refused, 409),
    (ConcurrencyConflict, 409),
    (WebhookVerificationError, 401),
    (DiagramUnavailable, 501),
    (DeliveryFailed, 502),
    (StorageError, 503),
    (WorkflowDefinitionError, 500),
    (ConfigError, 500),
    (AdapterConfigError, 500),
)
_INTERNAL_ERROR = {
    "error": "internal_error",
    "message": "an unexpected error; this is a bug in kapflow, please report it",
}


# ------------------------------------------------------------------ text from the database


def defang(text: str) -> str:
    """``text`` as stored, except that C1 control characters become ``\\u009b``-style escapes."""
    return text.translate(_C1_ESCAPES)


# ------------------------------------------------------------------ cases and facts


def case_workflow(workflows: WorkflowSet, case: CaseRecord) -> Workflow | None:
    """The loaded version ``case`` is on; else its workflow's current version; None if that is not loaded.

    For showing a case only (its client's name): a command on a case whose version is
    not loaded fails in the engine with a clear error.
    """
    found = workflows.get(case.workflow, case.workflow_version)
    if found is None and case.workflow in workflows.names:
        found = workflows.current(case.workflow)
    return found


def client_name(case: CaseRecord, workflow: Workflow | None) -> str:
    """The client's name: the workflow's ``client.name`` fields of the intake fact, joined by spaces."""
    return client_name_of(case.projection, workflow) if workflow is not None else ""


def case_shape(case: CaseRecord, workflow: Workflow | None) -> dict[str, object]:
    """A case as JSON: ids, client, state, versions, event count and times (``workflow``: the case's)."""
    return {
        "id": case.id, "client": client_name(case, workflow), "state": case.state,
        "previous_state": case.previous_state, "version": case.version, "workflow": case.workflow,
        "workflow_version": case.workflow_version, "events": case.event_count,
        "opened_at": to_iso(case.opened_at), "updated_at": to_iso(case.updated_at),
    }


def fact_summary(case: CaseRecord) -> list[dict[str, object]]:
    """One entry per fact kind recorded, in the order first recorded: count, the last one's time, author, data."""
    by_kind: dict[str, list[FactEntry]] = {}
    for fact in case.projection.facts():
        by_kind.setdefault(fact.kind, []).append(fact)
    return [
        {"kind": kind, "count": len(facts), "last_at": to_iso(facts[-1].at), "last_by": facts[-1].by,
         "latest": dict(facts[-1].data)}
        for kind, facts in by_kind.items()
    ]


def case_summaries(case: CaseRecord, workflow: Workflow | None) -> dict[str, object]:
    """The workflow's read-only views of the case (its ``summaries``, e.g. symptom measures), by name.

    A view that cannot be computed from the facts stored is shown as unavailable, not as a failed command.
    """
    return workflow.summarize(case.projection) if workflow is not None else {}


# ------------------------------------------------------------------ audit events and outcomes


@dataclass(frozen=True)
class EventSummary:
    """An audit event in a line: what happened (``what``) and the move it made, if any."""

    what: str
    source: str | None = None  # the state left; None when the event entered the first state
    dest: str | None = None  # the state entered; None when the event moved nothing

    def move(self, joiner: str = " ") -> str:
        """``"from -> to"`` (``joiner`` before the arrow: a newline for a narrow column); ``""`` if no move."""
        if self.dest is None:
            return ""
        return f"-> {self.dest}" if self.source is None else f"{self.source}{joiner}-> {self.dest}"

    def as_dict(self) -> dict[str, object]:
        return {"what": self.what, "from": self.source, "to": self.dest, "move": self.move()}


def event_summary(ev: AuditEvent) -> EventSummary:
    """What an audit event says, by its kind: the fact recorded, the trigger fired, the reminder's fate, ..."""
    data: Mapping[str, Any] = ev.data
    match _kind(ev.kind):
        case EventKind.OPENED:
            return EventSummary(str(data.get("intake_kind", "")), None, ev.to_state)
        case EventKind.TRANSITION:
            return EventSummary(ev.trigger or "", ev.from_state, ev.to_state)
        case EventKind.FACT:
            return EventSummary(str(data.get("kind", "")))
        case EventKind.REMINDER:
            return EventSummary(f"{data.get('reminder', '')}: {data.get('outcome', '')}")
        case EventKind.DELIVERY_FAILED:
            return EventSummary(f"{data.get('channel', '')} gave up after {data.get('attempts', '')}")
        case EventKind.MESSAGE_DROPPED:
            return EventSummary(f"{data.get('channel', '')} message dropped: {data.get('reason', '')}")
        case EventKind.CLIENT_INVITED:
            return EventSummary("client invited to bind its identity")
        case EventKind.CLIENT_BOUND | EventKind.CLIENT_UNBOUND:
            return EventSummary("client identity " + ("bound" if ev.kind == EventKind.CLIENT_BOUND else "unbound"))
        case EventKind.MIGRATED | EventKind.REFUSED | None:  # None: a kind this kapflow does not know
            return EventSummary(ev.trigger or "")


def _kind(text: str) -> EventKind | None:
    try:
        return EventKind(text)
    except ValueError:
        return None


def outcome_text(outcome: Outcome) -> str:
    """A command's outcome in a line: ``case-...: book_evaluation: inquiry -> evaluation_booked, version 3``."""
    match _kind(outcome.kind):
        case EventKind.TRANSITION:
            what = f"{outcome.trigger}: {outcome.from_state} -> {outcome.state}"
        case EventKind.FACT:
            booked = outcome.extra.get("appointment")  # a booking names the appointment's new id
            appointment = f" {booked}" if booked else ""
            what = f"recorded {outcome.extra.get('fact_kind', 'fact')}{appointment} (state {outcome.state})"
        case EventKind.MIGRATED:
            what = (f"moved from version {outcome.extra.get('from_version')} to "
                    f"{outcome.extra.get('to_version')} ({outcome.state})")
        case _:
            what = f"opened (state {outcome.state})"
    replayed = " [replayed: this key was used before]" if outcome.replayed else ""
    return f"{outcome.case_id}: {what}, version {outcome.version}{replayed}"


def appointment_shape(appt: Appointment) -> dict[str, Any]:
    """An appointment as JSON: its id, kind, times (ISO 8601, UTC), length, status, calendar uid, and the
    clinician and room it holds (ids)."""
    return {
        "id": appt.id, "kind": appt.kind, "starts_at": to_iso(appt.starts_at), "ends_at": to_iso(appt.ends_at),
        "minutes": appt.minutes, "status": appt.status, "location": appt.location, "sequence": appt.sequence,
        "uid": appt.uid, "clinician": appt.clinician, "room": appt.room,
    }


def work_item_shape(item: WorkItem, practice: PracticeCalendar) -> dict[str, Any]:
    """A work list's item as JSON: ``since`` (and an appointment's start) in ISO 8601 UTC, and as staff read it
    in the practice's zone (``since_text``, ``starts_text``); readiness ``ready`` or the blockers' sentences."""
    shape: dict[str, Any] = {
        "case_id": item.case_id, "code": item.code, "sentence": item.sentence,
        "since": to_iso(item.since), "since_text": practice.time_text(item.since),
        "blockers": [{"code": code, "message": sentence} for code, sentence in item.blockers],
        "appointment": None,
    }
    if item.appointment is not None:
        appt = item.appointment
        shape["appointment"] = {
            "id": appt.id, "kind": appt.kind, "starts_at": to_iso(appt.starts_at),
            "starts_text": practice.time_text(appt.starts_at), "minutes": appt.minutes,
            "clinician": appt.clinician, "trigger": appt.trigger,
        }
        shape["readiness"] = readiness_text(item.blockers) if appt.trigger else None
    return shape


def timer_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """A reminder's timer row as JSON."""
    return dict(row)


def outbox_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """An outbox row as JSON, without the message's body and payload (they may hold a client's details)."""
    return {k: v for k, v in row.items() if k not in ("body", "payload")}


# ------------------------------------------------------------------ verdicts and the audit


def charge_shape(line: ChargeLine) -> dict[str, Any]:
    """A charge line as JSON: amounts as exact text ("165.00"), never a float."""
    return {
        "id": line.id, "posted_at": to_iso(line.at), "visit": line.visit, "service": line.service,
        "description": line.description, "code": line.code, "units": line.units, "fee": f"{line.fee:.2f}",
        "insurance": line.insurance, "date_of_service": line.date_of_service.isoformat(), "minutes": line.minutes,
        "clinician": line.clinician or None, "paid": f"{line.paid:.2f}", "written_off": f"{line.written_off:.2f}",
        "voided": line.voided, "open": f"{line.open:.2f}",
    }


def ledger_shape(books: Ledger) -> dict[str, Any]:
    """A case's ledger as JSON: its charges, its statement (every entry with the balance after it), totals."""
    return {
        "charges": [charge_shape(c) for c in books.charges],
        "entries": [{"at": to_iso(e.at), "kind": e.kind, "ref": e.ref or None, "description": e.description,
                     "amount": f"{e.amount:.2f}", "balance": f"{e.balance:.2f}"} for e in books.entries],
        "charged": f"{books.charged:.2f}", "paid": f"{books.paid:.2f}", "adjusted": f"{books.adjusted:.2f}",
        "credit": f"{books.credit:.2f}", "balance": f"{books.balance:.2f}",
    }


def superbill_shape(record: SuperbillRecord) -> dict[str, Any]:
    """A superbill issued, as JSON: amounts as exact text."""
    return {"reference": record.reference, "first": record.first.isoformat(), "last": record.last.isoformat(),
            "lines": list(record.lines), "diagnoses": list(record.diagnoses), "clinician": record.clinician,
            "charged": f"{record.charged:.2f}", "paid": f"{record.paid:.2f}",
            "balance": f"{record.charged - record.paid:.2f}", "issued_on": record.issued_on.isoformat()}


def estimate_shape(record: EstimateRecord) -> dict[str, Any]:
    """A good faith estimate as JSON: amounts as exact text."""
    return {"reference": record.reference, "issued_on": record.issued_on.isoformat(), "basis": record.basis,
            "lines": [{"service": s, "quantity": q, "fee": f"{f:.2f}", "total": f"{f * q:.2f}"}
                      for s, q, f in record.lines],
            "total": f"{record.total:.2f}"}


def verdict_shape(verdict: Verdict) -> dict[str, object]:
    """Whether a trigger may fire now, and every blocker (code, sentence, guard, facts looked at)."""
    return verdict.as_dict()


def blocker_lines(verdict: Verdict) -> list[str]:
    """Each blocker as ``code: sentence``, after a missed automatic step's note."""
    missed = [f"missed: {verdict.missed}"] if verdict.missed else []
    return missed + [f"{b.code}: {b.message}" for b in verdict.blockers]


def audit_report_shape(report: AuditReport, log: LogReport | None = None) -> dict[str, object]:
    """The audit verification as JSON: ok, counts, the first broken row of each failing case, and the log's
    verdict (``log.status``: ok, not_yet_covered or failed) when it was checked."""
    shape = report.as_dict()
    if log is not None:
        shape["ok"] = report.ok and log.status != "failed"
        shape["status"] = "failed" if not shape["ok"] else log.status
        shape["log"] = log.as_dict()
    return shape


def log_problem_text(problem: LogProblem) -> str:
    """One problem of the audit log in a line: where (position, case, event), and what was found."""
    where = []
    if problem.position is not None:
        where.append(f"log position {problem.position}")
    if problem.case_id:
        where.append(f"case {problem.case_id}" + (f" event {problem.case_seq}" if problem.case_seq else ""))
    return (", ".join(where) + ": " if where else "") + problem.reason


def log_summary_lines(report: LogReport) -> list[str]:
    """The audit log's verdict in a few lines: what checkpoints cover, what is not yet covered, the status."""
    against = ("the checkpoint file" if report.trusted else
               "the database's own checkpoints only (pass --checkpoints FILE --public-key KEY to hold it "
               "against what a database insider cannot change)")
    lines = [f"audit log: {report.size} entries, checked against {against}"]
    done = report.complete_up_to
    if done is not None:
        line = f" (file line {done.line})" if done.line is not None else ""
        lines.append(f"complete up to the checkpoint of {done.size} entries signed {done.at.isoformat()}{line}")
    beyond = [c for c in report.checkpoints if c.status == "beyond_log"]
    if beyond:
        lines.append(f"{len(beyond)} newer checkpoint(s) reach past this database's log (up to {beyond[-1].size} "
                     "entries): entries acknowledged after the last complete checkpoint are not here")
    if report.uncovered:
        lines.append(f"not yet covered: {report.uncovered} entries (placed after the newest checkpoint, or not "
                     "placed yet); run kapflow audit checkpoint to cover them")
    if report.problem_count:
        lines.append(f"audit log BROKEN: {report.problem_count} problem(s)")
    elif report.uncovered:
        lines.append("audit log: no problem found in what checkpoints cover; NOT fully covered yet")
    else:
        lines.append("audit log verified: every entry is covered by a checkpoint, ok")
    return lines


def proof_text(report: ProofReport) -> str:
    """A case's proof in a line: how many events proved against which checkpoint, or the first that failed."""
    head = f"kapflow audit: case {report.case_id}, {report.events} events"
    problem = report.problem
    if problem is not None:
        if problem.case_seq is None:
            return f"{head}: FAILED: {problem.reason}"
        where = "" if problem.log_position is None else f" (log position {problem.log_position})"
        return f"{head}: FAILED at event {problem.case_seq}{where}: {problem.reason}"
    return (f"{head}: {report.proved} proven against the checkpoint of {report.checkpoint_size} entries "
            f"signed by key {report.key_id}; {report.uncovered} not yet covered (written after it: prove them "
            "against a later checkpoint)")


def audit_problem_text(problem: AuditProblem) -> str:
    """One failing case in a line, naming its first broken row."""
    row = ""
    if problem.seq is not None:
        row = f" first broken row: seq {problem.seq} (event {problem.case_seq} of the case):"
    return f"case {problem.case_id}:{row} {problem.reason}"


def audit_summary_text(report: AuditReport) -> str:
    """The verdict of an audit verification in a line."""
    counts = f"{report.cases} cases, {report.events} events"
    if report.ok:
        return f"audit verified: {counts}, ok"
    return f"audit BROKEN: {len(report.problems)} case(s) fail verification ({counts} checked)"


# ------------------------------------------------------------------ errors


def exit_code(err: BaseException | None) -> int:
    """The command line's exit code for ``err`` (None: done); the table is in this module's docstring."""
    if err is None:
        return EXIT_DONE
    if isinstance(err, UnknownCase):
        return EXIT_UNKNOWN_CASE
    if isinstance(err, InvalidInput | ConfigError | CheckpointFormatError | SignatureInvalid):
        return EXIT_INPUT
    if isinstance(err, Refused | ConcurrencyConflict):
        return EXIT_REFUSED
    return EXIT_OTHER


def http_status(err: BaseException) -> int:
    """The HTTP status for ``err``; the table is in this module's docstring."""
    for kind, status in _HTTP_STATUS:
        if isinstance(err, kind):
            return status
    return 500


def error_body(err: BaseException) -> dict[str, object]:
    """The JSON body of an error: ``err.as_dict()`` for kapflow's own, else a fixed sentence (no traceback)."""
    if isinstance(err, KapflowError):
        return err.as_dict()
    return dict(_INTERNAL_ERROR)


# ------------------------------------------------------------------ the API's reminders, messages and workflows

_REMINDER_KEYS = ("id", "reminder", "appointment_id", "due_at", "status", "outcome", "attempts", "created_at",
                  "updated_at")
_MESSAGE_KEYS = ("id", "channel", "audience", "subject", "status", "attempts", "created_at", "next_attempt_at",
                 "sent_at", "last_error")


def reminder_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """A reminder's timer as the API shows it: which reminder (and appointment), when due, its status
    (pending, claimed, or how it was settled: ``TimerStatus``) and why; not the worker's lease."""
    return {k: row.get(k) for k in _REMINDER_KEYS}


def message_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """An outbox row as the API shows it: channel, audience, subject, status, attempts and times; never
    the recipient's address, the body or the payload (they hold a client's details and clinical text)."""
    return {k: row.get(k) for k in _MESSAGE_KEYS}


def workflow_shape(workflow: Workflow, *, current: bool) -> dict[str, object]:
    """A loaded workflow version as JSON: its states (initial and final marked), triggers, fact kinds and
    roles, and whether new cases of its name open on it (``current``)."""
    return {
        "name": workflow.name, "version": workflow.version, "current": current,
        "description": workflow.description, "initial": workflow.initial,
        "states": [s.name for s in workflow.states], "final_states": [s.name for s in workflow.states if s.final],
        "triggers": list(workflow.triggers()), "fact_kinds": list(workflow.facts), "roles": sorted(workflow.roles),
        "appointment_kinds": list(workflow.appointments.kinds) if workflow.appointments else [],
    }
