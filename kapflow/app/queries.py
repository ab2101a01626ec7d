"""The engine's queries: cases, their facts and history, what could happen next, the audit's verdict.

Reads only: nothing here writes, and each read is the store's own (no transaction of a command).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from kapflow.app.cases import check_actor
from kapflow.app.command_input import check_page, check_state_filter
from kapflow.app.context import AppContext
from kapflow.audit import AuditReport, verify_chain
from kapflow.audit.views import label_problems, view_problems
from kapflow.domain.appointments import Appointment, appointments
from kapflow.domain.case import Actor, AuditEvent, CaseRecord, FactEntry
from kapflow.domain.decision import check_required_text, guard_context, not_available_blocker, pending_blockers
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import Blocker, InvalidInput, NotPermitted, UnknownCase, UnknownTrigger
from kapflow.domain.events import EventKind, TimerStatus
from kapflow.domain.names import search_words
from kapflow.domain.payload import canonical_json, check_identifier, check_payload
from kapflow.domain.stored_views import snapshot_folds
from kapflow.domain.timers import plan_timers
from kapflow.domain.verdict import Verdict, blocker_reads, evaluate, for_reader, verdict_for_reader
from kapflow.domain.workflow import Workflow

MAX_PAGE = 10_000


def case(app: AppContext, case_id: str) -> CaseRecord:
    check_identifier(case_id, "case_id")
    found = app.store.get_case(case_id)
    if found is None:
        raise UnknownCase(case_id)
    return found


def facts(app: AppContext, case_id: str, kind: str | None = None) -> list[FactEntry]:
    entries = case(app, case_id).projection.facts()
    return [f for f in entries if kind is None or f.kind == kind]


def summaries(app: AppContext, case_id: str) -> dict[str, object]:
    """The case's workflow's read-only views of it (e.g. symptom measures: baseline, trajectory, response)."""
    found = case(app, case_id)
    return app.workflows.of(found).summarize(found.projection)


def history(app: AppContext, case_id: str) -> list[AuditEvent]:
    events = list(app.store.history(case_id))
    if not events:
        case(app, case_id)  # UnknownCase: every case has at least the event that opened it
    return events


def cases(app: AppContext, *, state: str | None, limit: int, offset: int) -> list[CaseRecord]:
    state = check_state_filter(state)
    limit, offset = check_page(limit, offset, MAX_PAGE)
    return list(app.store.list_cases(state=state, limit=limit, offset=offset))


@dataclass(frozen=True)
class CasePage:
    """One page of cases and the cursor of the next (None: the last page)."""

    cases: list[CaseRecord]
    next_cursor: str | None


SCAN_BUDGET = 1000
"""Cases one page of a blocker filter evaluates at most: each request's work is bounded, whatever the number
of cases; a page may then hold fewer matches than asked, and its ``next_cursor`` goes on from there."""


OVERDUE_GRACE = timedelta(minutes=15)
"""How late a pending timer may be before the case list calls its reminder overdue: the worker settles a due
timer within a minute or two, so one still pending this long after its time means the worker is behind or down."""


@dataclass(frozen=True)
class _Narrowing:
    """The case list's indexed filters, as the store takes them."""

    starting: tuple[datetime, datetime] | None = None  # an appointment starts in [from, until)
    overdue_before: datetime | None = None  # a timer still pending was due before this, or was given up on
    name_words: tuple[str, ...] = ()  # each begins a word of the client's name (folded)


