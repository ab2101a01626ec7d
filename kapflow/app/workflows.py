"""The workflows an engine runs: every loaded version of every loaded workflow, found by name and version."""

from __future__ import annotations

from collections.abc import Sequence

from kapflow.domain.case import CaseRecord
from kapflow.domain.errors import InvalidInput, WorkflowDefinitionError
from kapflow.domain.workflow import Workflow
from kapflow.machine import compiled


class WorkflowSet:
    """Loaded workflow versions. The last version given of each workflow is the one new cases start on."""

    def __init__(self, versions: Workflow | Sequence[Workflow]) -> None:
        loaded = [versions] if isinstance(versions, Workflow) else list(versions)
        if not loaded:
            raise WorkflowDefinitionError("<none>", ["the engine needs at least one workflow"])
        self._by_key = {wf.key: wf for wf in loaded}
        self._current = {wf.name: wf for wf in loaded}  # later versions replace earlier ones
        self.default = loaded[-1]
        for wf in loaded:
            compiled(wf)  # each version's machine is built once, at start-up

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._current)

    def versions(self) -> list[Workflow]:
        return list(self._by_key.values())

    def current(self, name: str | None = None) -> Workflow:
        """The version new cases of ``name`` start on; ``name`` may be left out when one workflow is loaded."""
        if name is None:
            if len(self._current) > 1:
                raise InvalidInput(
                    f"this engine runs several workflows ({', '.join(sorted(self._current))}): "
                    "name the one to open the case on", field="workflow",
                )
            return self.default
        found = self._current.get(name) if isinstance(name, str) else None
        if found is None:
            raise InvalidInput(
                f"unknown workflow {name!r}; loaded: {', '.join(sorted(self._current))}", field="workflow"
            )
        return found

    def get(self, name: str, version: str) -> Workflow | None:
        return self._by_key.get((name, version))

    def of(self, case: CaseRecord) -> Workflow:
        """The version ``case`` is on, or a clear error if this engine has not loaded it."""
        wf = self._by_key.get((case.workflow, case.workflow_version))
        if wf is None:
            raise WorkflowDefinitionError(
                case.workflow,
                [f"case {case.id!r} is on version {case.workflow_version!r}, which this engine has not loaded; "
                 "pass that version to the Engine too"],
            )
        return wf
