"""Workflow definitions as typed data, validated when built.

A ``Workflow`` is states, transitions, roles, named guards, the kinds of fact
it records, reminders per state and numeric thresholds, under a name and a
version. Building one runs ``validate``; every problem found is reported at
once in a single ``WorkflowDefinitionError``. An invalid workflow cannot exist.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from kapflow.domain.appointments import STANDARD, AppointmentFacts
from kapflow.domain.case import PREVIOUS_STATE, CaseFacts
from kapflow.domain.errors import Blocker, WorkflowDefinitionError
from kapflow.domain.facts import FactSpec

Threshold = int | float

WORKER_ROLE = "system"
"""The role the worker acts in: it fires the triggers reminders name, and writes their notes."""


class GuardContext(NamedTuple):
    """All a guard may look at: the case's projection, the clock's now and the thresholds.

    A named tuple rather than a frozen dataclass: immutable all the same, and built for every
    command and every guard check at a quarter of the cost.
    """

    case_id: str
    state: str
    trigger: str
    facts: CaseFacts
    now: datetime
    thresholds: Mapping[str, Threshold]
    data: Mapping[str, Any] = MappingProxyType({})
    tz: tzinfo = UTC
    carriers: AppointmentFacts = STANDARD  # the fact kinds that carry the workflow's appointments

    @property
    def today(self) -> date:
        """The practice's calendar date now (prescriptions expire and birthdays fall on local dates)."""
        return self.now.astimezone(self.tz).date()


class Guard(Protocol):
    """A pure check. Returns a ``Blocker`` when the rule does not hold, else None."""

    @property
    def thresholds(self) -> tuple[str, ...]:
        """Names of the workflow thresholds this guard reads."""
        ...

    def __call__(self, ctx: GuardContext) -> Blocker | None: ...


@dataclass(frozen=True)
class Reminder:
    """A message (or a trigger) due while a case stays in a state.

    ``after`` counts from entering the state (in business days when
    ``business_days``); ``before_appointment`` counts back from the start of
    the next appointment of ``appointment_kind``. ``fires`` names a trigger to
    fire instead of sending a message (its ``channel`` is then empty).
    ``while_blocked_by`` names a guard: the reminder goes out only while that
    guard still blocks (a fee reminder stops once the fee is paid). A reminder
    found overdue by more than ``grace`` (the worker was down) is recorded as
    missed, not sent late. Subjects stay free of clinical detail.
    """

    name: str
    audience: str
    channel: str
    template: str
    after: timedelta | None = None
    business_days: bool = False
    before_appointment: timedelta | None = None
    appointment_kind: str | None = None
    fires: str | None = None
    while_blocked_by: str | None = None
    subject: str = "A message from your care team"
    grace: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class State:
    """A state of the pathway. ``pending`` names guards that say what the case waits for here.

    A trigger that does not leave this state is refused as not available; the blockers of the
    ``pending`` guards then say what is missing, in words a client can act on ("the integration
    psychotherapy of the session on ... is not completed"), not only that the state forbids it.
    """

    name: str
    final: bool = False
    description: str = ""
    reminders: tuple[Reminder, ...] = ()
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transition:
    """A trigger that moves a case from any of ``sources`` to ``dest``.

    ``dest`` may be ``PREVIOUS_STATE``: back to where the case was before it
    entered the source (a shallow history, as for resuming a case on hold).
    ``requires`` names data keys the actor must supply as non-empty text (a reason, a note).
    ``cancels`` names appointment kinds: entering ``dest`` by this transition cancels the case's
    active appointments of those kinds, in the move's transaction (releasing an unpaid evaluation
    frees its slot: the appointment, its reminders and its calendar event are cancelled with it).
    Entering a final state cancels every appointment still ahead, whatever the transition says: a
    closed case keeps nothing on the calendar (past appointments are left as they were recorded).
    """

    trigger: str
    sources: tuple[str, ...]
    dest: str
    roles: frozenset[str]
    guards: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    description: str = ""
    cancels: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactKind:
    """A kind of fact the workflow records, the roles that may record it, and its guards.

    Guards of a fact kind see the parsed fact as ``GuardContext.data`` (so a
    KAP session can be booked only once its prerequisites hold). ``on_closed_case``:
    whether it may still be recorded once the case is in a final state (a payment of an
    outstanding balance may; a prescription, vitals or consent may not).
    """

    spec: FactSpec
    roles: frozenset[str]
    guards: tuple[str, ...] = ()
    on_closed_case: bool = False


