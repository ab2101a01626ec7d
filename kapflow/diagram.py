"""State diagrams of a workflow definition: Mermaid text and SVG always, PNG when pygraphviz is installed.

All are drawn from the same edge list (``edges``), read from the ``Workflow`` itself, so a diagram
can never disagree with the definition the engine runs. A return-to-previous transition (``resume``)
has no single destination: it is drawn as one edge back to each state that can lead into its source.

``pathway_svg`` draws the pathway as SVG in pure Python (no Graphviz), optionally with a case's
current state marked and the states it went through shaded: the console shows it on every case page
and ``svg`` (the HTTP API's ``diagram.svg``) is it with no case marked. It carries ``role="img"``, a
``<title>`` and a ``<desc>``, and presentation attributes only (no ``style``, no script), so it can be
inlined under a Content-Security-Policy without 'unsafe-inline'. ``write_png`` still needs pygraphviz.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from kapflow.domain.case import PREVIOUS_STATE
from kapflow.domain.workflow import Transition, Workflow
from kapflow.errors import DiagramUnavailable

__all__ = ["DiagramUnavailable", "Edge", "edges", "mermaid", "pathway_svg", "svg", "write_png"]


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
    """The diagram as SVG (the HTTP API's): ``pathway_svg`` with no case marked, UTF-8. Needs no Graphviz."""
    return pathway_svg(workflow).encode("utf-8")


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


# ------------------------------------------------------------------ the pathway as SVG, in pure Python

_NAME_FONT, _LABEL_FONT = 13, 11
_NAME_CHAR, _LABEL_CHAR = 8.0, 6.4  # generous average glyph widths (px) of the sans-serif fonts used
_FONT = "Helvetica, Arial, sans-serif"
_BOX_H, _BOX_GAP, _MARGIN = 50, 44, 16
_LANE, _LANE_OFFSET, _TRACK, _BAND = 20, 26, 7, 12
_INK, _EDGE_INK, _MUTED = "#111111", "#3a3a3a", "#5f6368"
_FILL, _VISITED_FILL, _CURRENT_FILL = "#ffffff", "#e3eefc", "#fff1b8"
_HERE = "\u25cf here"


@dataclass
class _Box:
    name: str
    rank: int
    x: float = 0.0
    y: float = 0.0
    top: list[tuple[float, int]] = field(default_factory=list)  # (sort key, edge index) attached on top
    bottom: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class _Route:
    """How one edge is drawn: straight between adjacent rows, or through a lane along the side."""

    edge: Edge
    up: bool  # drawn going back up (a hold's resume, a return): dashed, through a left lane
    lane: tuple[str, str, str] | None = None  # the lane's key when not drawn straight
    start: tuple[float, float] = (0.0, 0.0)
    end: tuple[float, float] = (0.0, 0.0)


def pathway_svg(workflow: Workflow, *, current: str | None = None, visited: Collection[str] = ()) -> str:
    """The workflow's pathway as an SVG document (pure Python): ``current`` marked, ``visited`` shaded.

    States stand in rows by rank (the longest path to them from the initial state, back edges
    ignored), top to bottom; each arrow of ``edges`` is drawn once, labelled with its trigger. Arrows
    between adjacent rows are straight; longer ones run down a lane on the right, and those going
    back up (returns, resumes, loops) run dashed up a lane on the left, so none crosses a box. Final
    states have a double border. The current state has a thick dark border and the words "● here"
    (not colour alone); visited states a light fill. No ``style`` anywhere: presentation attributes
    only, so it is shown under a Content-Security-Policy without 'unsafe-inline'.
    """
    names = [s.name for s in workflow.states]
    if current is not None and current not in names:
        raise ValueError(f"{current!r} is not a state of {workflow.name} v{workflow.version}")
    drawn = edges(workflow)
    ranks = _ranks(workflow, drawn)
    rows = _rows(workflow, drawn, ranks)
    width_box = max(140.0, max(len(n) for n in names) * _NAME_CHAR + 28)
    routes = [_Route(e, up=ranks[e.dest] <= ranks[e.source]) for e in drawn]
    for r in routes:
        if r.up or ranks[r.edge.dest] - ranks[r.edge.source] > 1:
            key = (r.edge.trigger, r.edge.source) if r.edge.returns else (r.edge.trigger, r.edge.dest)
            r.lane = ("up" if r.up else "down", *key)
    lanes = _lanes(routes, ranks)
    tracks = _tracks(routes, ranks)
    n_left = max((i + 1 for (side, *_), i in lanes.items() if side == "up"), default=0)
    n_right = max((i + 1 for (side, *_), i in lanes.items() if side == "down"), default=0)
    left = _MARGIN + (n_left * _LANE + _LANE_OFFSET if n_left else 0)
    column = max(len(row) * width_box + (len(row) - 1) * _BOX_GAP for row in rows)
    width = left + column + (n_right * _LANE + _LANE_OFFSET if n_right else 0) + _MARGIN

    gaps = [_gap_height(tracks, g, rows) for g in range(len(rows) + 1)]
    boxes: dict[str, _Box] = {}
    y = float(_MARGIN) + gaps[0]
    for rank, row in enumerate(rows):
        row_width = len(row) * width_box + (len(row) - 1) * _BOX_GAP
        for i, name in enumerate(row):
            boxes[name] = _Box(name, rank, left + (column - row_width) / 2 + i * (width_box + _BOX_GAP), y)
        y += _BOX_H + gaps[rank + 1]
    height = y + _MARGIN

    def lane_x(key: tuple[str, str, str]) -> float:
        if key[0] == "up":
            return left - _LANE_OFFSET - lanes[key] * _LANE
        return left + column + _LANE_OFFSET + lanes[key] * _LANE

    def track_y(gap: int, band: str, key: tuple[str, str, str]) -> float:
        index = tracks[(gap, band)].index(key)
        if band == "upper":  # just below the row above the gap
            return (boxes[rows[gap - 1][0]].y + _BOX_H if gap else float(_MARGIN)) + _BAND + index * _TRACK
        below = boxes[rows[gap][0]].y if gap < len(rows) else height - _MARGIN
        return below - _BAND - index * _TRACK

    # Where each arrow leaves and enters its boxes: spread along the side, ordered by where it goes.
    # Arrows of one lane share their point on a box (a bus: one arrowhead into ``withdrawn``).
    slots: dict[tuple[str, str, object], tuple[float, list[tuple[int, bool]]]] = {}
    for i, r in enumerate(routes):
        src, dst = boxes[r.edge.source], boxes[r.edge.dest]
        group: object = r.lane or i
        for box, side, other, starts in ((src, "top" if r.up else "bottom", dst, True),
                                          (dst, "bottom" if r.up else "top", src, False)):
            toward = lane_x(r.lane) if r.lane else other.x
            slots.setdefault((box.name, side, group), (toward, []))[1].append((i, starts))
    for seq, ((name, side, _), (toward, _members)) in enumerate(slots.items()):
        b = boxes[name]
        (b.top if side == "top" else b.bottom).append((toward, seq))
    for seq, ((name, side, _), (_toward, members)) in enumerate(slots.items()):
        b = boxes[name]
        spread = sorted(b.top if side == "top" else b.bottom)
        k = next(k for k, (_x, at) in enumerate(spread) if at == seq)
        point = (b.x + width_box * (k + 1) / (len(spread) + 1), b.y if side == "top" else b.y + _BOX_H)
        for i, starts in members:
            if starts:
                routes[i].start = point
            else:
                routes[i].end = point

    out = [_svg_open(workflow, width, height, current, [n for row in rows for n in row], visited)]
    out.append(_defs(workflow))
    out.append(f'<g fill="none" stroke="{_EDGE_INK}" stroke-width="1.4">')
    labels: list[str] = []
    placed: list[tuple[float, float, float, float]] = []
    lane_extent: dict[tuple[str, str, str], list[float]] = {}
    for r in routes:
        e = r.edge
        (x0, y0), (x1, y1) = r.start, r.end
        if r.lane is None:
            points = [(x0, y0), (x1, y1)]
            labels.append(_direct_label(e.trigger, x0, y0, x1, y1, placed))
        else:
            ranks_src, ranks_dst = ranks[e.source], ranks[e.dest]
            lx = lane_x(r.lane)
            if r.up:
                y_out, y_in = track_y(ranks_src, "lower", r.lane), track_y(ranks_dst + 1, "upper", r.lane)
            else:
                y_out, y_in = track_y(ranks_src + 1, "upper", r.lane), track_y(ranks_dst, "lower", r.lane)
            points = [(x0, y0), (x0, y_out), (lx, y_out), (lx, y_in), (x1, y_in), (x1, y1)]
            lane_extent.setdefault(r.lane, []).extend((y_out, y_in))
        dash = ' stroke-dasharray="6 4"' if r.up or e.returns else ""
        path = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y) in enumerate(points))
        out.append(
            f"<g data-source={quoteattr(e.source)} data-dest={quoteattr(e.dest)} data-trigger={quoteattr(e.trigger)}>"
            f"<title>{escape(f'{e.source} → {e.dest}: {e.label}')}</title>"
            f'<path d="{path}"{dash} marker-end="url(#{_ids(workflow)}-arrow)"/></g>'
        )
    out.append("</g>")
    for lane, ys in lane_extent.items():
        labels.append(_lane_label(lane[1], lane_x(lane), (min(ys) + max(ys)) / 2, lane[0] == "up"))
    out.append(_start(boxes[workflow.initial], width_box))
    for s in workflow.states:
        out.append(_state(boxes[s.name], width_box, s.final, s.name == current, s.name in visited))
    out.append(f'<g font-family="{_FONT}" font-size="{_LABEL_FONT}" fill="{_EDGE_INK}" stroke="#ffffff" '
               'stroke-width="3" stroke-linejoin="round" paint-order="stroke">')
    out += labels
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def _ranks(workflow: Workflow, drawn: list[Edge]) -> dict[str, int]:
    """Each state's rank: its longest path from the initial state over forward edges (not returns, not back)."""
    names = [s.name for s in workflow.states]
    succ: dict[str, list[str]] = {n: [] for n in names}
    for e in drawn:
        if not e.returns and e.dest not in succ[e.source]:
            succ[e.source].append(e.dest)
    forward: dict[str, list[str]] = {n: [] for n in names}
    seen: set[str] = set()
    on_path: set[str] = set()
    for root in [workflow.initial, *names]:  # the initial state first, then any it does not reach
        if root in seen:
            continue
        seen.add(root)
        on_path.add(root)
        stack = [(root, iter(succ[root]))]
        while stack:
            node, todo = stack[-1]
            nxt = next(todo, None)
            if nxt is None:
                stack.pop()
                on_path.discard(node)
            elif nxt not in on_path:  # an edge to a state on the current path goes back: not ranked
                forward[node].append(nxt)
                if nxt not in seen:
                    seen.add(nxt)
                    on_path.add(nxt)
                    stack.append((nxt, iter(succ[nxt])))
    rank = dict.fromkeys(names, 0)
    for node in _topological(names, forward):
        for nxt in forward[node]:
            rank[nxt] = max(rank[nxt], rank[node] + 1)
    return rank


