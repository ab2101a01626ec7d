"""Workflow versions side by side: what changed between two, and whether a case in flight may move.

``diff_workflows(old, new)`` lists what a new version changes: states,
transitions, thresholds, fact kinds, guards and roles. Transitions are
compared by trigger; a trigger defined by several transitions is compared
as the union of their sources, destinations, roles, guards and required data.
Guards are compared by name only: code cannot be compared, so a guard whose
rule changed must get a new name (or a new threshold) to show up here.

``can_migrate(case, old, new)`` decides whether a case may move from its
version ``old`` to ``new``. The rule: a case moves only if the new version
could hold it where it is, and would have let it get there.

- ``final``: the case is finished (its state is final in its version).
- ``state_missing``: its state does not exist in the new version.
- ``becomes_final``: its state is final in the new version, so it would end without a move.
- ``previous_state_missing``: the new version's way back (``PREVIOUS_STATE``,
  a resume from hold) could not return it to the state it came from.
- ``entry_guard_fails``: the new version's guards of the transition that
  brought the case into its state (its last move) block, one reason per
  blocker. They are evaluated with the new thresholds on the case as it was
  when it made that move: the facts recorded up to that instant, the moves
  before it, the clock at that instant. Re-evaluating them on today's facts
  would be wrong, since entering a state changes what its guards see (a
  case in dosing has used the session that ``plan_sessions_remain`` counts;
  its pre-dose vitals came before the dosing). Required data (a reason) is
  not checked again: it was given with the move and belongs to the move.
  A case still in its initial state, or whose entering trigger no longer
  leads there in the new version, has no entry guards to fail.

Pure: the standard library and kapflow's domain only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from kapflow.domain.appointments import STANDARD
from kapflow.domain.calendar import UTC_CALENDAR, PracticeCalendar
from kapflow.domain.case import PREVIOUS_STATE, CaseFacts, CaseRecord
from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import FactKind, GuardContext, Reminder, State, Transition, Workflow

# ------------------------------------------------------------------ the diff


@dataclass(frozen=True)
class Change:
    """One value that differs: ``old`` is None when it was added, ``new`` is None when removed."""

    field: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, object]:
        return {"field": self.field, "old": self.old, "new": self.new}

    def text(self) -> str:
        if isinstance(self.old, list) and isinstance(self.new, list):
            added = [f"+{v}" for v in self.new if v not in self.old]
            removed = [f"-{v}" for v in self.old if v not in self.new]
            return f"{self.field}: {', '.join(added + removed)}"
        return f"{self.field}: {_show(self.old)} -> {_show(self.new)}"


@dataclass(frozen=True)
class ItemChange:
    """A state, transition or fact kind present in both versions, with what changed in it."""

    name: str
    changes: tuple[Change, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "changes": [c.as_dict() for c in self.changes]}


@dataclass(frozen=True)
class WorkflowDiff:
    """What changes from one workflow version to another."""

    name: str
    from_version: str
    to_version: str
    states_added: tuple[str, ...] = ()
    states_removed: tuple[str, ...] = ()
    states_changed: tuple[ItemChange, ...] = ()
    transitions_added: tuple[str, ...] = ()
    transitions_removed: tuple[str, ...] = ()
    transitions_changed: tuple[ItemChange, ...] = ()
    thresholds_changed: tuple[Change, ...] = ()
    facts_added: tuple[str, ...] = ()
    facts_removed: tuple[str, ...] = ()
    facts_changed: tuple[ItemChange, ...] = ()
    guards_added: tuple[str, ...] = ()
    guards_removed: tuple[str, ...] = ()
    roles_added: tuple[str, ...] = ()
    roles_removed: tuple[str, ...] = ()
    other: tuple[Change, ...] = ()  # name, initial state, intake fact, staff roles

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self) if f.name not in _HEADER)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "from_version": self.from_version,
                                  "to_version": self.to_version, "empty": self.empty}
        for f in fields(self):
            if f.name not in _HEADER:
                value = getattr(self, f.name)
                out[f.name] = [v if isinstance(v, str) else v.as_dict() for v in value]
        return out

    def text(self) -> str:
        """A readable rendering, one section per kind of change."""
        lines = [f"workflow {self.name}: version {self.from_version} -> {self.to_version}"]
        if self.empty:
            return "\n".join([*lines, "  no changes"])
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _HEADER or not value:
                continue
            title = f.name.replace("_", " ")
            if all(isinstance(v, str) for v in value):
                lines.append(f"{title}: {', '.join(value)}")
                continue
            lines.append(f"{title}:")
            for v in value:
                if isinstance(v, Change):
                    lines.append(f"  {v.text()}")
                else:
                    lines += [f"  {v.name}", *(f"    {c.text()}" for c in v.changes)]
        return "\n".join(lines)


_HEADER = frozenset({"name", "from_version", "to_version"})
_T = TypeVar("_T")


def diff_workflows(old: Workflow, new: Workflow) -> WorkflowDiff:
    """Everything ``new`` changes relative to ``old``."""
    states = _compare({s.name: s for s in old.states}, {s.name: s for s in new.states}, _state_changes)
    transitions = _compare(_by_trigger(old), _by_trigger(new), _transition_changes)
    facts = _compare(dict(old.facts), dict(new.facts), _fact_changes)
    thresholds = tuple(
        Change(k, old.thresholds.get(k), new.thresholds.get(k))
        for k in sorted(set(old.thresholds) | set(new.thresholds))
        if old.thresholds.get(k) != new.thresholds.get(k)
    )
    other = tuple(
        Change(label, a, b)
        for label, a, b in (("name", old.name, new.name), ("initial", old.initial, new.initial),
                            ("intake_fact", old.intake_fact, new.intake_fact),
                            ("staff_roles", ",".join(sorted(old.staff_roles)), ",".join(sorted(new.staff_roles))))
        if a != b
    ) + tuple(_reminder_changes(old.reminders, new.reminders)) + tuple(
        Change(f"moment {m}", m in old.moments, m in new.moments)
        for m in sorted(set(old.moments) ^ set(new.moments))
    )
    return WorkflowDiff(
        name=new.name, from_version=old.version, to_version=new.version,
        states_added=states[0], states_removed=states[1], states_changed=states[2],
        transitions_added=transitions[0], transitions_removed=transitions[1], transitions_changed=transitions[2],
        thresholds_changed=thresholds,
        facts_added=facts[0], facts_removed=facts[1], facts_changed=facts[2],
        guards_added=_only_in(new.guards, old.guards), guards_removed=_only_in(old.guards, new.guards),
        roles_added=_only_in(new.roles, old.roles), roles_removed=_only_in(old.roles, new.roles),
        other=other,
    )


def _compare(
    old: Mapping[str, _T], new: Mapping[str, _T], changes_of: Callable[[_T, _T], Iterable[Change]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[ItemChange, ...]]:
    """(added, removed, changed) between two named collections; ``changes_of(a, b)`` lists the changes."""
    changed = []
    for name in sorted(set(old) & set(new)):
        found: tuple[Change, ...] = tuple(changes_of(old[name], new[name]))
        if found:
            changed.append(ItemChange(name, found))
    return _only_in(new, old), _only_in(old, new), tuple(changed)


def _only_in(these: Iterable[str], those: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(these) - set(those)))


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[Change]:
    return [Change(f"{prefix}{k}", old[k], new[k]) for k in old if old[k] != new[k]]


def _state_changes(old: State, new: State) -> list[Change]:
    changes = _field_changes({"final": old.final, "pending": sorted(old.pending)},
                             {"final": new.final, "pending": sorted(new.pending)})
    return changes + _reminder_changes(old.reminders, new.reminders)


def _reminder_changes(old: Iterable[Reminder], new: Iterable[Reminder]) -> list[Change]:
    changes: list[Change] = []
    before = {r.name: r for r in old}
    after = {r.name: r for r in new}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            changes.append(Change(f"reminder {name}", _reminder_text(a), _reminder_text(b)))
        elif a != b:
            changes += _field_changes(_reminder_fields(a), _reminder_fields(b), f"reminder {name}.")
    return changes


def _reminder_fields(r: Reminder) -> dict[str, Any]:
    return {f.name: _plain(getattr(r, f.name)) for f in fields(r) if f.name != "name"}


def _reminder_text(r: Reminder | None) -> str | None:
    if r is None:
        return None
    what = f"fires {r.fires}" if r.fires else f"{r.channel} to {r.audience}"
    kind = r.appointment_kind or "appointment"
    if r.before_appointment is not None:
        when = f"{_plain(r.before_appointment)} before the {kind}"
    elif r.on_appointment is not None:
        when = f"when the {kind} is {r.on_appointment}"
    elif r.since is not None:
        when = f"{_plain(r.after)} after {r.since}"
    else:
        when = f"{_plain(r.after)}{' (business days)' if r.business_days else ''} after entry"
    unless = f", while {r.while_blocked_by} blocks" if r.while_blocked_by else ""
    return f"{what}, {when}{unless}"


def _by_trigger(wf: Workflow) -> dict[str, dict[str, Any]]:
    grouped: dict[str, list[Transition]] = {}
    for t in wf.transitions:
        grouped.setdefault(t.trigger, []).append(t)
    return {trigger: _transition_fields(ts) for trigger, ts in grouped.items()}


def _transition_fields(ts: Sequence[Transition]) -> dict[str, Any]:
    dests = sorted({t.dest for t in ts})
    return {
        "sources": sorted({s for t in ts for s in t.sources}),
        "dest": dests[0] if len(dests) == 1 else dests,
        "roles": sorted({r for t in ts for r in t.roles}),
        "guards": sorted({g for t in ts for g in t.guards}),
        "requires": sorted({k for t in ts for k in t.requires}),
        "cancels": sorted({k for t in ts for k in t.cancels}),
    }


def _transition_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    return _field_changes(old, new)


def _fact_changes(old: FactKind, new: FactKind) -> list[Change]:
    def summary(fk: FactKind) -> dict[str, Any]:
        return {"roles": sorted(fk.roles), "guards": sorted(fk.guards),
                "fields": sorted(f.name for f in fk.spec.fields), "on_closed_case": fk.on_closed_case}

    return _field_changes(summary(old), summary(new))


def _plain(value: Any) -> Any:
    """A JSON-ready form: durations as text (``48h``, ``2d``, ``-30min``), collections as sorted lists."""
    if isinstance(value, timedelta):
        return _span(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign, minutes = ("-", -minutes) if minutes < 0 else ("", minutes)
    if minutes and minutes % (24 * 60) == 0:
        return f"{sign}{minutes // (24 * 60)}d"
    if minutes and minutes % 60 == 0:
        return f"{sign}{minutes // 60}h"
    return f"{sign}{minutes}min"


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


# ------------------------------------------------------------ the migration


@dataclass(frozen=True)
class MigrationVerdict:
    """Whether a case may move to another version; if not, every reason (a ``Blocker`` with a code)."""

    case_id: str
    from_version: str
    to_version: str
    reasons: tuple[Blocker, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "case_id": self.case_id, "from_version": self.from_version, "to_version": self.to_version,
            "ok": self.ok, "reasons": [r.as_dict() for r in self.reasons],
        }

    def text(self) -> str:
        return "can move" if self.ok else "; ".join(f"{r.code}: {r.message}" for r in self.reasons)


def can_migrate(
    case: CaseRecord, old: Workflow, new: Workflow, cal: PracticeCalendar = UTC_CALENDAR
) -> MigrationVerdict:
    """Whether ``case`` (on ``old``) may move to ``new``, by the rule in this module's docstring.

    ``cal`` is the practice's calendar: guards read local dates (age, a prescription's expiry).
    """
    return MigrationVerdict(case.id, old.version, new.version, tuple(_reasons(case, old, new, cal)))


def _reasons(case: CaseRecord, old: Workflow, new: Workflow, cal: PracticeCalendar) -> list[Blocker]:
    v = new.version
    state = case.state
    if old.state(state).final:
        return [Blocker("final", f"the case is finished ({state}); a finished case stays on its version")]
    if state not in {s.name for s in new.states}:
        return [Blocker("state_missing", f"version {v} has no state {state!r}; move the case on first",
                        facts=(("state", state),))]
    reasons: list[Blocker] = []
    if new.state(state).final:
        reasons.append(Blocker("becomes_final", f"{state!r} is final in version {v}: the case would end unmoved",
                               facts=(("state", state),)))
    if not _can_return(case, new):
        reasons.append(Blocker(
            "previous_state_missing",
            f"version {v} cannot return the case from {state!r} to {case.previous_state!r}",
            facts=(("previous_state", str(case.previous_state)),),
        ))
    return reasons + _entry_blockers(case, new, cal)


def _can_return(case: CaseRecord, new: Workflow) -> bool:
    """A case in a state left by a return-to-previous must be able to go back where it came from."""
    if not any(t.dest == PREVIOUS_STATE for t in new.transitions_from(case.state)):
        return True
    entered_from = {s for t in new.transitions if t.dest == case.state for s in t.sources}
    return case.previous_state in entered_from


def _entry_blockers(case: CaseRecord, new: Workflow, cal: PracticeCalendar) -> list[Blocker]:
    facts = case.projection
    move = facts.last_move()
    if move is None:
        return []
    entering = new.transition_from(move.source, move.trigger)
    if entering is None or entering.dest not in (case.state, PREVIOUS_STATE):
        return []
    ctx = GuardContext(case.id, move.source, move.trigger, _as_of_entry(case.facts, move.at),
                       move.at, new.thresholds, {}, cal, new.appointments or STANDARD)
    out = []
    for name in entering.guards:
        blocker = new.guards[name](ctx)
        if blocker is not None:
            out.append(Blocker(
                "entry_guard_fails",
                f"version {new.version} would not have let {move.trigger} into {case.state}: "
                f"{blocker.code}: {blocker.message}",
                blocker.guard or name,
                (("trigger", move.trigger), ("blocker", blocker.code), *blocker.facts),
            ))
    return out


def _as_of_entry(raw: Mapping[str, Any], entered: datetime) -> CaseFacts:
    """The projection just before the last move: facts recorded up to its instant, the moves before it.

    A fact recorded at the same instant counts (a clock that did not tick between the two):
    the projection keeps no finer order between facts and moves.
    """
    kept = [f for f in raw.get("facts", ()) if datetime.fromisoformat(f["at"]) <= entered]
    return CaseFacts({"facts": kept, "moves": list(raw.get("moves", ()))[:-1]})