def case_page(
    app: AppContext, *, state: str | None, workflow: str | None, cursor: str | None, limit: int,
    blocker: str | None = None, appointment_on: date | None = None, overdue: bool = False, name: str | None = None,
) -> CasePage:
    """A page of cases, oldest first, after ``cursor`` (opaque: the previous page's ``next_cursor``); with
    ``blocker``, only those a trigger of whose state that blocker holds back now; with ``appointment_on``, only
    those with an active (booked or attended, not cancelled nor missed) appointment starting on that date in
    the practice's time zone; with ``overdue``, only those with an overdue reminder: a timer still pending
    ``OVERDUE_GRACE`` after its time, or one the worker gave up on (missed, failed); with ``name``, only those
    each word of which begins a word of the client's name, accents and case aside (``kapflow.domain.names``)."""
    state = check_state_filter(state)
    workflow = check_state_filter(workflow) if workflow is not None else None
    limit, _ = check_page(limit, 0, MAX_PAGE)
    after = _decode_cursor(cursor) if cursor is not None else None
    narrowing = _Narrowing(
        _day_span(app, check_day(appointment_on, "appointment_on")) if appointment_on is not None else None,
        app.clock.now() - OVERDUE_GRACE if _check_flag(overdue, "overdue") else None,
        search_words(name) if name is not None else (),
    )
    if blocker is not None:
        return _blocked_page(app, state, workflow, after, limit, check_identifier(blocker, "blocker"), narrowing)
    found = list(app.store.case_page(state=state, workflow=workflow, after=after, limit=limit,
                                     starting=narrowing.starting, overdue_before=narrowing.overdue_before,
                                     name_words=narrowing.name_words))
    last = found[-1] if len(found) == limit else None
    return CasePage(found, _encode_cursor(to_iso(last.opened_at), last.id) if last else None)


def check_name_search(app: AppContext, role: str, workflow: str | None) -> None:
    """``NotPermitted`` unless ``role`` reads the intake (the client's name) of every version of the workflows
    searched: a search by name tells which cases a name belongs to, which is reading it."""
    versions = [v for v in app.workflows.versions() if workflow is None or v.name == workflow]
    barred = [v for v in versions if v.intake_fact not in v.readable(role)]
    if barred:
        readers = set.intersection(*({r for r in v.roles if v.intake_fact in v.readable(r)} for v in versions))
        raise NotPermitted(case_id="", trigger="search_by_name", state="", role=role, allowed=readers)


def check_day(value: object, name: str) -> date:
    """A calendar date (not a datetime, not text)."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidInput(f"{name}: must be a calendar date (YYYY-MM-DD), not {type(value).__name__}", field=name)
    return value


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name}: must be true or false", field=name)
    return value


def _day_span(app: AppContext, day: date) -> tuple[datetime, datetime]:
    """The UTC instants the practice's date ``day`` begins and the next one begins (23 or 25 hours apart on
    the days the clocks change)."""
    try:
        return app.practice.start_of_day(day), app.practice.start_of_day(day + timedelta(days=1))
    except OverflowError:
        raise InvalidInput("appointment_on: a date out of range", field="appointment_on") from None


def _blocked_page(
    app: AppContext, state: str | None, workflow: str | None, after: tuple[str, str] | None, limit: int,
    blocker: str, narrowing: _Narrowing,
) -> CasePage:
    matched: list[CaseRecord] = []
    scanned = 0
    while len(matched) < limit and scanned < SCAN_BUDGET:
        asked = min(200, SCAN_BUDGET - scanned)
        batch = list(app.store.case_page(state=state, workflow=workflow, after=after, limit=asked,
                                         starting=narrowing.starting, overdue_before=narrowing.overdue_before,
                                         name_words=narrowing.name_words))
        for found in batch:
            scanned += 1
            after = (to_iso(found.opened_at), found.id)
            if blocker in blockers_now(app, found):
                matched.append(found)
                if len(matched) == limit:
                    break
        if len(batch) < asked and len(matched) < limit:
            return CasePage(matched, None)  # scanned to the end
    return CasePage(matched, _encode_cursor(*after) if after is not None else None)


def blockers_now(app: AppContext, found: CaseRecord) -> set[str]:
    """The codes of every guard holding back a trigger of the case's state now (what staff would fix)."""
    wf = app.workflows.of(found)
    now = app.clock.now()
    codes: set[str] = set()
    for transition in wf.transitions_from(found.state):
        verdict = evaluate(wf, transition, guard_context(found, wf, transition.trigger, {}, now, app.practice))
        codes.update(b.code for b in verdict.blockers)
    return codes


