"""Documents a practice hands to a client, rendered from plain views: a superbill and a Good Faith Estimate
as PDF (needs the ``pdf`` extra, fpdf2). The views and their checks are in ``kapflow.domain.billing_documents``."""

from __future__ import annotations

from kapflow.documents.billing_pdf import estimate_pdf, superbill_pdf

__all__ = ["estimate_pdf", "superbill_pdf"]
