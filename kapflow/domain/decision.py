"""Whether a command may happen to a case now: the decision the engine makes inside its transaction.

Pure: the case as read, its workflow, who asks, the command's data, and the
clock's now. A refusal names every reason (every guard runs); ``None`` means
the command may go ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kapflow.domain.appointments import STANDARD
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.case import CaseRecord
from kapflow.domain.errors import (
    Blocker,
    InvalidInput,
    NotPermitted,
    Refused,
    TransitionBlocked,
    TransitionNotAvailable,
)
from kapflow.domain.payload import JSONObject
from kapflow.domain.verdict import evaluate, named_blocker
from kapflow.domain.workflow import GuardContext, Transition, Workflow


def guard_context(
    case: CaseRecord, wf: Workflow, trigger: str, data: Mapping[str, Any], now: datetime, cal: PracticeCalendar
) -> GuardContext:
    """What the guards of ``trigger`` (or of recording a fact) see of ``case`` at ``now``."""
    return GuardContext(case.id, case.state, trigger, case.projection, now, wf.thresholds, data, cal,
                        wf.appointments or STANDARD)


def fire_refusal(
    case: CaseRecord, wf: Workflow, transition: Transition | None, trigger: str, role: str,
    payload: JSONObject, now: datetime, cal: PracticeCalendar,
) -> Refused | None:
    """Why ``role`` may not fire ``trigger`` (whose transition from the case's state is ``transition``)."""
    if transition is None:
        available = [t.trigger for t in wf.transitions_from(case.state)]
        return TransitionNotAvailable(case_id=case.id, trigger=trigger, state=case.state, available=available,
                                      blockers=pending_blockers(case, wf, trigger, now, cal))
    if role not in transition.roles:
        return NotPermitted(case_id=case.id, trigger=trigger, state=case.state, role=role, allowed=transition.roles)
    verdict = evaluate(wf, transition, guard_context(case, wf, trigger, payload, now, cal))
    if not verdict.allowed:
        return TransitionBlocked(case_id=case.id, trigger=trigger, state=case.state, blockers=verdict.blockers)
    return None


def fact_refusal(
    case: CaseRecord, wf: Workflow, kind: str, role: str, parsed: JSONObject, now: datetime, cal: PracticeCalendar
) -> Refused | None:
    """Why ``role`` may not record the fact ``parsed`` of ``kind`` on the case now."""
    fact_kind = wf.facts[kind]
    if role not in fact_kind.roles:
        return NotPermitted(case_id=case.id, trigger="", state=case.state, role=role, allowed=fact_kind.roles,
                            fact_kind=kind)
    blockers: list[Blocker] = []
    if not fact_kind.on_closed_case and wf.state(case.state).final:
        blockers.append(case_closed_blocker(case.state, kind))
    ctx = guard_context(case, wf, "", parsed, now, cal)
    blockers += [named_blocker(b, g) for g in fact_kind.guards if (b := wf.guards[g](ctx)) is not None]
    if blockers:
        return TransitionBlocked(case_id=case.id, trigger="", state=case.state, blockers=blockers, fact_kind=kind)
    return None


def check_required_text(wf: Workflow, trigger: str, payload: Mapping[str, Any]) -> None:
    """A key ``trigger`` requires, when given, is text: anything else is bad input (``InvalidInput``).

    Missing or blank text is a refusal instead (the ``*_required`` blocker, audited): the actor
    forgot it. ``False``, ``0`` or a list in its place is a caller's mistake, so nothing is written.
    """
    for transition in wf.transitions_named(trigger):
        for key in transition.requires:
            value = payload.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(
                    f"{key} must be text for {trigger}, not {type(value).__name__}", field=key
                )


def pending_blockers(
    case: CaseRecord, wf: Workflow, trigger: str, now: datetime, cal: PracticeCalendar
) -> tuple[Blocker, ...]:
    """What the case waits for in its state (its ``pending`` guards that block), for a trigger not available."""
    pending = wf.state(case.state).pending
    if not pending:
        return ()
    ctx = guard_context(case, wf, trigger, {}, now, cal)
    return tuple(named_blocker(b, g) for g in pending if (b := wf.guards[g](ctx)) is not None)


def case_closed_blocker(state: str, kind: str) -> Blocker:
    """The blocker of a fact the workflow does not take once the case is closed."""
    return Blocker(
        "case_closed",
        f"the case is closed ({state.replace('_', ' ')}): no {kind.replace('_', ' ')} can be recorded on it",
        "on_closed_case",
        (("state", state),),
    )


def not_available_blocker(state: str, trigger: str) -> Blocker:
    """The one blocker of a trigger that does not leave the case's state."""
    return Blocker(
        "not_available_from_state",
        f"{trigger.replace('_', ' ')} cannot happen while the case is {state.replace('_', ' ')}",
        "state",
        (("state", state),),
    )
