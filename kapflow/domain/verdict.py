"""Evaluating a transition's guards: every guard runs, every blocker is kept."""

from __future__ import annotations

from typing import NamedTuple

from kapflow.domain.errors import Blocker
from kapflow.domain.workflow import GuardContext, Transition, Workflow


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
