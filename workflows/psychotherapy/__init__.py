"""The outpatient psychotherapy pathway: ``from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY``."""

from kapflow.workflows.psychotherapy.definition import (
    PSYCHOTHERAPY_PATHWAY,
    ROLES,
    THRESHOLDS,
    build_psychotherapy_workflow,
)

__all__ = ["PSYCHOTHERAPY_PATHWAY", "ROLES", "THRESHOLDS", "build_psychotherapy_workflow"]
