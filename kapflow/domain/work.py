"""A staff member's work: what waits on them, one item per thing to do, with the reason in words.

Pure data. The application's query (``kapflow.app.work``) builds the items from what the workflows
declare: their staff reminders that came due and still hold, the appointments of the day with the
readiness of the trigger each leads to, messages whose delivery failed for good. Sentences carry no
clinical fact the role may not read (``Workflow.readable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

APPOINTMENT_TODAY = "appointment_today"
"""The code of an appointment of the signed-in clinician today (practice time)."""
APPOINTMENT_TO_CONFIRM = "appointment_to_confirm"
"""The code of an appointment in the next days whose trigger is still blocked (front desk's list)."""
DELIVERY_FAILED = "delivery_failed"
"""The code of a message whose delivery failed for good."""
VISITS_NOT_BILLED = "visits_not_billed"
"""The code of a case with visits billed to insurance that are on no superbill yet (billing's list)."""
BALANCE_DUE = "balance_due"
"""The code of a case whose ledger has a balance due (billing's list)."""
READY = "ready"
"""What an appointment's readiness says when nothing blocks the trigger it leads to."""


@dataclass(frozen=True)
class WorkAppointment:
    """The appointment a work item is about."""

    id: str
    kind: str
    starts_at: datetime
    minutes: int
    clinician: str
    trigger: str | None  # the trigger it leads to (its readiness is that trigger's blockers), if any


@dataclass(frozen=True)
class WorkItem:
    """One thing that waits on a person: on which case, why (``code``, stable; ``sentence``, words to act on),
    since when, and for an appointment, which one and what still blocks it (``blockers``: (code, sentence)).

    ``code`` is the reminder's name for a staff reminder, ``APPOINTMENT_TODAY`` or ``APPOINTMENT_TO_CONFIRM``
    for an appointment, ``DELIVERY_FAILED`` for a message not delivered.
    """

    case_id: str
    code: str
    sentence: str
    since: datetime
    appointment: WorkAppointment | None = None
    blockers: tuple[tuple[str, str], ...] = ()

    @property
    def ready(self) -> bool:
        """Nothing blocks the appointment's trigger (always False for an item not about an appointment)."""
        return self.appointment is not None and not self.blockers

    @property
    def order(self) -> tuple[datetime, str, str]:
        """Oldest first; ties by case and code, so the list is the same on every read."""
        return (self.since, self.case_id, self.code)


def readiness_text(blockers: tuple[tuple[str, str], ...]) -> str:
    """An appointment's readiness in words: ``ready``, or the blockers' sentences joined."""
    return READY if not blockers else "; ".join(sentence for _, sentence in blockers)