def _topological(names: list[str], forward: dict[str, list[str]]) -> list[str]:
    into = dict.fromkeys(names, 0)
    for targets in forward.values():
        for t in targets:
            into[t] += 1
    ready = deque(n for n in names if not into[n])
    order: list[str] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for t in forward[node]:
            into[t] -= 1
            if not into[t]:
                ready.append(t)
    return order


def _rows(workflow: Workflow, drawn: list[Edge], ranks: dict[str, int]) -> list[list[str]]:
    """The states of each rank, ordered under the states that lead into them (barycentres), else as defined."""
    rows: list[list[str]] = [[] for _ in range(max(ranks.values()) + 1)]
    for s in workflow.states:
        rows[ranks[s.name]].append(s.name)
    preds: dict[str, list[str]] = {n: [] for n in ranks}
    for e in drawn:
        if ranks[e.source] < ranks[e.dest]:
            preds[e.dest].append(e.source)
    def centre(name: str, where: dict[str, float]) -> float:
        above = [where[p] for p in preds[name] if p in where]
        return sum(above) / len(above) if above else 0.0

    for _ in range(2):
        where: dict[str, float] = {}
        for row in rows:
            row.sort(key=lambda name: centre(name, where))  # stable: ties keep the definition order
            where.update({n: i - (len(row) - 1) / 2 for i, n in enumerate(row)})
    return rows


