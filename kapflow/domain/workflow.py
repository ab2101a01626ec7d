"""Workflow definitions as typed data, validated when built.

A ``Workflow`` is states, transitions, roles, named guards, the kinds of fact
it records, reminders per state and numeric thresholds, under a name and a
version. Building one runs ``validate``; every problem found is reported at
once in a single ``WorkflowDefinitionError``. An invalid workflow cannot exist.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from kapflow.domain.appointments import STANDARD, AppointmentFacts
from kapflow.domain.billing import Billing
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
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
    calendar: PracticeCalendar = UTC_CALENDAR  # the practice's zone, closed days and clock style
    carriers: AppointmentFacts = STANDARD  # the fact kinds that carry the workflow's appointments

    @property
    def tz(self) -> tzinfo:
        """The practice's time zone."""
        return self.calendar.zone

    @property
    def today(self) -> date:
        """The practice's calendar date now (prescriptions expire and birthdays fall on local dates)."""
        return self.calendar.local_date(self.now)


class Guard(Protocol):
    """A pure check. Returns a ``Blocker`` when the rule does not hold, else None."""

    @property
    def thresholds(self) -> tuple[str, ...]:
        """Names of the workflow thresholds this guard reads."""
        ...

    def __call__(self, ctx: GuardContext) -> Blocker | None: ...


def guard_reads(guard: object) -> frozenset[str] | None:
    """The fact kinds a guard's sentence may quote (its optional ``reads``); None when it does not say.

    A role that may not read all of them gets the guard's blocker as its code in words (``for_reader``),
    since a sentence may quote what the guard looked at: a blood pressure, a screening's answer. A guard
    that reads only moves (was the intention-setting session completed?) declares ``frozenset()``.
    """
    reads = getattr(guard, "reads", None)
    return frozenset(reads) if reads is not None else None


APPOINTMENT_EVENTS = ("booked", "moved", "cancelled")
"""What ``Reminder.on_appointment`` may name: a booking, a move to another time, a cancellation."""

Moment = Callable[[CaseFacts, PracticeCalendar], datetime | None]
"""A moment a workflow counts reminders from (the last KAP session, a prescription's expiry): a pure
function of the case's facts, None while there is none. One that says what it reads (``moment_reading``) is
worked out again only when a command changed what it reads."""


@dataclass(frozen=True, eq=False)
class ReadingMoment:
    """A ``Moment`` that declares what it reads: the facts of the kinds ``facts`` and the moves by the triggers
    ``moves``, and nothing else of the case (``moment_reading``).

    A case's plan is worked out after every command, and most commands change nothing a moment reads (a move
    to another state, vitals recorded): the plan keeps such a moment, and the timers counted from it, with the
    projection (``CaseFacts.derived``). A moment that reads more than it declares would keep a stale time: the
    tests of the shipped workflows record what each one reads and compare (``tests/unit/test_moment_reads.py``).
    """

    compute: Moment
    facts: frozenset[str]
    moves: frozenset[str] = frozenset()

    def __call__(self, facts: CaseFacts, cal: PracticeCalendar) -> datetime | None:
        return self.compute(facts, cal)


def moment_reading(*, facts: Iterable[str] = (), moves: Iterable[str] = ()) -> Callable[[Moment], ReadingMoment]:
    """Declare what a moment reads: ``@moment_reading(facts=("prescription",))`` over its function."""
    return lambda compute: ReadingMoment(compute, frozenset(facts), frozenset(moves))


