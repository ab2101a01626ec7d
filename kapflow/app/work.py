"""A staff member's work ("My work"): the cases waiting on them, oldest first, each with the reason in words.

One mechanism, fed by what the loaded workflows declare; the core names no role and no pathway:

1. Staff reminders that came due and still stand: a reminder to ``role`` (or an automatic step whose
   ``missed_alert`` is ``role``, missed) whose timer is due (pending or claimed past its time, or settled
   as sent, undeliverable, failed or missed), planned in the case's current visit of its state (its key is
   still in the case's plan), and whose own rule still holds now (``kapflow.app.reminders.not_wanted``, the
   worker's check). The sentence is the reminder's ``work`` text, else its template.
2. Appointments: for a role that may fire the trigger some appointment kind leads to
   (``AppointmentFacts.starts``), the person's own appointments of today in the practice's zone, each with
   its readiness: the blockers of that trigger now, or "ready". For a role that books appointments but
   starts none (the front desk), the next ``CONFIRM_DAYS`` days' appointments of every clinician whose
   trigger is still blocked ("to confirm": kapflow has no confirmation of its own).
3. Failed deliveries: messages dead after their last attempt, on open cases, for the workflow's
   ``delivery_failures`` role.

A role no workflow names for any of these gets nothing. Every read is bounded (``kapflow.store.work``);
a blocker's sentence is shown only to a role that may read every fact kind (it may quote a reading), else
its code in words.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from kapflow.app.command_input import check_page
from kapflow.app.context import AppContext
from kapflow.app.reminders import not_wanted
from kapflow.domain.appointments import Appointment, appointments
from kapflow.domain.billing import money_text
from kapflow.domain.case import CaseRecord
from kapflow.domain.decision import guard_context, not_available_blocker, pending_blockers
from kapflow.domain.errors import Blocker, WorkflowDefinitionError
from kapflow.domain.events import TimerStatus
from kapflow.domain.timers import PlannedTimer, plan_timers
from kapflow.domain.verdict import evaluate
from kapflow.domain.work import (
    APPOINTMENT_TO_CONFIRM,
    APPOINTMENT_TODAY,
    BALANCE_DUE,
    DELIVERY_FAILED,
    VISITS_NOT_BILLED,
    WorkAppointment,
    WorkItem,
    readiness_text,
)
from kapflow.domain.workflow import WORKER_ROLE, Reminder, Workflow
from kapflow.ports import WantedTimer

MAX_ITEMS = 1000
SCAN_BUDGET = 2000
"""Rows one call reads at most per source: the work of a call is bounded whatever the number of cases."""
CONFIRM_DAYS = 3
"""How far ahead the front desk's appointments to confirm go."""

_DUE = (TimerStatus.DONE, TimerStatus.UNDELIVERABLE, TimerStatus.MISSED, TimerStatus.FAILED, "pending", "claimed")
"""Timer statuses of a reminder that came due: sent (or not, for want of an address, a worker or a bug) or
due and waiting for the worker. Not skipped (its rule held then) nor cancelled (it left the plan)."""


def work_for(app: AppContext, role: str, person: str, *, now: datetime, limit: int = 100) -> list[WorkItem]:
    """What waits on ``person`` acting as ``role`` at ``now``: at most ``limit`` items, oldest first."""
    limit, _ = check_page(limit, 0, MAX_ITEMS)
    versions = app.workflows.versions()
    items = [
        *_reminder_items(app, versions, role, now, limit),
        *_appointment_items(app, versions, role, person, now),
        *_delivery_items(app, versions, role, limit),
        *_billing_items(app, versions, role, limit),
    ]
    return sorted(items, key=lambda item: item.order)[:limit]


# ------------------------------------------------------------------ 1. staff reminders due and still standing


def _for_role(r: Reminder, role: str) -> bool:
    return ((r.audience == role or role in r.work_also) and not r.fires) or (
        r.fires is not None and r.missed_alert == role)


def wanted_timers(versions: Iterable[Workflow], role: str) -> list[WantedTimer]:
    """The reminders that make work for ``role``, with the states their case must be in for them to count."""
    states: dict[tuple[str, str], set[str]] = {}
    for wf in versions:
        if role in (wf.client_role, WORKER_ROLE):
            continue  # a work list is staff's: the client hears through its own messages, the worker acts
        open_states = {s.name for s in wf.states if not s.final}
        for s in wf.states:
            for r in s.reminders:
                if _for_role(r, role):
                    states.setdefault((wf.name, r.name), set()).add(s.name)
        for r in wf.reminders:
            if _for_role(r, role):
                where = {s.name for s in wf.states} if r.on_appointment else open_states
                states.setdefault((wf.name, r.name), set()).update(set(r.in_states) & where if r.in_states else where)
    return [WantedTimer(name, reminder, tuple(sorted(found))) for (name, reminder), found in sorted(states.items())]