def _lanes(routes: list[_Route], ranks: dict[str, int]) -> dict[tuple[str, str, str], int]:
    """A lane for each group of arrows along the side; groups whose rows do not overlap share one."""
    spans: dict[tuple[str, str, str], tuple[int, int]] = {}
    for r in routes:
        if r.lane is None:
            continue
        s, d = ranks[r.edge.source], ranks[r.edge.dest]
        low, high = (d + 1, s) if r.up else (s + 1, d)
        old = spans.get(r.lane, (low, high))
        spans[r.lane] = (min(old[0], low), max(old[1], high))
    taken: dict[tuple[str, int], list[tuple[int, int]]] = {}
    lanes: dict[tuple[str, str, str], int] = {}
    for key, (low, high) in sorted(spans.items(), key=lambda kv: (kv[1][1] - kv[1][0], kv[1])):
        i = 0
        while any(low <= h and l <= high for l, h in taken.get((key[0], i), [])):  # noqa: E741
            i += 1
        taken.setdefault((key[0], i), []).append((low, high))
        lanes[key] = i
    return lanes


def _tracks(routes: list[_Route], ranks: dict[str, int]) -> dict[tuple[int, str], list[tuple[str, str, str]]]:
    """The horizontal tracks of each gap between rows: one per lane group met there, in two bands."""
    tracks: dict[tuple[int, str], list[tuple[str, str, str]]] = {}
    for r in routes:
        if r.lane is None:
            continue
        s, d = ranks[r.edge.source], ranks[r.edge.dest]
        ends = [(s, "lower"), (d + 1, "upper")] if r.up else [(s + 1, "upper"), (d, "lower")]
        for where in ends:
            band = tracks.setdefault(where, [])
            if r.lane not in band:
                band.append(r.lane)
    return tracks