@dataclass(frozen=True)
class ClientFields:
    """Which fields of a workflow's intake fact say who the client is and how to reach them.

    ``name``: the fields that name the client to staff, shown joined by spaces.
    ``in_messages``: the only fields a reminder's template may use (``{first_name}``);
    never a diagnosis, a score or a note. ``addresses``: channel -> the field holding
    the client's address on it (``{"email": "email", "sms": "phone"}``). ``preference``:
    the field holding the channel the client prefers (a reminder to the client goes
    there when the client gave an address for it).
    """

    name: tuple[str, ...] = ()
    in_messages: tuple[str, ...] = ()
    addresses: Mapping[str, str] = field(default_factory=dict)
    preference: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", MappingProxyType(dict(self.addresses)))

    def fields(self) -> set[str]:
        preference = {self.preference} if self.preference else set()
        return {*self.name, *self.in_messages, *self.addresses.values(), *preference}


@dataclass(frozen=True)
class Workflow:
    """A pathway as data: what the engine knows of a workflow is declared here, nothing is assumed.

    ``intake_fact`` is the fact a case is opened from; ``client`` names the fields of it that
    say who the client is; ``appointments`` the fact kinds that book and change appointments
    (None: this workflow books none).
    """

    name: str
    version: str
    initial: str
    states: tuple[State, ...]
    transitions: tuple[Transition, ...]
    roles: frozenset[str]
    guards: Mapping[str, Guard]
    facts: Mapping[str, FactKind]
    thresholds: Mapping[str, Threshold]
    intake_fact: str
    client: ClientFields = ClientFields()
    appointments: AppointmentFacts | None = None
    description: str = ""
    # The roles that act for the practice in a case's administration, such as moving it to another
    # version of the workflow (not the client, not the worker's own role, not an auditor).
    staff_roles: frozenset[str] = frozenset()
    _states: Mapping[str, State] = field(init=False, repr=False, compare=False)
    _by_source: Mapping[tuple[str, str], Transition] = field(init=False, repr=False, compare=False)
    _checks: Mapping[int, tuple[Transition, tuple[tuple[str, Guard], ...]]] = field(
        init=False, repr=False, compare=False
    )
    _by_trigger: Mapping[str, tuple[Transition, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Own read-only copies: editing the caller's dicts must not change a validated version.
        for name in ("guards", "facts", "thresholds"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        problems = validate(self)
        if problems:
            raise WorkflowDefinitionError(self.name or "<unnamed>", problems)
        object.__setattr__(self, "_states", {s.name: s for s in self.states})
        object.__setattr__(
            self, "_by_source", {(src, t.trigger): t for t in self.transitions for src in t.sources}
        )
        # Each transition's guards resolved once, not looked up by name on every check.
        checks = {id(t): (t, tuple((g, self.guards[g]) for g in t.guards)) for t in self.transitions}
        object.__setattr__(self, "_checks", checks)
        by_trigger: dict[str, list[Transition]] = {}
        for t in self.transitions:
            by_trigger.setdefault(t.trigger, []).append(t)
        object.__setattr__(self, "_by_trigger", {k: tuple(v) for k, v in by_trigger.items()})

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    def state(self, name: str) -> State:
        return self._states[name]

    def triggers(self) -> tuple[str, ...]:
        return tuple(self._by_trigger)

    def transitions_named(self, trigger: str) -> tuple[Transition, ...]:
        """Every transition of ``trigger`` (one per group of source states)."""
        return self._by_trigger.get(trigger, ())

    def transition_from(self, state: str, trigger: str) -> Transition | None:
        return self._by_source.get((state, trigger))

    def checks(self, transition: Transition) -> tuple[tuple[str, Guard], ...]:
        """The guards of ``transition`` by name, in order."""
        found = self._checks.get(id(transition))
        if found is None or found[0] is not transition:  # a transition from elsewhere: look its guards up
            return tuple((g, self.guards[g]) for g in transition.guards)
        return found[1]

    def transitions_from(self, state: str) -> list[Transition]:
        return [t for t in self.transitions if state in t.sources]

    def with_thresholds(self, version: str, **changes: Threshold) -> Workflow:
        """A new version with some thresholds changed (the practice's own policy)."""
        unknown = sorted(set(changes) - set(self.thresholds))
        if unknown:
            raise WorkflowDefinitionError(
                self.name, [f"unknown threshold {u!r}" for u in unknown]
            )
        return replace(
            self, version=version, thresholds={**self.thresholds, **changes},
            guards=dict(self.guards), facts=dict(self.facts),
        )


def validate(wf: Workflow) -> list[str]:
    """Every problem with a workflow definition, as sentences; empty when it is sound."""
    problems: list[str] = []
    if not wf.name:
        problems.append("the workflow has no name")
    if not wf.version:
        problems.append("the workflow has no version")
    problems += [f"staff role {r!r} is not one of the workflow's roles" for r in sorted(wf.staff_roles - wf.roles)]
    names = [s.name for s in wf.states]
    problems += [f"state {n!r} is defined twice" for n in sorted({n for n in names if names.count(n) > 1})]
    known = set(names)
    finals = {s.name for s in wf.states if s.final}
    if wf.initial not in known:
        problems.append(f"initial state {wf.initial!r} is not a defined state")
    problems += _check_transitions(wf, known, finals)
    problems += _check_guards(wf)
    problems += _check_guards_named(wf)
    problems += _check_reminders(wf, known)
    problems += _check_facts(wf)
    if wf.initial in known:
        problems += _check_paths(wf, known, finals)
    return problems


def _check_transitions(wf: Workflow, known: set[str], finals: set[str]) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for t in wf.transitions:
        if not t.trigger.isidentifier():
            problems.append(f"trigger {t.trigger!r} is not a valid name")
        for src in t.sources:
            if src not in known:
                problems.append(f"transition {t.trigger!r} leaves unknown state {src!r}")
            elif src in finals:
                problems.append(f"transition {t.trigger!r} leaves final state {src!r}")
            seen[(src, t.trigger)] = seen.get((src, t.trigger), 0) + 1
        if not t.sources:
            problems.append(f"transition {t.trigger!r} has no source state")
        if t.dest != PREVIOUS_STATE and t.dest not in known:
            problems.append(f"transition {t.trigger!r} enters unknown state {t.dest!r}")
        if not t.roles:
            problems.append(f"transition {t.trigger!r} names no role that may fire it")
        for role in sorted(t.roles - wf.roles):
            problems.append(f"transition {t.trigger!r} names unknown role {role!r}")
        for guard in t.guards:
            if guard not in wf.guards:
                problems.append(f"transition {t.trigger!r} names unknown guard {guard!r}")
        kinds = wf.appointments.kinds if wf.appointments is not None else ()
        for kind in t.cancels:
            if kind not in kinds:
                problems.append(f"transition {t.trigger!r} cancels unknown appointment kind {kind!r}")
    for (src, trigger), count in sorted(seen.items()):
        if count > 1:
            problems.append(f"trigger {trigger!r} is defined {count} times from state {src!r}")
    return problems


def _check_guards(wf: Workflow) -> list[str]:
    problems: list[str] = []
    for name, guard in sorted(wf.guards.items()):
        for threshold in getattr(guard, "thresholds", ()):
            if threshold not in wf.thresholds:
                problems.append(f"guard {name!r} reads unknown threshold {threshold!r}")
    return problems


def _check_guards_named(wf: Workflow) -> list[str]:
    """Every guard named somewhere is registered, and every registered guard is named somewhere.

    A guard nothing names (no transition, fact kind, reminder or state) is never evaluated: a
    rule the practice believes enforced that no path of the workflow can reach.
    """
    problems = [
        f"state {s.name!r} names unknown pending guard {g!r}"
        for s in wf.states for g in s.pending if g not in wf.guards
    ]
    named = {g for t in wf.transitions for g in t.guards}
    named |= {g for fk in wf.facts.values() for g in fk.guards}
    named |= {r.while_blocked_by for s in wf.states for r in s.reminders if r.while_blocked_by}
    named |= {g for s in wf.states for g in s.pending}
    problems += [
        f"guard {g!r} is named by no transition, fact kind, reminder or state: it can never be evaluated"
        for g in sorted(set(wf.guards) - named)
    ]
    return problems


def _check_reminders(wf: Workflow, known: set[str]) -> list[str]:
    problems: list[str] = []
    triggers = {(src, t.trigger) for t in wf.transitions for src in t.sources}
    for s in wf.states:
        for r in s.reminders:
            where = f"reminder {r.name!r} of state {s.name!r}"
            if r.audience not in wf.roles:
                problems.append(f"{where} is for unknown role {r.audience!r}")
            if not r.channel and not r.fires:
                problems.append(f"{where} names neither a channel to send on nor a trigger to fire")
            if (r.after is None) == (r.before_appointment is None):
                problems.append(f"{where} needs exactly one of 'after' or 'before_appointment'")
            if r.before_appointment is not None and not r.appointment_kind:
                problems.append(f"{where} counts back from an appointment but names no appointment kind")
            if r.appointment_kind and wf.appointments is None:
                problems.append(f"{where} speaks of an appointment, but the workflow books none")
            elif r.appointment_kind and wf.appointments and r.appointment_kind not in wf.appointments.kinds:
                problems.append(f"{where} names unknown appointment kind {r.appointment_kind!r}")
            if r.fires and (s.name, r.fires) not in triggers:
                problems.append(f"{where} fires {r.fires!r}, which does not leave {s.name!r}")
            elif r.fires and not any(
                WORKER_ROLE in t.roles for t in wf.transitions if t.trigger == r.fires and s.name in t.sources
            ):
                problems.append(f"{where} fires {r.fires!r}, which the worker's role {WORKER_ROLE!r} may not fire")
            if r.while_blocked_by and r.while_blocked_by not in wf.guards:
                problems.append(f"{where} names unknown guard {r.while_blocked_by!r}")
    return problems


def _check_facts(wf: Workflow) -> list[str]:
    problems: list[str] = []
    for kind, fk in sorted(wf.facts.items()):
        if kind != fk.spec.kind:
            problems.append(f"fact kind {kind!r} is registered with the spec of {fk.spec.kind!r}")
        for role in sorted(fk.roles - wf.roles):
            problems.append(f"fact kind {kind!r} names unknown role {role!r}")
        for guard in fk.guards:
            if guard not in wf.guards:
                problems.append(f"fact kind {kind!r} names unknown guard {guard!r}")
    if wf.intake_fact not in wf.facts:
        problems.append(f"intake fact {wf.intake_fact!r} is not a recorded fact kind")
    else:
        fields = {f.name for f in wf.facts[wf.intake_fact].spec.fields}
        problems += [f"client field {f!r} is not a field of the intake fact {wf.intake_fact!r}"
                     for f in sorted(wf.client.fields() - fields)]
    if wf.appointments is not None:
        for carrier in (wf.appointments.booking, wf.appointments.update):
            if carrier not in wf.facts:
                problems.append(f"appointment fact {carrier!r} is not a recorded fact kind")
    return problems


def _successors(wf: Workflow, state: str) -> set[str]:
    """States reachable in one move, resolving PREVIOUS_STATE to the states that enter ``state``."""
    out: set[str] = set()
    for t in wf.transitions:
        if state not in t.sources:
            continue
        if t.dest == PREVIOUS_STATE:
            out |= _entered_from(wf, state)
        else:
            out.add(t.dest)
    return out


def _entered_from(wf: Workflow, state: str) -> set[str]:
    return {src for u in wf.transitions if u.dest == state for src in u.sources}


def _reach(start: Iterable[str], step: Any) -> set[str]:
    seen = set(start)
    queue = deque(seen)
    while queue:
        for nxt in step(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _check_paths(wf: Workflow, known: set[str], finals: set[str]) -> list[str]:
    problems: list[str] = []
    succ = {s: _successors(wf, s) & known for s in known}
    reachable = _reach([wf.initial], lambda s: succ[s])
    for s in wf.states:
        if s.name not in reachable:
            kind = "final state" if s.final else "state"
            problems.append(f"{kind} {s.name!r} is unreachable: no path from {wf.initial!r} reaches it")
    for s in wf.states:
        if not s.final and not succ.get(s.name):
            problems.append(f"non-final state {s.name!r} has no way out")
    if not finals:
        problems.append("the workflow has no final state")
    pred: dict[str, set[str]] = {s: set() for s in known}
    for name, nexts in succ.items():
        for n in nexts:
            pred[n].add(name)
    can_finish = _reach(finals, lambda name: pred[name])
    for s in wf.states:
        if s.name in reachable and succ.get(s.name) and s.name not in can_finish:
            problems.append(f"state {s.name!r} can never reach a final state")
    returns = [t for t in wf.transitions if t.dest == PREVIOUS_STATE]
    return_targets = {src for t in returns for left in t.sources for src in _entered_from(wf, left)}
    for t in returns:
        for src in sorted(set(t.sources) & return_targets):
            problems.append(
                f"transition {t.trigger!r} returns from {src!r}, which is itself entered by a return; "
                "a return must go back to a state entered by an ordinary transition"
            )
    return problems