def _reminder_items(
    app: AppContext, versions: list[Workflow], role: str, now: datetime, limit: int
) -> list[WorkItem]:
    wanted = wanted_timers(versions, role)
    if not wanted:
        return []
    reads = app.store.work()
    plans: dict[str, dict[str, PlannedTimer]] = {}
    items: list[WorkItem] = []
    after: tuple[datetime, int] | None = None
    scanned, batch = 0, max(limit, 50)
    while len(items) < limit and scanned < SCAN_BUDGET:
        rows = reads.due_timers(wanted, _DUE, now, after, min(batch, SCAN_BUDGET - scanned))
        for row in rows:
            scanned += 1
            after = (row.due_at, row.id)
            item = _reminder_item(app, row.case, row.key, row.reminder, row.status, row.due_at, role, now, plans)
            if item is not None:
                items.append(item)
        if len(rows) < batch:
            break
    return items


def _reminder_item(
    app: AppContext, case: CaseRecord, key: str, name: str, status: str, due_at: datetime, role: str,
    now: datetime, plans: dict[str, dict[str, PlannedTimer]],
) -> WorkItem | None:
    wf = _workflow_of(app, case)
    reminder = wf.reminder(case.state, name) if wf is not None else None
    if wf is None or reminder is None or not _for_role(reminder, role):
        return None
    if reminder.fires and status != TimerStatus.MISSED:
        return None  # an automatic step is work only once it was missed
    if case.id not in plans:
        plans[case.id] = plan_timers(wf, case.id, case.state, case.projection, case.opened_at, app.practice)
    planned = plans[case.id].get(key)
    if planned is None:
        return None  # from an earlier visit of the state, or a moment since replaced
    if not_wanted(app.practice, wf, case, case.projection, reminder, planned.deadline, now) is not None:
        return None
    appt = _appointment(wf, case, planned.appointment_id)
    if reminder.fires:
        step = reminder.fires.replace("_", " ")
        sentence = f"The automatic step \u201c{step}\u201d was due and not taken; it waits for you to do it by hand."
    else:
        sentence = reminder.work_sentence
    return WorkItem(case.id, reminder.name, sentence, due_at, _shown_appointment(appt, wf))


# ------------------------------------------------------------------ 2. appointments and their readiness


def starters(wf: Workflow) -> frozenset[str]:
    """The roles that may fire a trigger some appointment kind of ``wf`` leads to (its clinicians)."""
    if wf.appointments is None:
        return frozenset()
    return frozenset(role for _, trigger in wf.appointments.starts
                     for t in wf.transitions_named(trigger) for role in t.roles) - {wf.client_role, WORKER_ROLE}


def schedulers(wf: Workflow) -> frozenset[str]:
    """The staff roles that book ``wf``'s appointments but start none (its front desk)."""
    if wf.appointments is None or wf.appointments.booking not in wf.facts:
        return frozenset()
    return (wf.facts[wf.appointments.booking].roles & wf.staff_roles) - starters(wf)


def _appointment_items(
    app: AppContext, versions: list[Workflow], role: str, person: str, now: datetime
) -> list[WorkItem]:
    reads = app.store.work()
    if any(role in starters(wf) for wf in versions):
        today = app.practice.local_date(now)
        start, end = app.practice.start_of_day(today), app.practice.start_of_day(today + timedelta(days=1))
        held = reads.clinician_appointments(person, start, end)
        code, only_blocked = APPOINTMENT_TODAY, False
    elif any(role in schedulers(wf) for wf in versions):
        held = reads.clinician_appointments(None, now, now + timedelta(days=CONFIRM_DAYS))
        code, only_blocked = APPOINTMENT_TO_CONFIRM, True
    else:
        return []
    items: list[WorkItem] = []
    seen: set[tuple[str, str]] = set()
    for hold in held:
        case = hold.case
        wf = _workflow_of(app, case)
        if wf is None or wf.appointments is None or (case.id, hold.appointment_id) in seen:
            continue
        seen.add((case.id, hold.appointment_id))
        if role not in starters(wf) | schedulers(wf):
            continue
        appt = appointments(case.id, case.projection, wf.appointments).get(hold.appointment_id)
        if appt is None or not appt.active:
            continue
        trigger = _trigger_of(wf, appt.kind)
        blockers = readiness(app, wf, case, trigger, role, now) if trigger else ()
        if only_blocked and not blockers:
            continue
        kind = appt.kind.replace("_", " ")
        when = app.practice.clock_text(appt.starts_at) if code == APPOINTMENT_TODAY else app.practice.time_text(
            appt.starts_at)
        status = readiness_text(blockers) if trigger else "no start to prepare"
        sentence = (f"{kind.capitalize()} at {when}: {status}." if code == APPOINTMENT_TODAY
                    else f"The {kind} on {when} is not ready yet: {status}.")
        items.append(WorkItem(case.id, code, sentence, appt.starts_at, _shown_appointment(appt, wf),
                              blockers))
    return items


