"""Reads of a case as the access log keeps them: who read, in which role, through which service, which case,
which view of it, and when. Pure data and its rules.

A record holds ids, a role and a view name only, never what was read: the access log carries no
protected health information, so an auditor may be shown it whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from kapflow.domain.errors import InvalidInput

MAX_ACCESSES = 10_000
"""The most records one query returns: narrow it by time (``since``/``until``) for more."""

_VIEW = re.compile(r"[a-z][a-z0-9_.-]{0,49}")
_ROLE_LENGTH = 50


def check_view(view: object) -> str:
    """A view's name (``case``, ``facts``, ``history``, ``triggers``): lowercase letters, digits and ``_.-``."""
    if not isinstance(view, str) or not _VIEW.fullmatch(view):
        raise InvalidInput("view: must be a view's name: 1-50 lowercase letters, digits and _.- starting with a "
                           "letter, e.g. 'history'", field="view")
    return view


def check_role_length(role: str) -> str:
    if len(role) > _ROLE_LENGTH:
        raise InvalidInput(f"actor.role: at most {_ROLE_LENGTH} characters", field="actor.role")
    return role


def check_window(since: datetime | None, until: datetime | None) -> None:
    """Both bounds are instants (time-zone aware), and ``since`` comes before ``until``."""
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and (not isinstance(bound, datetime) or bound.utcoffset() is None):
            raise InvalidInput(f"{name}: must be a time-zone aware datetime", field=name)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since: must come before until", field="since")


def check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_ACCESSES:
        raise InvalidInput(f"limit: must be a whole number from 1 to {MAX_ACCESSES}", field="limit")
    return limit


@dataclass(frozen=True)
class AccessRecord:
    """One read of one case: ``actor`` in ``role`` read its ``view`` at ``at``; ``via``: the service (an API
    key's name) that read it for them, if one did."""

    at: datetime
    actor: str
    role: str
    via: str | None
    case_id: str
    view: str
    id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "role": self.role, "via": self.via,
                "case_id": self.case_id, "view": self.view}
