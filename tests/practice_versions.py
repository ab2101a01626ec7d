"""Workflow versions a test practice deploys, and hand-made variants of the KAP pathway.

Importable as ``practice_versions`` (tests/ is on sys.path), so a settings
file can name ``practice_versions:KAP_V2``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kapflow.domain.workflow import Guard, State, Transition, Workflow
from kapflow.workflows.kap import KAP_PATHWAY

KAP_V2 = KAP_PATHWAY.with_thresholds("2", max_systolic=135, max_diastolic=85)
"""The practice's version 2: dosing held above 135/85 instead of 140/90."""

NOT_A_WORKFLOW = "a string, not a Workflow"


def variant(version: str, base: Workflow = KAP_PATHWAY, **changes: Any) -> Workflow:
    """``base`` as a new version with fields replaced (validated again)."""
    return replace(base, version=version, guards=dict(base.guards), facts=dict(base.facts),
                   **changes)


def without_state(name: str, version: str, base: Workflow = KAP_PATHWAY) -> Workflow:
    """``base`` without state ``name``: transitions into it go, and it leaves every transition's sources."""
    transitions = []
    for t in base.transitions:
        sources = tuple(s for s in t.sources if s != name)
        if t.dest != name and sources:
            transitions.append(replace(t, sources=sources))
    states = tuple(s for s in base.states if s.name != name)
    return variant(version, base, states=states, transitions=tuple(transitions))


def with_transition(trigger: str, version: str, base: Workflow = KAP_PATHWAY, **changes: Any) -> Workflow:
    """``base`` with the transition of ``trigger`` changed (roles, guards, ...)."""
    transitions = tuple(replace(t, **changes) if t.trigger == trigger else t for t in base.transitions)
    return variant(version, base, transitions=transitions)


def with_guard(trigger: str, name: str, guard: Guard, version: str, base: Workflow = KAP_PATHWAY) -> Workflow:
    """``base`` with guard ``name`` added to the transition of ``trigger``."""
    transitions = tuple(replace(t, guards=(*t.guards, name)) if t.trigger == trigger else t for t in base.transitions)
    return replace(base, version=version, transitions=transitions, guards={**base.guards, name: guard},
                   facts=dict(base.facts))


def with_state(state: State, version: str, base: Workflow = KAP_PATHWAY,
               transitions: tuple[Transition, ...] | None = None) -> Workflow:
    """``base`` with state ``state`` replacing the one of its name (and optionally other transitions)."""
    states = tuple(state if s.name == state.name else s for s in base.states)
    return variant(version, base, states=states, transitions=transitions or base.transitions)
