"""The pathway drawn as SVG in pure Python: every state and arrow once, the current state marked, no CSS."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from kapflow.diagram import edges, pathway_svg, svg
from kapflow.domain.facts import FactSpec, Text
from kapflow.domain.workflow import FactKind, State, Transition, Workflow
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

NS = "{http://www.w3.org/2000/svg}"
WORKFLOWS = [KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY]
Rect = tuple[float, float, float, float]


def parse(drawn: str) -> ET.Element:
    root = ET.fromstring(drawn)
    assert root.tag == f"{NS}svg"
    return root


def state_groups(root: ET.Element) -> dict[str, ET.Element]:
    groups = [g for g in root.iter(f"{NS}g") if "data-state" in g.attrib]
    names = Counter(g.attrib["data-state"] for g in groups)
    assert all(n == 1 for n in names.values()), names
    return {g.attrib["data-state"]: g for g in groups}


def outer_rect(group: ET.Element) -> Rect:
    r = group.find(f"{NS}rect")
    assert r is not None
    x, y, w, h = (float(r.attrib[k]) for k in ("x", "y", "width", "height"))
    return (x, y, x + w, y + h)


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda wf: wf.name)
def test_every_state_is_drawn_once_and_no_boxes_overlap(wf: Workflow) -> None:
    root = parse(pathway_svg(wf))
    groups = state_groups(root)
    assert set(groups) == {s.name for s in wf.states}
    boxes = [outer_rect(g) for g in groups.values()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    vb = [float(v) for v in root.attrib["viewBox"].split()]
    assert all(vb[0] <= b[0] and b[2] <= vb[0] + vb[2] and vb[1] <= b[1] and b[3] <= vb[1] + vb[3] for b in boxes)
    for s in wf.states:  # final states have a double border: a second rect inside the first
        assert len(groups[s.name].findall(f"{NS}rect")) == (2 if s.final else 1)


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda wf: wf.name)
def test_every_edge_is_drawn_once_with_its_trigger(wf: Workflow) -> None:
    root = parse(pathway_svg(wf))
    drawn = Counter(
        (g.attrib["data-source"], g.attrib["data-dest"], g.attrib["data-trigger"])
        for g in root.iter(f"{NS}g") if "data-trigger" in g.attrib
    )
    expected = Counter((e.source, e.dest, e.trigger) for e in edges(wf))
    assert drawn == expected
    labels = set(texts(root))
    assert {e.trigger for e in edges(wf)} <= labels
    for g in root.iter(f"{NS}g"):
        if "data-trigger" in g.attrib:
            path = g.find(f"{NS}path")
            assert path is not None and path.attrib["marker-end"].startswith("url(#")
            title = g.find(f"{NS}title")
            assert title is not None and g.attrib["data-trigger"] in (title.text or "")
    markers = [m.attrib["id"] for m in root.iter(f"{NS}marker")]
    assert markers and all(f"url(#{markers[0]})" == p.attrib["marker-end"]
                           for p in root.iter(f"{NS}path") if "marker-end" in p.attrib)


def test_edges_going_back_up_are_dashed_and_forward_ones_solid() -> None:
    root = parse(pathway_svg(KAP_PATHWAY))
    dashed = {(g.attrib["data-source"], g.attrib["data-dest"], g.attrib["data-trigger"]): "stroke-dasharray" in p.attrib
              for g in root.iter(f"{NS}g") if "data-trigger" in g.attrib for p in g.iter(f"{NS}path")}
    assert dashed[("on_hold", "ready_for_kap", "resume")]
    assert dashed[("evaluation_booked", "inquiry", "release_evaluation")]
    assert not dashed[("inquiry", "evaluation_booked", "book_evaluation")]
    assert not dashed[("ready_for_kap", "withdrawn", "withdraw")]


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda wf: wf.name)
def test_the_current_state_and_only_it_is_marked(wf: Workflow) -> None:
    names = [s.name for s in wf.states]
    current, visited = names[2], names[:2]
    root = parse(pathway_svg(wf, current=current, visited=visited))
    groups = state_groups(root)
    marked = {n for n, g in groups.items() if any("here" in "".join(x.itertext()) for x in g.iter(f"{NS}text"))}
    thick = {n for n, g in groups.items() if float(g.find(f"{NS}rect").attrib["stroke-width"]) >= 3}  # type: ignore[union-attr]
    assert marked == thick == {current}
    assert {n for n, g in groups.items() if g.get("data-current") == "true"} == {current}
    fills = {n: g.find(f"{NS}rect").attrib["fill"] for n, g in groups.items()}  # type: ignore[union-attr]
    plain = fills[names[-1]]
    assert all(fills[v] != plain for v in visited) and fills[current] != plain
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert title is not None and desc is not None
    assert title.text == f"{wf.name} v{wf.version}: pathway, current state {current}"
    assert f"{current} (current)" in (desc.text or "")
    assert [n for n in names if n in (desc.text or "")] == names
    order = [(desc.text or "").index(n) for n in (wf.initial,)]
    assert order == [min((desc.text or "").index(n) for n in names)]


def test_accessible_and_scalable() -> None:
    root = parse(pathway_svg(KAP_PATHWAY, current="dosing"))
    assert root.attrib["role"] == "img"
    ids = root.attrib["aria-labelledby"].split()
    found = {e.tag: e for e in root.iter() if e.get("id") in ids}
    assert set(found) == {f"{NS}title", f"{NS}desc"}
    assert "dosing" in (found[f"{NS}title"].text or "")
    assert root.attrib["viewBox"].split()[2:] == [root.attrib["width"], root.attrib["height"]]
    assert root.attrib["preserveAspectRatio"]


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda wf: wf.name)
def test_no_style_no_script_no_xml_declaration(wf: Workflow) -> None:
    drawn = pathway_svg(wf, current=wf.initial)
    assert drawn.startswith("<svg ") and "<?xml" not in drawn
    root = parse(drawn)
    for e in root.iter():
        assert e.tag not in (f"{NS}style", f"{NS}script", f"{NS}foreignObject")
        assert "style" not in e.attrib
        assert not any(k.startswith("on") for k in e.attrib)
    assert "style=" not in drawn and "<style" not in drawn


def awkward_workflow() -> Workflow:
    staff = frozenset({"staff"})
    return Workflow(
        name="odd<&>\"name", version="1'2", initial="a<b",
        states=(State("a<b"), State("c&d"), State("e>\"f'", final=True)),
        transitions=(
            Transition("go", ("a<b",), "c&d", staff),
            Transition("back", ("c&d",), "a<b", staff),
            Transition("end", ("c&d", "a<b"), "e>\"f'", staff),
        ),
        roles=staff, guards={}, facts={"intake": FactKind(FactSpec("intake", (Text("note"),)), staff)},
        thresholds={}, intake_fact="intake",
    )


def test_text_is_escaped() -> None:
    wf = awkward_workflow()
    drawn = pathway_svg(wf, current="c&d", visited=["a<b"])
    root = parse(drawn)
    assert set(state_groups(root)) == {"a<b", "c&d", "e>\"f'"}
    assert "c&d" in texts(root) and "a<b" in texts(root)
    title = root.find(f"{NS}title")
    assert title is not None and title.text == "odd<&>\"name v1'2: pathway, current state c&d"
    assert "<b" not in drawn.replace("<b ", "")  # no raw '<' from a name
    ids = root.attrib["aria-labelledby"].split()
    assert all(i.replace("-", "").isalnum() for i in ids)


def test_an_unknown_current_state_is_refused() -> None:
    with pytest.raises(ValueError, match="no_such_state"):
        pathway_svg(KAP_PATHWAY, current="no_such_state")


def test_svg_is_the_pure_drawing_without_graphviz() -> None:
    drawn = svg(KAP_PATHWAY)
    assert isinstance(drawn, bytes)
    assert drawn.decode("utf-8") == pathway_svg(KAP_PATHWAY)
