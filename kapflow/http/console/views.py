"""What the console's pages show, gathered from the engine's queries for one visitor.

Each function returns plain data for a template, already cut to what the visitor's role may read:
a fact kind its workflow does not grant the role is never put in the page (not hidden by CSS, not
sent at all), the client's name only to a role that reads the intake, and a refusal's sentences
only when the role reads what they are about (``Engine.readable_history`` withholds the rest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kapflow.app.billing import superbill_kinds
from kapflow.app.engine import Engine
from kapflow.diagram import pathway_svg
from kapflow.domain.appointments import Appointment
from kapflow.domain.case import AuditEvent, CaseRecord
from kapflow.domain.workflow import Workflow
from kapflow.http.console.forms import FactForm, FormData, fact_form, label_of
from kapflow.http.console.session import Visitor
from kapflow.present import client_name, event_summary

REQUIRED_DATA_GUARD = "requires"
"""The guard that asks for a trigger's data (a reason): the trigger's form asks for it instead."""


@dataclass(frozen=True)
class Action:
    """A trigger of the case's state: whether the visitor may fire it now, and if not, every reason."""

    trigger: str
    label: str
    description: str
    allowed: bool
    blockers: tuple[tuple[str, str], ...]  # (code, sentence)
    needs: tuple[str, ...]  # the data it asks for (a reason)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str
    detail: str = ""
    who: str = ""
    kind: str = "event"  # event | refused | reminder
    sentences: tuple[str, ...] = ()


@dataclass
class CaseView:
    """Everything the case page draws."""

    case: CaseRecord
    workflow: Workflow
    client: str | None
    diagram: str
    actions: list[Action]
    forms: list[FactForm]
    appointments: list[Appointment]
    next_appointment: Appointment | None
    appointment_update: str | None
    timeline: list[TimelineEntry]
    facts: list[Mapping[str, Any]]
    summaries: Mapping[str, object] = field(default_factory=dict)
    progress: str | None = None
    closed: bool = False
    auditable: bool = False  # the visitor's role may open the case's audit page
    bills: str = ""  # "ledger", "superbills" (it reads those too), or "": what its billing page shows the role


def case_view(
    engine: Engine, case_id: str, visitor: Visitor, *, submitted: tuple[str, FormData] | None = None,
    problems: Sequence[tuple[str, str]] = (),
) -> CaseView:
    """The case page of ``case_id`` for ``visitor``; ``submitted``: a fact form sent back with ``problems``."""
    found = engine.case(case_id)
    wf = engine.workflow_of(found)
    role = visitor.role
    readable = wf.readable(role)
    closed = wf.state(found.state).final
    appointments = engine.appointments(case_id) if _reads_appointments(wf, readable) else []
    now = engine.clock.now()
    history = engine.readable_history(case_id, role)  # read once: the diagram's visited states and the timeline
    upcoming = sorted((a for a in appointments if a.active and a.starts_at >= now), key=lambda a: a.starts_at)
    return CaseView(
        case=found, workflow=wf,
        client=client_name(found, wf) if wf.intake_fact in readable else None,
        diagram=pathway_svg(wf, current=found.state, visited={ev.to_state for ev in history if ev.to_state}),
        actions=_actions(engine, case_id, visitor, wf),
        forms=_forms(wf, role, closed, submitted, problems),
        appointments=appointments,
        next_appointment=upcoming[0] if upcoming else None,
        appointment_update=wf.appointments.update if wf.appointments and wf.appointments.update in _recordable(
            wf, role) else None,
        timeline=_timeline(engine, case_id, history, readable),
        facts=[{"kind": f.kind, "at": f.at, "by": f.by, "data": dict(f.data)}
               for f in engine.readable_facts(case_id, role)],
        closed=closed,
        auditable=readable >= frozenset(wf.facts),
        bills=_bills(wf, readable) if role != wf.client_role else "",
        progress=_progress(engine, case_id) if readable >= frozenset(wf.facts) else None,
    )


