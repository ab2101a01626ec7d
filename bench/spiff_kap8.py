"""SpiffWorkflow on the same 8-step path: ``kap8.bpmn``, one user task per trigger, completed in order."""

from __future__ import annotations

from functools import cache
from typing import Any

from paths import BPMN, BPMN_PROCESS, TRIGGERS
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState


@cache
def spec() -> Any:
    """The parsed process, once: parsing is a deploy-time cost, not a per-step one."""
    parser = BpmnParser()
    parser.add_bpmn_file(str(BPMN))
    return parser.get_spec(BPMN_PROCESS)


@cache
def serializer() -> BpmnWorkflowSerializer:
    return BpmnWorkflowSerializer()


def start() -> BpmnWorkflow:
    workflow = BpmnWorkflow(spec())
    workflow.do_engine_steps()
    return workflow


def step(workflow: BpmnWorkflow, trigger: str) -> None:
    """Complete the one ready user task (it must be ``trigger``) and let the engine move on."""
    ready = workflow.get_tasks(state=TaskState.READY, manual=True)
    if len(ready) != 1 or ready[0].task_spec.name != trigger:
        raise RuntimeError(f"expected the user task {trigger!r}, found {[t.task_spec.name for t in ready]}")
    ready[0].run()
    workflow.do_engine_steps()


def run_case() -> int:
    """The whole path in memory, from a new workflow instance; returns the steps taken."""
    workflow = start()
    for trigger in TRIGGERS:
        step(workflow, trigger)
    if not workflow.is_completed():
        raise RuntimeError("the kap8 process did not complete")
    return len(TRIGGERS)


def dumps(workflow: BpmnWorkflow) -> str:
    return str(serializer().serialize_json(workflow))


def loads(text: str) -> BpmnWorkflow:
    workflow: BpmnWorkflow = serializer().deserialize_json(text)
    return workflow
