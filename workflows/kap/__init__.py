"""The Ketamine-Assisted Psychotherapy pathway: ``from kapflow.workflows.kap import KAP_PATHWAY``."""

from kapflow.workflows.kap.definition import KAP_PATHWAY, ROLES, THRESHOLDS, build_kap_workflow

__all__ = ["KAP_PATHWAY", "ROLES", "THRESHOLDS", "build_kap_workflow"]