def _bills(wf: Workflow, readable: frozenset[str]) -> str:
    """What the case's billing page shows a role reading ``readable``: nothing if the workflow bills nothing."""
    billing = wf.billing
    if billing is None or not set(billing.facts.ledger) <= readable:
        return ""
    if billing.records is not None and superbill_kinds(wf) <= readable:
        return "superbills"
    return "ledger"


def _progress(engine: Engine, case_id: str) -> str | None:
    """The workflow's summaries that say themselves in words (``text``: "3 of 6 KAP sessions"). A summary may
    use any fact kind, so only a role that reads every kind is shown them."""
    texts = [str(s["text"]) for s in engine.summaries(case_id).values()
             if isinstance(s, Mapping) and s.get("text")]
    return " · ".join(texts) or None


def reads_everything(engine: Engine, role: str) -> bool:
    """Whether ``role`` reads every fact kind of some loaded workflow (the audit pages' readers)."""
    return any(wf.readable(role) == frozenset(wf.facts) for wf in engine.workflows.versions())


def _reads_appointments(wf: Workflow, readable: frozenset[str]) -> bool:
    return wf.appointments is not None and {wf.appointments.booking, wf.appointments.update} <= readable


def _actions(engine: Engine, case_id: str, visitor: Visitor, wf: Workflow) -> list[Action]:
    actions = []
    for verdict in engine.available(case_id, actor=visitor.actor):
        transition = next(t for t in wf.transitions if t.trigger == verdict.trigger)
        blockers = tuple((b.code, b.message) for b in verdict.blockers if b.guard != REQUIRED_DATA_GUARD)
        actions.append(Action(verdict.trigger, label_of(verdict.trigger), transition.description,
                              not blockers, blockers, transition.requires))
    return actions


def _recordable(wf: Workflow, role: str) -> set[str]:
    return {kind for kind, spec in wf.facts.items() if role in spec.roles}


def _forms(
    wf: Workflow, role: str, closed: bool, submitted: tuple[str, FormData] | None,
    problems: Sequence[tuple[str, str]],
) -> list[FactForm]:
    """A form for each fact kind ``role`` may record now (the intake and appointment changes have their own)."""
    skip = {wf.intake_fact, *((wf.appointments.update,) if wf.appointments else ())}
    forms = []
    for kind in sorted(_recordable(wf, role) - skip):
        fact_kind = wf.facts[kind]
        if closed and not fact_kind.on_closed_case:
            continue
        if submitted is not None and submitted[0] == kind:
            forms.append(fact_form(fact_kind.spec, submitted=submitted[1], problems=problems))
        else:
            forms.append(fact_form(fact_kind.spec))
    return forms


def _timeline(
    engine: Engine, case_id: str, history: Sequence[AuditEvent], readable: frozenset[str],
) -> list[TimelineEntry]:
    """The case's story, newest first: transitions, facts, refusals with their sentences, and reminders."""
    entries = []
    for ev in history:
        summary = event_summary(ev)
        refused = ev.kind == "refused"
        sentences = tuple(str(b.get("message", "")) for b in ev.blockers if b.get("message"))
        what = f"refused: {summary.what}" if refused else summary.what
        entries.append(TimelineEntry(ev.at, label_of(what) if what else label_of(ev.kind), summary.move(),
                                     f"{ev.actor} ({ev.role})", "refused" if refused else "event", sentences))
    if readable:  # a role that reads nothing of the case reads none of its reminders either
        for timer in engine.timers(case_id):
            status = str(timer["status"])
            entries.append(TimelineEntry(datetime.fromisoformat(str(timer["due_at"])), label_of(str(timer["reminder"])),
                                         _reminder_status(status, timer.get("outcome")), kind="reminder"))
    return sorted(entries, key=lambda e: e.at, reverse=True)


def _reminder_status(status: str, outcome: object) -> str:
    words = {"pending": "planned", "claimed": "being sent", "done": "sent"}.get(status, status)
    return f"{words}: {outcome}" if outcome and str(outcome) != status else words
