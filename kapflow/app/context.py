"""What the application's commands and queries are given: the ports and the settings they act with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from kapflow.app.runner import CommandRunner
from kapflow.app.workflows import WorkflowSet
from kapflow.domain.billing import FeePolicy
from kapflow.domain.calendar import PracticeCalendar
from kapflow.domain.messages import Contacts
from kapflow.domain.superbill import Practice
from kapflow.ports import Clock, Store


@dataclass(frozen=True)
class AppContext:
    """The engine's parts, handed to each command and query as one parameter.

    ``store`` is for reads only: every write goes through ``runner``.
    """

    store: Store
    runner: CommandRunner
    workflows: WorkflowSet
    clock: Clock
    practice: PracticeCalendar  # the practice's zone, closed days and clock style
    contacts: Contacts
    calendar_sync: bool
    channels: frozenset[str] | None = None  # the channels the practice's worker delivers on (None: any)
    console_url: str | None = None  # the console's base URL: staff alerts link to the case's page
    urgent_channel: str | None = None  # where urgent reminders go first (a safety signal's alerts)
    # The practice's fees for a no-show or a late cancellation (none by default).
    fees: FeePolicy = field(default_factory=FeePolicy)
    # Who the practice and its clinicians are on billing documents (its settings; none set by default).
    documents: Practice = field(default_factory=lambda: Practice(None, {}))

    @property
    def timezone(self) -> tzinfo:
        """The practice's time zone."""
        return self.practice.zone