@dataclass(frozen=True)
class Reminder:
    """A message (or a trigger) due at a moment the case's facts give.

    When it is due, exactly one of:

    - ``after`` entering the state it is declared on (in business days when ``business_days``);
    - ``after`` the workflow's moment named ``since`` (negative: before it), whatever the state;
    - ``before_appointment``: counted back from the start of each active appointment of
      ``appointment_kind`` (None: of every kind);
    - ``on_appointment``: at once when an appointment of ``appointment_kind`` is booked, moved or
      cancelled (``APPOINTMENT_EVENTS``): the client hears of every change.

    ``after`` delays of whole days count the practice's calendar days at the same wall-clock time
    (7 days after Monday 10:00 is Monday 10:00, DST or not); hours and minutes are elapsed time, and
    so is ``before_appointment`` (24 hours before an appointment is 24 hours). ``fires`` names a trigger to fire instead
    of sending a message (its ``channel`` is then empty); when such an automatic step is missed
    (overdue beyond ``grace``), ``missed_alert`` names the role alerted. ``while_blocked_by`` names a
    guard: the reminder goes out only while that guard still blocks (a fee reminder stops once the
    fee is paid); ``while_holds`` one that must hold; ``in_states`` the states it is still wanted in
    (empty: any). An ``urgent`` one goes on the practice's channel for urgent alerts when the
    audience has an address there. A reminder found overdue by more than ``grace`` (the worker was down) is recorded
    as missed, not sent late; one about an appointment is never sent once it has started. Subjects
    stay free of clinical detail.
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
    since: str | None = None
    on_appointment: str | None = None
    while_holds: str | None = None
    in_states: tuple[str, ...] = ()
    missed_alert: str | None = None
    urgent: bool = False  # goes on the practice's channel for urgent alerts (settings: urgent_channel)
    # A short sentence for the staff member's work list ("My work") while the reminder is due and still
    # holds: set it when ``template`` is not fit to show there (it speaks to the client, or has placeholders).
    work: str | None = None
    # Other roles whose work list shows it too, without a message to them (billing, for a fee unpaid).
    work_also: tuple[str, ...] = ()

    @property
    def work_sentence(self) -> str:
        """What the work list says of this reminder: ``work``, else its template (a staff alert's own words)."""
        return self.work or self.template

    @property
    def about_appointment(self) -> bool:
        return self.before_appointment is not None or self.on_appointment is not None


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
    # Reminders that follow the case whatever its state: those of its appointments (a reminder belongs
    # to the appointment, not to the state the case happens to be in at its moment), notices of their
    # changes, and prompts counted from a moment. A closed case keeps only the notices.
    reminders: tuple[Reminder, ...] = ()
    moments: Mapping[str, Moment] = field(default_factory=dict)
    # Read-only views the workflow computes from a case's facts (e.g. symptom measures), by name: each
    # returns a JSON-able mapping, shown with the case (``kapflow case show``); never used by a guard.
    summaries: Mapping[str, Callable[[CaseFacts], Mapping[str, object]]] = field(default_factory=dict)
    # The minimum necessary: the fact kinds each role may read through the API and the console
    # (``ALL_FACTS`` for every kind). A role not named reads none; the summaries need every kind they use.
    read_access: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The role a case's own client acts in: over the network it may reach only a case bound to its
    # identity by the practice, never another's.
    client_role: str | None = None
    # The role that handles messages whose delivery failed for good (it reaches the person another way);
    # None: failed deliveries go on nobody's work list.
    delivery_failures: str | None = None
    # The fee schedule and the visits it bills (``kapflow.domain.billing``); None: this workflow bills nothing.
    billing: Billing | None = None
    _states: Mapping[str, State] = field(init=False, repr=False, compare=False)
    _by_source: Mapping[tuple[str, str], Transition] = field(init=False, repr=False, compare=False)
    _checks: Mapping[int, tuple[Transition, tuple[tuple[str, Guard], ...]]] = field(
        init=False, repr=False, compare=False
    )
    _by_trigger: Mapping[str, tuple[Transition, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Own read-only copies: editing the caller's dicts must not change a validated version.
        for name in ("guards", "facts", "thresholds", "moments", "read_access"):
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

    def readable(self, role: str) -> frozenset[str]:
        """The fact kinds ``role`` may read (the minimum necessary for its work); none if not declared."""
        kinds = self.read_access.get(role, frozenset())
        return frozenset(self.facts) if ALL_FACTS in kinds else kinds

    def summarize(self, facts: CaseFacts) -> dict[str, object]:
        """The workflow's read-only views of a case (its ``summaries``, e.g. symptom measures), by name.

        A view that cannot be computed from the facts stored (one edited by hand, say) is shown as
        unavailable rather than failing the read.
        """
        shown: dict[str, object] = {}
        for name, summary in self.summaries.items():
            try:
                shown[name] = dict(summary(facts))
            except (KeyError, TypeError, ValueError) as exc:
                shown[name] = {"unavailable": type(exc).__name__}
        return shown

    def reminder(self, state: str, name: str) -> Reminder | None:
        """The reminder ``name`` as the case in ``state`` plans it: the state's own, or the workflow's."""
        for r in (*self.state(state).reminders, *self.reminders):
            if r.name == name:
                return r
        return None

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
            guards=dict(self.guards), facts=dict(self.facts), moments=dict(self.moments),
        )


def validate(wf: Workflow) -> list[str]:
    """Every problem with a workflow definition, as sentences; empty when it is sound."""
    problems: list[str] = []
    if not wf.name:
        problems.append("the workflow has no name")
    if not wf.version:
        problems.append("the workflow has no version")
    problems += [f"staff role {r!r} is not one of the workflow's roles" for r in sorted(wf.staff_roles - wf.roles)]
    problems += _read_access_problems(wf)
    if wf.client_role is not None and wf.client_role not in wf.roles:
        problems.append(f"client role {wf.client_role!r} is not one of the workflow's roles")
    if wf.delivery_failures is not None and wf.delivery_failures not in wf.roles:
        problems.append(f"failed deliveries go to role {wf.delivery_failures!r}, which is not one of the "
                        "workflow's roles")
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
    every_reminder = [*(r for s in wf.states for r in s.reminders), *wf.reminders]
    named |= {g for r in every_reminder for g in (r.while_blocked_by, r.while_holds) if g}
    named |= {g for s in wf.states for g in s.pending}
    problems += [
        f"guard {g!r} is named by no transition, fact kind, reminder or state: it can never be evaluated"
        for g in sorted(set(wf.guards) - named)
    ]
    return problems


def _check_reminders(wf: Workflow, known: set[str]) -> list[str]:
    problems: list[str] = []
    names = [r.name for s in wf.states for r in s.reminders] + [r.name for r in wf.reminders]
    problems += [f"reminder {n!r} is defined twice" for n in sorted({n for n in names if names.count(n) > 1})
                 if any(r.name == n for r in wf.reminders)]
    for s in wf.states:
        for r in s.reminders:
            problems += _check_reminder(wf, r, f"reminder {r.name!r} of state {s.name!r}", known, s.name)
    for r in wf.reminders:
        problems += _check_reminder(wf, r, f"reminder {r.name!r} of the workflow", known, None)
    return problems + _check_moments(wf)


def _check_moments(wf: Workflow) -> list[str]:
    """A moment that declares what it reads names fact kinds and triggers of the workflow."""
    problems: list[str] = []
    triggers = {t.trigger for t in wf.transitions}  # validated before the workflow indexes its transitions
    for name, moment in sorted(wf.moments.items()):
        if isinstance(moment, ReadingMoment):
            problems += [f"moment {name!r} reads unknown fact kind {k!r}"
                         for k in sorted(moment.facts - wf.facts.keys())]
            problems += [f"moment {name!r} reads the moves of unknown trigger {t!r}"
                         for t in sorted(moment.moves - triggers)]
    return problems


def _check_reminder(wf: Workflow, r: Reminder, where: str, known: set[str], state: str | None) -> list[str]:
    problems: list[str] = []
    if r.audience not in wf.roles:
        problems.append(f"{where} is for unknown role {r.audience!r}")
    if not r.channel and not r.fires:
        problems.append(f"{where} names neither a channel to send on nor a trigger to fire")
    timings = (r.after is not None, r.before_appointment is not None, r.on_appointment is not None)
    if sum(timings) != 1:
        problems.append(f"{where} needs exactly one of 'after', 'before_appointment' or 'on_appointment'")
    if state is None and r.after is not None and r.since is None:
        problems.append(f"{where} counts 'after' from entering a state, but belongs to no state: name 'since'")
    if r.since is not None and r.since not in wf.moments:
        problems.append(f"{where} counts from unknown moment {r.since!r}")
    if r.business_days and r.since is not None:
        problems.append(f"{where} counts business days from a moment; only entering a state counts them")
    if r.on_appointment is not None and r.on_appointment not in APPOINTMENT_EVENTS:
        problems.append(f"{where} waits for unknown appointment event {r.on_appointment!r}; "
                        f"use one of {', '.join(APPOINTMENT_EVENTS)}")
    if r.about_appointment and wf.appointments is None:
        problems.append(f"{where} speaks of an appointment, but the workflow books none")
    elif r.appointment_kind and wf.appointments and r.appointment_kind not in wf.appointments.kinds:
        problems.append(f"{where} names unknown appointment kind {r.appointment_kind!r}")
    if r.before_appointment is not None and not r.appointment_kind and state is not None:
        problems.append(f"{where} counts back from an appointment but names no appointment kind")
    problems += [f"{where} is wanted in unknown state {name!r}" for name in r.in_states if name not in known]
    if r.fires:
        problems += _check_fires(wf, r, where, state)
    if r.missed_alert is not None and r.missed_alert not in wf.roles:
        problems.append(f"{where} alerts unknown role {r.missed_alert!r} when missed")
    problems += [f"{where} puts work on unknown role {role!r}" for role in r.work_also if role not in wf.roles]
    for guard in (r.while_blocked_by, r.while_holds):
        if guard and guard not in wf.guards:
            problems.append(f"{where} names unknown guard {guard!r}")
    return problems


def _check_fires(wf: Workflow, r: Reminder, where: str, state: str | None) -> list[str]:
    assert r.fires is not None
    if state is None:
        return [f"{where} fires {r.fires!r}; only a state's own reminders fire triggers"]
    triggers = {(src, t.trigger) for t in wf.transitions for src in t.sources}
    if (state, r.fires) not in triggers:
        return [f"{where} fires {r.fires!r}, which does not leave {state!r}"]
    if not any(WORKER_ROLE in t.roles for t in wf.transitions if t.trigger == r.fires and state in t.sources):
        return [f"{where} fires {r.fires!r}, which the worker's role {WORKER_ROLE!r} may not fire"]
    return []


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
    if wf.billing is not None:
        problems += _billing_problems(wf, wf.billing)
    return problems


def _billing_problems(wf: Workflow, billing: Billing) -> list[str]:
    names = billing.facts
    problems = [f"billing fact {kind!r} is not a recorded fact kind"
                for kind in names.ledger if kind not in wf.facts]
    kinds = set(wf.appointments.kinds) if wf.appointments is not None else set()
    problems += [f"billing names visits of kind {v.kind!r}, which this workflow does not book"
                 for v in billing.visits if v.kind not in kinds]
    # A completing trigger this version lacks completes nothing (a version that drops a step need not restate
    # the fee schedule), as with ``AppointmentFacts.starts``.
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


ALL_FACTS = "*"
"""In ``Workflow.read_access``: every fact kind of the workflow (an auditor's, a prescriber's)."""


def _read_access_problems(wf: Workflow) -> list[str]:
    problems = [f"read access names role {r!r}, which is not one of the workflow's roles"
                for r in sorted(set(wf.read_access) - wf.roles)]
    for role, kinds in sorted(wf.read_access.items()):
        problems += [f"read access of {role!r} names fact kind {k!r}, which the workflow does not record"
                     for k in sorted(kinds - set(wf.facts) - {ALL_FACTS})]
    return problems
