"""Evaluating a transition's guards: every guard runs, every blocker is kept."""

from __future__ import annotations

from typing import NamedTuple

from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import GuardContext, Transition, Workflow, guard_reads


class Verdict(NamedTuple):
    """Whether a trigger may fire now, and if not, every reason why (a named tuple: one per check)."""

    trigger: str
    blockers: tuple[Blocker, ...]
    missed: str | None = None  # an automatic step that was due and not taken: it waits for a person

    @property
    def allowed(self) -> bool:
        return not self.blockers

    def as_dict(self) -> dict[str, object]:
        shape: dict[str, object] = {
            "trigger": self.trigger,
            "allowed": self.allowed,
            "blockers": [b.as_dict() for b in self.blockers],
        }
        if self.missed is not None:
            shape["missed"] = self.missed
        return shape


def evaluate(workflow: Workflow, transition: Transition, ctx: GuardContext) -> Verdict:
    """Run every guard of ``transition`` (no short-circuit) and the required-data check."""
    blockers: list[Blocker] = []
    for key in transition.requires:
        value = ctx.data.get(key)
        if not isinstance(value, str) or not value.strip():  # the engine refuses non-text before this
            blockers.append(
                Blocker(
                    code=f"{key}_required",
                    message=f"give a {key.replace('_', ' ')} for {transition.trigger.replace('_', ' ')}",
                    guard="requires",
                )
            )
    for name, guard in workflow.checks(transition):
        blocker = guard(ctx)
        if blocker is not None:
            blockers.append(named_blocker(blocker, name))
    return Verdict(transition.trigger, tuple(blockers))


def named_blocker(blocker: Blocker, guard: str) -> Blocker:
    """The blocker with the name of the guard that raised it (unless the guard named itself)."""
    return blocker if blocker.guard else Blocker(blocker.code, blocker.message, guard, blocker.facts)


PLAIN_GUARDS = frozenset({"roles", "requires", "state", "on_closed_case", "slots"})
"""Checks whose sentences quote nothing of a case: who may act, the data a trigger asks for, its state, and
a clinician or room already taken (its time, never whose)."""


def for_reader(blocker: Blocker, readable: frozenset[str], reads: frozenset[str]) -> Blocker:
    """``blocker`` as a role reading the fact kinds ``readable`` may see it: whole when its guard ``reads``
    (``blocker_reads``) only kinds the role reads, else its code in words and nothing of what the guard
    looked at, as its sentence may quote a fact the role may not read (a blood pressure, a screening)."""
    if blocker.guard in PLAIN_GUARDS or not blocker.guard or reads <= readable:
        return blocker
    return Blocker(blocker.code, blocker.code.replace("_", " "), blocker.guard)


def blocker_reads(wf: Workflow, guard: str) -> frozenset[str]:
    """The fact kinds the sentence of ``guard``'s blockers may quote: those it declares (``guard_reads``), or
    every kind of the workflow when it does not say."""
    declared = guard_reads(wf.guards.get(guard))
    return frozenset(wf.facts) if declared is None else declared


def verdict_for_reader(verdict: Verdict, wf: Workflow, role: str) -> Verdict:
    """Every blocker of ``verdict`` as ``role`` may see it (``for_reader``)."""
    readable = wf.readable(role)
    return verdict._replace(blockers=tuple(
        for_reader(b, readable, blocker_reads(wf, b.guard)) for b in verdict.blockers))