def readiness(
    app: AppContext, wf: Workflow, case: CaseRecord, trigger: str, role: str, now: datetime
) -> tuple[tuple[str, str], ...]:
    """What blocks ``trigger`` on the case now, as (code, sentence) ``role`` may read; empty: ready."""
    transition = wf.transition_from(case.state, trigger)
    if transition is None:
        found: tuple[Blocker, ...] = (not_available_blocker(case.state, trigger),
                                      *pending_blockers(case, wf, trigger, now, app.practice))
    else:
        found = evaluate(wf, transition, guard_context(case, wf, trigger, {}, now, app.practice)).blockers
    reads_all = wf.readable(role) >= frozenset(wf.facts)
    return tuple((b.code, b.message if reads_all else b.code.replace("_", " ")) for b in found)


# ------------------------------------------------------------------ 3. failed deliveries


def _delivery_items(app: AppContext, versions: list[Workflow], role: str, limit: int) -> list[WorkItem]:
    if not any(wf.delivery_failures == role for wf in versions):
        return []
    reads = app.store.work()
    items: list[WorkItem] = []
    after: tuple[datetime, int] | None = None
    scanned, batch = 0, max(limit, 50)
    while len(items) < limit and scanned < SCAN_BUDGET:
        rows = reads.dead_messages(after, min(batch, SCAN_BUDGET - scanned))
        for row in rows:
            scanned += 1
            after = (row.at, row.id)
            wf = _workflow_of(app, row.case)
            if wf is None or wf.delivery_failures != role or wf.state(row.case.state).final:
                continue
            who = row.audience.replace("_", " ")
            sentence = (f"A {row.channel} message to the {who} could not be delivered (\u201c{row.subject}\u201d); "
                        "reach them another way.")
            items.append(WorkItem(row.case.id, DELIVERY_FAILED, sentence, row.at))
        if len(rows) < batch:
            break
    return items


# ------------------------------------------------------------------ 4. billing: visits not yet billed, balances


def _billing_items(app: AppContext, versions: list[Workflow], role: str, limit: int) -> list[WorkItem]:
    if not any(wf.billing is not None and wf.billing.clerk == role for wf in versions):
        return []
    reads = app.store.work()
    items: list[WorkItem] = []
    for unbilled in (True, False):
        for row in reads.ledger_backlog(unbilled, limit):
            wf = _workflow_of(app, row.case)
            if wf is None or wf.billing is None or wf.billing.clerk != role:
                continue
            since = app.practice.start_of_day(row.oldest)
            if unbilled:
                visits = f"{row.unbilled} visit{'s' if row.unbilled != 1 else ''}"
                sentence = (f"{visits} billed to insurance on no superbill yet, the oldest on {row.oldest}: "
                            "issue the client's superbill.")
                items.append(WorkItem(row.case.id, VISITS_NOT_BILLED, sentence, since))
            else:
                due = money_text(Decimal(row.balance_cents) / 100)
                sentence = f"Balance due {due}, open since a visit on {row.oldest}: collect it or adjust it."
                items.append(WorkItem(row.case.id, BALANCE_DUE, sentence, since))
    return items


# ------------------------------------------------------------------ shared


def _workflow_of(app: AppContext, case: CaseRecord) -> Workflow | None:
    try:
        return app.workflows.of(case)
    except WorkflowDefinitionError:  # a version this engine does not load: not this engine's work
        return None


def _appointment(wf: Workflow, case: CaseRecord, appointment_id: str | None) -> Appointment | None:
    if wf.appointments is None or appointment_id is None:
        return None
    return appointments(case.id, case.projection, wf.appointments).get(appointment_id)


def _shown_appointment(appt: Appointment | None, wf: Workflow) -> WorkAppointment | None:
    if appt is None:
        return None
    return WorkAppointment(appt.id, appt.kind, appt.starts_at, appt.minutes, appt.clinician, _trigger_of(wf, appt.kind))


def _trigger_of(wf: Workflow, kind: str) -> str | None:
    """The trigger an appointment of ``kind`` leads to in ``wf``, if it names one this version has."""
    trigger = wf.appointments.trigger_of(kind) if wf.appointments is not None else None
    return trigger if trigger is not None and wf.transitions_named(trigger) else None