def _encode_cursor(opened_at: str, case_id: str) -> str:
    return base64.urlsafe_b64encode(canonical_json([opened_at, case_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        opened_at, case_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(opened_at, str) or not isinstance(case_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("cursor: not one this API gave; start again without it", field="cursor") from None
    return opened_at, case_id


def count_cases(app: AppContext, *, state: str | None) -> int:
    return app.store.count_cases(state=check_state_filter(state))


def timers(app: AppContext, case_id: str | None) -> list[dict[str, Any]]:
    """Reminders planned, sent, skipped, missed or cancelled (one case's, or all), soonest first."""
    if case_id is not None:
        check_identifier(case_id, "case_id")
    return [dict(row) for row in app.store.queue().timers(case_id)]


def outbox(app: AppContext, case_id: str | None) -> list[dict[str, Any]]:
    """Messages and calendar changes (one case's, or all) with their delivery status, oldest first."""
    if case_id is not None:
        check_identifier(case_id, "case_id")
    return [dict(row) for row in app.store.queue().outbox(case_id)]


def case_appointments(app: AppContext, case_id: str) -> list[Appointment]:
    """The case's appointments in booking order (none for a workflow that books none)."""
    found = case(app, case_id)
    carriers = app.workflows.of(found).appointments
    if carriers is None:
        return []
    return list(appointments(found.id, found.projection, carriers).values())


def check(
    app: AppContext, case_id: str, trigger: str, *, actor: Actor | None, data: Mapping[str, Any] | None
) -> Verdict:
    """Would ``trigger`` fire now (with ``data``)? Every blocker, including role and state. Writes nothing."""
    found = case(app, case_id)
    wf = app.workflows.of(found)
    if trigger not in wf.triggers():
        raise UnknownTrigger(trigger, wf.triggers())
    if actor is not None:
        check_actor(actor, wf)
    payload = check_payload(data)
    check_required_text(wf, trigger, payload)
    transition = wf.transition_from(found.state, trigger)
    now = app.clock.now()
    if transition is None:
        pending = pending_blockers(found, wf, trigger, now, app.practice)
        return Verdict(trigger, (not_available_blocker(found.state, trigger), *pending))
    verdict = evaluate(wf, transition, guard_context(found, wf, trigger, payload, now, app.practice))
    if actor is not None:  # a guard's sentence only for a role that reads what it looked at
        verdict = verdict_for_reader(verdict, wf, actor.role)
    if actor is not None and actor.role not in transition.roles:
        role = Blocker(
            NotPermitted.code,
            f"a {actor.role.replace('_', ' ')} may not do this; ask: {', '.join(sorted(transition.roles))}",
            "roles",
        )
        return Verdict(trigger, (role, *verdict.blockers))
    return verdict


def available(app: AppContext, case_id: str, *, actor: Actor | None) -> list[Verdict]:
    """A verdict for every trigger that leaves the case's current state; an automatic step that was
    missed (the worker was down) says so on its trigger's verdict: it now waits for a person."""
    found = case(app, case_id)
    wf = app.workflows.of(found)
    missed = missed_steps(app, found)
    return [
        check(app, case_id, t.trigger, actor=actor, data=None)._replace(missed=missed.get(t.trigger))
        for t in wf.transitions_from(found.state)
    ]


def missed_steps(app: AppContext, found: CaseRecord) -> dict[str, str]:
    """Trigger -> why: the automatic steps of the case's state whose timers were missed and are still
    planned (the case has not moved on since)."""
    wf = app.workflows.of(found)
    if not any(r.fires for r in wf.state(found.state).reminders):
        return {}
    planned = plan_timers(wf, found.id, found.state, found.projection, found.opened_at, app.practice)
    missed: dict[str, str] = {}
    for row in app.store.queue().timers(found.id):
        reminder = wf.reminder(found.state, str(row["reminder"]))
        if row["status"] == TimerStatus.MISSED and row["key"] in planned and reminder and reminder.fires:
            due = app.practice.time_text(planned[row["key"]].due_at)
            missed[reminder.fires] = (f"the automatic step was due at {due} and not taken (the worker was not "
                                      f"running); it waits for staff to do it by hand")
    return missed


def verify_audit(app: AppContext, case_id: str | None) -> AuditReport:
    bindings = app.store.client_bindings()
    strays = app.store.entries_past_counts(case_id)
    case_of: Callable[[str], CaseRecord | None] = app.store.get_case
    if case_id is None:
        report = verify_chain(app.store.iter_audit(), app.store.iter_cases(), bindings.all(), strays)
    else:
        found = case(app, case_id)
        report = verify_chain(app.store.iter_audit(case_id), [found], bindings.all(case_id), strays)
        case_of = lambda _id: found  # noqa: E731 (the one case whose snapshots are read: read once)
    report.problems += label_problems(app.store.entries_mislabelled(case_id), {p.case_id for p in report.problems})
    report.problems += view_problems(app.store.case_views(case_id), case_of,
                                     lambda c: snapshot_folds(app.workflows.of(c), c.id),
                                     {p.case_id for p in report.problems})
    return report


# ------------------------------------------------------------------ the minimum necessary, per role


def readable_facts(app: AppContext, case_id: str, role: str, kind: str | None = None) -> list[FactEntry]:
    """The case's facts of the kinds ``role`` may read (``Workflow.read_access``), oldest first."""
    found = case(app, case_id)
    kinds = app.workflows.of(found).readable(role)
    return [f for f in found.projection.facts() if f.kind in kinds and (kind is None or f.kind == kind)]


def readable_history(app: AppContext, case_id: str, role: str) -> list[AuditEvent]:
    """The case's history with the data of each event about a fact kind ``role`` may not read withheld.

    Who acted, when, in which role and the move stay: the fact's fields, and a refusal's blockers (their
    sentences can quote them), do not. ``data`` then says only which kind was withheld.
    """
    wf = app.workflows.of(case(app, case_id))  # UnknownCase first, and the case read once
    events = list(app.store.history(case_id))
    kinds = wf.readable(role)
    return [_refusal_for_reader(ev, wf, kinds) if _event_kind(ev, wf.intake_fact) in kinds | {""}
            else _withheld(ev, wf.intake_fact) for ev in events]


def _refusal_for_reader(ev: AuditEvent, wf: Workflow, readable: frozenset[str]) -> AuditEvent:
    """A refused move's blockers as ``for_reader`` gives them: a guard's sentence may quote a fact."""
    if not ev.blockers or readable >= frozenset(wf.facts):
        return ev
    shown = []
    for b in ev.blockers:
        guard = str(b.get("guard", ""))
        blocker = Blocker(str(b.get("code", "")), str(b.get("message", "")), guard)
        seen = for_reader(blocker, readable, blocker_reads(wf, guard))
        shown.append(b if seen is blocker else seen.as_dict())
    return replace(ev, blockers=tuple(shown))


def _event_kind(ev: AuditEvent, intake: str) -> str:
    """The fact kind an event's data carries ("" for none: a move, a reminder's note)."""
    if ev.kind == EventKind.OPENED:
        return str(ev.data.get("intake_kind") or intake)
    if ev.kind == EventKind.FACT:
        return str(ev.data.get("kind") or "")
    if ev.kind == EventKind.REFUSED and ev.trigger is None:  # a refused fact: its kind, and blockers about it
        return str(ev.data.get("fact_kind") or "")
    return ""


def _withheld(ev: AuditEvent, intake: str) -> AuditEvent:
    return replace(ev, data={"withheld": _event_kind(ev, intake)}, blockers=())
