"""The audit history's integrity: hash chains per case and their verification (``chain``)."""

from kapflow.audit.chain import GENESIS, AuditProblem, AuditReport, link_hash, verify_chain

__all__ = ["GENESIS", "AuditProblem", "AuditReport", "link_hash", "verify_chain"]
