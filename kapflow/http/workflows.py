"""The API's workflows: every loaded version, and each drawn as a state diagram (SVG or Mermaid).

A workflow's definition is the practice's, not a client's: any authenticated caller may read it, and no
case is read (nothing goes to the access log). The diagrams are drawn from the definition the engine
runs (``kapflow.diagram``), so they cannot disagree with it; both are drawn in pure Python, so neither
needs Graphviz.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from kapflow.app.engine import Engine
from kapflow.diagram import mermaid, svg
from kapflow.domain.workflow import Workflow
from kapflow.http.common import PROBLEMS, V1, Acting, JSONObject
from kapflow.present import workflow_shape

SVG = "image/svg+xml"
MERMAID = "text/plain; charset=utf-8"  # Mermaid has no registered media type; it is plain text
_DIAGRAM_PROBLEMS = {**PROBLEMS, 404: {**PROBLEMS[404], "description": "No such workflow version is loaded"}}


def router(engine: Engine) -> APIRouter:
    api = APIRouter(prefix=V1)

    def loaded(name: str, version: str) -> Workflow:
        found = engine.workflows.get(name, version)
        if found is None:
            known = ", ".join(f"{wf.name} {wf.version}" for wf in engine.workflows.versions())
            raise HTTPException(404, f"no workflow {name!r} version {version!r} is loaded; loaded: {known}")
        return found

    @api.get("/workflows", tags=["workflows"], responses=PROBLEMS)
    def list_workflows(actor: Acting) -> list[JSONObject]:
        """Every loaded version of every loaded workflow, oldest first: its states (initial and final
        marked), triggers, fact kinds, roles and appointment kinds, and whether new cases open on it
        (``current``). Any authenticated caller; no case is read."""
        current = {engine.workflows.current(name).key for name in engine.workflows.names}
        return [workflow_shape(wf, current=wf.key in current) for wf in engine.workflows.versions()]

    @api.get("/workflows/{name}/{version}/diagram.svg", tags=["workflows"], response_class=Response,
             responses={**_DIAGRAM_PROBLEMS, 200: {"content": {SVG: {}}, "description": "The diagram as SVG"}})
    def diagram_svg(name: str, version: str, actor: Acting) -> Response:
        """The workflow version as a state diagram in SVG, drawn in pure Python: every state, every transition
        with who may fire it and its guards (in each edge's ``<title>``)."""
        return Response(svg(loaded(name, version)), media_type=SVG)

    @api.get("/workflows/{name}/{version}/diagram.mmd", tags=["workflows"], response_class=Response,
             responses={**_DIAGRAM_PROBLEMS, 200: {"content": {MERMAID: {}},
                                                   "description": "A Mermaid stateDiagram-v2"}})
    def diagram_mermaid(name: str, version: str, actor: Acting) -> Response:
        """The workflow version as a Mermaid ``stateDiagram-v2`` (plain text): every state, every transition
        labelled with who may fire it and its guards, final states marked."""
        return Response(mermaid(loaded(name, version)), media_type=MERMAID)

    return api
