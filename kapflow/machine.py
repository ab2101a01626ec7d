"""One compiled ``transitions`` Machine per workflow version. The only importer of ``transitions``.

The machine owns the move from one state to the next; kapflow evaluates the
guards itself beforehand (so every blocker is reported, not just the first
False). A Machine is built once per workflow version with ``model=None`` and
``auto_transitions=False`` and shared by every case: each fire binds a small
plain object carrying the case's state to it, which costs microseconds and
nothing to keep. Building a Machine per case or calling ``add_model`` per
request would cost milliseconds and kilobytes per case (see LIBRARY_NOTES).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from transitions import Machine, MachineError

from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.workflow import Workflow
from kapflow.errors import MoveUndefined


class _Binding:
    """The plain object a fire runs on: the case's state and where it was before."""

    __slots__ = ("previous", "state")

    def __init__(self, state: str, previous: str | None) -> None:
        self.state = state
        self.previous = previous


@dataclass(frozen=True)
class _ReturnsTo:
    """Condition picking the branch of a return-to-previous transition."""

    target: str

    def __call__(self, binding: _Binding) -> bool:
        return binding.previous == self.target


class CompiledMachine:
    """The shared state machine of one workflow version."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self._machine = Machine(
            model=None,
            states=[s.name for s in workflow.states],
            initial=workflow.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=False,
            queued=False,
        )
        for t in workflow.transitions:
            if t.dest == PREVIOUS_STATE:
                self._add_return(t.trigger, t.sources)
            else:
                self._machine.add_transition(t.trigger, list(t.sources), t.dest)
        self._events = self._machine.events

    def _add_return(self, trigger: str, sources: tuple[str, ...]) -> None:
        for src in sources:
            targets = sorted({s for u in self.workflow.transitions if u.dest == src for s in u.sources})
            for target in targets:
                self._machine.add_transition(trigger, src, target, conditions=[_ReturnsTo(target)])

    def next_state(self, state: str, trigger: str, previous: str | None) -> str:
        """The state ``trigger`` leads to from ``state``. Raises if the move is not defined."""
        binding = _Binding(state, previous)
        event = self._events.get(trigger)
        if event is None:
            raise MoveUndefined(trigger, state)
        try:
            # The binding travels as the event's argument too: a return's condition reads it.
            moved = event.trigger(binding, binding)
        except (MachineError, ValueError) as exc:  # ValueError: a state the machine lacks
            raise MoveUndefined(trigger, state) from exc
        if not moved:
            raise MoveUndefined(trigger, state)
        return binding.state



# Keyed by the workflow object (two objects may share a name and version); the
# entry holds the workflow, so its id cannot be reused while cached.
_cache: dict[int, CompiledMachine] = {}
_lock = threading.Lock()


def compiled(workflow: Workflow) -> CompiledMachine:
    """The shared machine of a workflow version, built on first use."""
    machine = _cache.get(id(workflow))
    if machine is None:
        with _lock:
            machine = _cache.get(id(workflow))
            if machine is None:
                machine = CompiledMachine(workflow)
                _cache[id(workflow)] = machine
    return machine