def _gap_height(tracks: dict[tuple[int, str], list[tuple[str, str, str]]], gap: int, rows: list[list[str]]) -> float:
    bands = sum(_BAND + len(tracks.get((gap, b), [])) * _TRACK for b in ("upper", "lower"))
    if gap in (0, len(rows)):
        return max(bands, 34.0 if gap == 0 else 0.0)
    return max(96.0, bands + 64.0)


def _direct_label(text: str, x0: float, y0: float, x1: float, y1: float,
                  placed: list[tuple[float, float, float, float]]) -> str:
    """The trigger on a straight arrow, at the first point along it where it overlaps no other label."""
    w, h = len(text) * _LABEL_CHAR + 4, _LABEL_FONT + 3

    def box(t: float) -> tuple[float, float, float, float]:
        cx, cy = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    def clashes(b: tuple[float, float, float, float]) -> int:
        return sum(b[0] < p[2] and p[0] < b[2] and b[1] < p[3] and p[1] < b[3] for p in placed)

    best = min((0.5, 0.36, 0.64, 0.26, 0.74, 0.44, 0.56), key=lambda t: (clashes(box(t)), abs(t - 0.5)))
    b = box(best)
    placed.append(b)
    return f'<text x="{(b[0] + b[2]) / 2:.1f}" y="{b[3] - 4:.1f}" text-anchor="middle">{escape(text)}</text>'


