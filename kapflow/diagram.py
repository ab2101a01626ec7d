"""State diagrams of a workflow definition: Mermaid text always, PNG when pygraphviz is installed.

Both are drawn from the same edge list, read from the ``Workflow`` itself,
so a diagram can never disagree with the definition the engine runs. A
return-to-previous transition (``resume``) has no single destination: it is
drawn as one edge back to each state that can lead into its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.workflow import Transition, Workflow
from kapflow.errors import DiagramUnavailable

__all__ = ["DiagramUnavailable", "Edge", "edges", "mermaid", "write_png"]


@dataclass(frozen=True)
class Edge:
    """One arrow: a transition's trigger from one state to another, with who may fire it and its guards."""

    source: str
    dest: str
    trigger: str
    roles: tuple[str, ...]
    guards: tuple[str, ...]
    returns: bool = False

    @property
    def label(self) -> str:
        parts = [f"{self.trigger} ({', '.join(self.roles)})"]
        if self.guards:
            parts.append(f"if {', '.join(self.guards)}")
        if self.returns:
            parts.append("back to where it was")
        return " ".join(parts)


def edges(workflow: Workflow) -> list[Edge]:
    """Every arrow of the workflow, in definition order, with returns expanded."""
    out: list[Edge] = []
    for t in workflow.transitions:
        for source in t.sources:
            if t.dest == PREVIOUS_STATE:
                out += [_edge(t, source, back, returns=True) for back in _entered_from(workflow, source)]
            else:
                out.append(_edge(t, source, t.dest))
    return out


def _edge(t: Transition, source: str, dest: str, *, returns: bool = False) -> Edge:
    return Edge(source, dest, t.trigger, tuple(sorted(t.roles)), t.guards, returns)


def _entered_from(workflow: Workflow, state: str) -> list[str]:
    """States an ordinary transition leads from into ``state``: where a return may go back to."""
    found = {src for t in workflow.transitions if t.dest == state for src in t.sources}
    return [s.name for s in workflow.states if s.name in found]


def mermaid(workflow: Workflow) -> str:
    """A Mermaid ``stateDiagram-v2``: every state, every transition labelled, final states marked."""
    lines = [
        "---",
        f"title: {workflow.name} workflow, version {workflow.version}",
        "---",
        "stateDiagram-v2",
        f"    [*] --> {workflow.initial}",
    ]
    # Declaring every state keeps states that only appear as targets visible and in order.
    lines += [f"    {s.name}" for s in workflow.states]
    lines += [f"    {e.source} --> {e.dest} : {_mermaid_text(e.label)}" for e in edges(workflow)]
    finals = [s.name for s in workflow.states if s.final]
    lines += [f"    {name} --> [*]" for name in finals]
    if finals:
        lines.append("    classDef final font-weight:bold,stroke-width:3px")
        lines.append(f"    class {', '.join(finals)} final")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # ';' ends a Mermaid statement and '#' starts an entity code; neither belongs in a label.
    return text.replace(";", ",").replace("#", "")


def write_png(workflow: Workflow, output: Path) -> None:
    """Render the diagram to a PNG file with Graphviz (through pygraphviz)."""
    _graph(workflow, "PNG diagrams", "use --format mermaid").draw(str(output), format="png", prog="dot")


def svg(workflow: Workflow) -> bytes:
    """The diagram as SVG (the HTTP API's), drawn by Graphviz from the same edges as ``mermaid``."""
    drawn: bytes = _graph(workflow, "SVG diagrams", "ask for diagram.mmd").draw(format="svg", prog="dot")
    return drawn


def _graph(workflow: Workflow, what: str, instead: str) -> Any:
    """The workflow as a pygraphviz graph (the one importer of pygraphviz); ``DiagramUnavailable`` without it."""
    try:
        import pygraphviz
    except ImportError:
        raise DiagramUnavailable(
            f"{what} need pygraphviz: install kapflow[diagram] (pip install 'kapflow[diagram]'), or {instead}"
        ) from None
    graph = pygraphviz.AGraph(directed=True, strict=False, label=f"{workflow.name} v{workflow.version}")
    graph.add_node("__start__", shape="point", label="")
    for s in workflow.states:
        graph.add_node(s.name, shape="doublecircle" if s.final else "box", style="rounded")
    graph.add_edge("__start__", workflow.initial)
    for e in edges(workflow):
        graph.add_edge(e.source, e.dest, label=e.label, style="dashed" if e.returns else "solid")
    return graph