def _lane_label(text: str, x: float, y: float, left: bool) -> str:
    """A lane's trigger, written along the lane on its outer side."""
    bx = x - 4 if left else x + _LABEL_FONT + 1
    return (f'<text x="{bx:.1f}" y="{y:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 {bx:.1f} {y:.1f})">{escape(text)}</text>')


def _ids(workflow: Workflow) -> str:
    """An id prefix of this workflow version, so two diagrams inlined in one page do not collide."""
    slug = "".join(c if c.isalnum() else "-" for c in f"{workflow.name}-{workflow.version}")
    return f"kapflow-{slug}"


def _svg_open(workflow: Workflow, width: float, height: float, current: str | None,
              order: list[str], visited: Collection[str]) -> str:
    ids = _ids(workflow)
    title = f"{workflow.name} v{workflow.version}: pathway"
    if current is not None:
        title += f", current state {current}"
    listed = ", ".join(
        f"{n} (current)" if n == current else f"{n} (visited)" if n in visited else n for n in order
    )
    desc = f"States from the start, row by row: {listed}."
    desc += f" The case is now in {current}." if current is not None else " No case is shown."
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" role="img" '
        f'aria-labelledby="{ids}-title {ids}-desc" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="xMidYMin meet">\n'
        f'<title id="{ids}-title">{escape(title)}</title>\n'
        f'<desc id="{ids}-desc">{escape(desc)}</desc>'
    )


def _defs(workflow: Workflow) -> str:
    return (f'<defs><marker id="{_ids(workflow)}-arrow" viewBox="0 0 10 10" refX="9.5" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 Z" fill="{_EDGE_INK}" stroke="none"/></marker></defs>')


def _start(initial: _Box, width_box: float) -> str:
    cx = initial.x + width_box / 2
    return (f'<g fill="{_INK}" stroke="{_INK}"><circle cx="{cx:.1f}" cy="{initial.y - 24:.1f}" r="6"/>'
            f'<path d="M{cx:.1f},{initial.y - 18:.1f} L{cx:.1f},{initial.y - 6:.1f}" stroke-width="1.4"/>'
            f'<path d="M{cx - 4:.1f},{initial.y - 7:.1f} L{cx + 4:.1f},{initial.y - 7:.1f} '
            f'L{cx:.1f},{initial.y:.1f} Z" stroke="none"/></g>')


def _state(b: _Box, width_box: float, final: bool, current: bool, visited: bool) -> str:
    fill = _CURRENT_FILL if current else _VISITED_FILL if visited else _FILL
    stroke, stroke_width = (_INK, 4) if current else (_MUTED, 1.5)
    marks = ' data-current="true"' if current else ""
    parts = [f"<g data-state={quoteattr(b.name)}{marks}>",
             f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{width_box:.1f}" height="{_BOX_H}" rx="8" '
             f'fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"/>']
    if final:
        parts.append(f'<rect x="{b.x + 5:.1f}" y="{b.y + 5:.1f}" width="{width_box - 10:.1f}" height="{_BOX_H - 10}" '
                     f'rx="5" fill="none" stroke="{stroke}" stroke-width="1.5"/>')
    cx = b.x + width_box / 2
    name_y = b.y + (21 if current else _BOX_H / 2 + _NAME_FONT * 0.35)
    weight = ' font-weight="bold"' if current else ""
    parts.append(f'<text x="{cx:.1f}" y="{name_y:.1f}" text-anchor="middle" font-family="{_FONT}" '
                 f'font-size="{_NAME_FONT}" fill="{_INK}"{weight}>{escape(b.name)}</text>')
    if current:
        parts.append(f'<text x="{cx:.1f}" y="{b.y + 39:.1f}" text-anchor="middle" font-family="{_FONT}" '
                     f'font-size="{_LABEL_FONT}" font-weight="bold" fill="{_INK}">{_HERE}</text>')
    parts.append("</g>")
    return "".join(parts)
