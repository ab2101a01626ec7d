"""An example practice: synthetic clients driven through its two pathways on a manual clock.

Four clients are in the KAP pathway; one, not in KAP, has an outpatient
psychotherapy episode (the practice's second workflow).

The scenario returns data (what each client shows, its key moments, its audit
history and the audit verification); ``kapflow.cli`` renders it. Every name,
date and number here is synthetic. A ``ManualClock`` moves through the story,
so the demo is deterministic and never waits: sessions keep to the pathway's
2-per-7-days and 120-minute observation rules because the clock is advanced
past them, and the one attempt that breaks each rule is shown being refused.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from kapflow.app.engine import Engine
from kapflow.audit.chain import AuditReport
from kapflow.bootstrap import build_dispatcher, build_engine
from kapflow.clocks import ManualClock, SteppingClock
from kapflow.config import CalendarSettings, Settings, parse_settings
from kapflow.domain.billing import money_text
from kapflow.domain.case import Actor, AuditEvent
from kapflow.domain.errors import DocumentIncomplete, InvalidInput, TransitionBlocked
from kapflow.domain.workflow import Workflow
from kapflow.workflows.kap import KAP_PATHWAY
from kapflow.workflows.measures import answered
from kapflow.workflows.psychotherapy import PSYCHOTHERAPY_PATHWAY

__all__ = [
    "DEMO_SETTINGS", "DEMO_START", "DEMO_WORKFLOWS", "ClientStory", "DemoRun", "Moment", "SentMessage", "demo_engine",
    "run_demo",
]

DEMO_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""A Monday morning: the demo practice's first day."""

DEMO_WORKFLOWS: tuple[Workflow, ...] = (KAP_PATHWAY, PSYCHOTHERAPY_PATHWAY)
"""The practice's pathways: KAP, and outpatient psychotherapy for clients not in KAP."""

DEMO_SETTINGS = """\
# The demo practice's settings: both of its pathways, so its cases can be read and moved.
workflows = [
  "kapflow.workflows.kap:KAP_PATHWAY",
  "kapflow.workflows.psychotherapy:PSYCHOTHERAPY_PATHWAY",
]

# Who the practice and its clinicians are on superbills and good faith estimates (all synthetic).
[billing.practice]
name = "Sample Cornerstone Practice (demo)"
address = ["100 Example Way, Suite 2", "Springfield, OR 97477"]
phone = "(555) 010-2000"
tax_id = "12-3456789"
npi = "1245319599"

[billing.clinicians.np-demo]
name = "Rowan Demo-Sample"
credentials = "PMHNP-BC"
npi = "1234567893"

[billing.clinicians.th-demo]
name = "Jordan Demo-Sample"
credentials = "LCSW"
npi = "1316081219"
"""
"""A settings file (TOML) loading ``DEMO_WORKFLOWS``, for the commands run on the demo's database after it."""

CLIENT = Actor("client-portal", "client")
FRONT_DESK = Actor("fd-demo", "front_desk")
PRESCRIBER = Actor("np-demo", "prescriber")
THERAPIST = Actor("th-demo", "therapist")
BILLING = Actor("billing-demo", "billing")


@dataclass(frozen=True)
class Moment:
    """Something worth pointing out in a client's story, at the time it happened."""

    at: datetime
    text: str


@dataclass(frozen=True)
class ClientStory:
    """One synthetic client: what their case shows, its key moments and its audit history."""

    client: str
    case_id: str
    headline: str
    state: str
    moments: tuple[Moment, ...]
    history: tuple[AuditEvent, ...]


@dataclass(frozen=True)
class SentMessage:
    """A reminder the demo's worker delivered (to the local mailbox)."""

    at: datetime
    audience: str
    recipient: str
    subject: str
    reminder: str


@dataclass(frozen=True)
class DemoRun:
    """Every client's story, the reminders delivered, and the verification of the audit history."""

    start: datetime
    stories: tuple[ClientStory, ...]
    audit: AuditReport
    messages: tuple[SentMessage, ...] = ()


@dataclass
class _Story:
    """Collects a client's key moments while the scenario drives their case."""

    engine: Engine
    clock: ManualClock
    client: str
    headline: str
    case_id: str = ""
    moments: list[Moment] = field(default_factory=list)
    # Names the staff of a run on a database that holds earlier runs (--force): its times are theirs, and
    # a clinician or room booked twice at once would be refused.
    staff_suffix: str = ""

    def later(self, days: int, hour: int) -> datetime:
        """Move the clock to ``hour`` o'clock (UTC) ``days`` days on, so appointments fall in office hours."""
        return _later(self.clock, days, hour)

    def note(self, text: str) -> None:
        self.moments.append(Moment(self.clock.now(), text))

    def record(self, kind: str, data: Mapping[str, Any], actor: Actor) -> None:
        self.engine.record(self.case_id, kind, data, actor=actor)

    def book(self, kind: str, starts: datetime, clinician: Actor, room: str | None = None) -> None:
        """Book an appointment of ``kind`` at ``starts`` with ``clinician`` (and in ``room``)."""
        data = {"kind": kind, "starts_at": starts.isoformat(), "clinician": clinician.id + self.staff_suffix}
        if room is not None:
            data["room"] = room + self.staff_suffix
        self.record("appointment", data, FRONT_DESK)

    def fire(self, trigger: str, actor: Actor, data: Mapping[str, Any] | None = None, *, note: str = "") -> None:
        outcome = self.engine.fire(self.case_id, trigger, actor=actor, data=data)
        self.note(f"{note or trigger}: {outcome.from_state} -> {outcome.state}")

    def refused(self, trigger: str, actor: Actor, *, note: str = "") -> None:
        """Fire a trigger the scenario expects the guards to refuse, and note every blocker."""
        try:
            self.engine.fire(self.case_id, trigger, actor=actor)
        except TransitionBlocked as blocked:
            for b in blocked.blockers:
                self.note(f"{note or trigger} refused: {b.code}: {b.message}")
            return
        raise RuntimeError(f"the demo expected {trigger!r} to be refused on {self.case_id}")

    def finish(self) -> ClientStory:
        return ClientStory(
            client=self.client,
            case_id=self.case_id,
            headline=self.headline,
            state=self.engine.case(self.case_id).state,
            moments=tuple(self.moments),
            history=tuple(self.engine.history(self.case_id)),
        )


def _later(clock: ManualClock, days: int, hour: int) -> datetime:
    now = clock.now()
    target = datetime.combine(now.date() + timedelta(days=days), time(hour), tzinfo=UTC)
    return clock.advance(target - now)


DEMO_CONTACTS = {
    "front_desk": {"email": "front-desk@practice.example"},
    "therapist": {"email": "therapists@practice.example"},
    "prescriber": {"email": "prescriber@practice.example"},
}


def demo_engine(
    url: str | None = None, start: datetime = DEMO_START, *, mail_folder: Path | None = None
) -> tuple[Engine, ManualClock]:
    """An engine on ``url`` whose clock the demo moves (the demo never reads the wall clock).

    With ``mail_folder``, a worker runs every 15 simulated minutes while the
    story unfolds, delivering reminders into a Maildir there and calendar
    events (.ics files) into its ``calendar`` subfolder.
    """
    billing = parse_settings(tomllib.loads(DEMO_SETTINGS), "the demo's settings", {}).billing
    if mail_folder is None:
        clock = ManualClock(start)
        return build_engine(url, DEMO_WORKFLOWS, clock=clock, settings=Settings(billing=billing)), clock
    stepping = SteppingClock(start)
    settings = Settings(
        contacts=DEMO_CONTACTS, maildir=str(mail_folder),
        calendar=CalendarSettings(ics_folder=str(mail_folder / "calendar")), billing=billing,
    )
    engine = build_engine(url, DEMO_WORKFLOWS, clock=stepping, settings=settings)
    dispatcher = build_dispatcher(engine, settings, worker_id="demo-worker")
    dispatcher.check()
    stepping.on_step = dispatcher.run_until_idle
    return engine, stepping


def run_demo(engine: Engine, clock: ManualClock, *, allow_existing: bool = False) -> DemoRun:
    """Drive every synthetic client through their part of the pathway; verify the audit history."""
    existing = engine.count_cases()
    if existing and not allow_existing:
        raise InvalidInput(
            f"the database already holds {existing} cases; run the demo on a new database "
            "(kapflow --db sqlite:///demo.db demo) or pass --force",
            field="db",
        )
    start = clock.now()
    stories = []
    for number, (workflow, client, headline, scene) in enumerate(_SCENES, start=1):
        story = _Story(engine, clock, client, headline, staff_suffix=f"-{existing}" if existing else "")
        story.case_id = engine.open_case(_inquiry(number, client), actor=FRONT_DESK, workflow=workflow).case_id
        story.note("inquiry received: case opened")
        scene(story)
        stories.append(story.finish())
        _later(clock, 1, 9)
    if isinstance(clock, SteppingClock) and clock.on_step is not None:
        clock.on_step()  # deliver what fell due at the very end
    return DemoRun(start, tuple(stories), engine.verify_audit(), _sent(engine))


DEMO_ACCOUNTS = (
    ("demo-front-desk", "front_desk"), ("demo-prescriber", "prescriber"), ("demo-therapist", "therapist"),
    ("demo-billing", "billing"), ("demo-auditor", "auditor"),
)
"""The console's accounts the demo makes: one per staff role, and the auditor."""


@dataclass(frozen=True)
class DemoAccount:
    name: str
    role: str
    passphrase: str  # random, shown once by the demo; only its argon2id hash is stored


def make_demo_accounts(engine: Engine) -> tuple[DemoAccount, ...]:
    """A local console account per role of ``DEMO_ACCOUNTS``, each with a new random passphrase."""
    made = []
    existing = {user.name for user in engine.list_users()}
    for name, role in DEMO_ACCOUNTS:
        if name in existing:  # a second demo on the same database (--force) keeps the first one's accounts
            continue
        passphrase = "-".join(secrets.token_hex(3) for _ in range(4))  # 96 random bits, easy to type
        engine.add_user(name, role, passphrase, totp=False, actor=FRONT_DESK)
        made.append(DemoAccount(name, role, passphrase))
    return tuple(made)


def _sent(engine: Engine) -> tuple[SentMessage, ...]:
    rows = [r for r in engine.outbox() if r["status"] == "sent" and r["channel"] != "calendar"]
    return tuple(
        SentMessage(datetime.fromisoformat(r["sent_at"]), r["audience"], r["recipient"], r["subject"],
                    r["key"].split(":")[-2])
        for r in sorted(rows, key=lambda r: (r["sent_at"], r["id"]))
    )


_CONCERNS = (
    ["depression"], ["anxiety"], ["treatment_resistant_depression", "ptsd"], ["emotional_trauma"],
    ["anxiety", "stress"],
)


def _inquiry(number: int, client: str) -> dict[str, Any]:
    first, last = client.split(" ", 1)
    return {
        "first_name": first,
        "last_name": last,
        "date_of_birth": f"198{number}-0{number}-1{number}",
        "email": f"sample.{last.lower()}@example.org",
        "phone": f"+1 555 010 010{number}",  # 555-01xx numbers are reserved for fiction
        "concerns": _CONCERNS[number - 1],
        "message": "Synthetic demo inquiry.",
    }


def _evaluation_appointment(story: _Story) -> datetime:
    starts = datetime.combine(story.clock.now().date() + timedelta(days=2), time(10), tzinfo=UTC)
    story.book("evaluation", starts, PRESCRIBER)
    return starts


def _book_evaluation(story: _Story) -> datetime:
    starts = _evaluation_appointment(story)
    story.fire("book_evaluation", FRONT_DESK)
    return starts


def _evaluate(story: _Story) -> None:
    """Book the evaluation, take the fee, and start the evaluation on the appointment's day."""
    starts = _book_evaluation(story)
    story.record("payment", {"amount": "250.00", "purpose": "evaluation_fee"}, FRONT_DESK)
    story.note("$250 evaluation fee paid")
    story.clock.set(starts)
    story.fire("start_evaluation", PRESCRIBER)


def _unpaid_fee(story: _Story) -> None:
    starts = _book_evaluation(story)
    story.clock.set(starts)
    story.refused("start_evaluation", PRESCRIBER)
    story.clock.advance(minutes=31)
    if story.engine.case(story.case_id).state == "inquiry":  # a worker is running: the timer fired
        story.note("still unpaid 30 minutes after the start: the worker released the booking")


def _ineligible(story: _Story) -> None:
    _evaluate(story)
    story.record("screening", {"exclusions": ["uncontrolled_hypertension"], "flags": []}, PRESCRIBER)
    story.note("screening recorded a hard exclusion")
    story.refused("find_suitable", PRESCRIBER)
    reason = "hard exclusion at screening: uncontrolled hypertension; referred to primary care"
    story.fire("find_ineligible", PRESCRIBER, {"reason": reason}, note=f"find_ineligible ({reason})")


def _full_plan(story: _Story) -> None:
    _evaluate(story)
    story.record("diagnosis", {"code": "F33.1", "diagnosed_on": story.clock.now().date().isoformat()}, PRESCRIBER)
    story.record("screening", {"exclusions": [], "flags": []}, PRESCRIBER)
    story.fire("find_suitable", PRESCRIBER)
    story.record("client_address", {"street": "45 Sample Street", "unit": "Apt 2B", "city": "Eugene", "state": "OR",
                                    "postal_code": "97401"}, CLIENT)
    _prepare_treatment(story, sessions=3)
    story.later(2, 9)
    _kap_session(story, 1, early_discharge=True)
    story.later(3, 9)
    _kap_session(story, 2)
    # Five days after the first session is inside its 7-day window: the third must wait.
    story.later(2, 9)
    _pre_dose_checklist(story)
    story.refused("start_kap_session", THERAPIST, note="KAP session 3")
    story.later(2, 10)
    _kap_session(story, 3)
    story.later(4, 10)
    _integration_session(story)
    story.fire("complete_treatment", PRESCRIBER)
    _bill(story)


def _bill(story: _Story) -> None:
    """A psychotherapy payment, then the superbill of the whole plan for the client's insurer."""
    story.record("payment", {"amount": "330.00", "purpose": "psychotherapy", "method": "card"}, FRONT_DESK)
    books = story.engine.ledger(story.case_id)
    story.note(f"ledger: {money_text(books.charged)} charged ({len(books.charges)} lines, none for the ketamine "
               f"portions), {money_text(books.paid)} paid, {money_text(books.balance)} due")
    insured = [c for c in books.charges if c.insurance]
    try:
        issued = story.engine.issue_superbill(story.case_id, first=insured[0].date_of_service,
                                              last=insured[-1].date_of_service, actor=BILLING)
    except DocumentIncomplete as incomplete:  # a run beside earlier ones: its clinicians are not in the settings
        story.note(f"no superbill: {incomplete.missing[0]}")
        return
    story.note(f"superbill issued: {len(issued.record.lines)} psychotherapy lines for the client's insurer")


def _prepare_treatment(story: _Story, sessions: int) -> None:
    today = story.clock.now().date()
    story.record(
        "prescription",
        {"prescriber": "NP Demo Sample", "issued_on": today.isoformat(),
         "expires_on": (today + timedelta(days=180)).isoformat()},
        PRESCRIBER,
    )
    story.record("consent", {"form_version": "2026-01", "signed_on": today.isoformat()}, THERAPIST)
    story.record("treatment_plan", {"action": "set", "sessions": sessions}, PRESCRIBER)
    story.note(f"prescription, consent and a treatment plan of {sessions} KAP sessions recorded, with its good "
               "faith estimate")
    story.later(1, 10)
    story.book("intention_setting", story.clock.now(), THERAPIST)
    story.fire("start_intention_setting", THERAPIST)
    story.clock.advance(minutes=60)
    story.fire("complete_intention_setting", THERAPIST, {"intentions": "feel grounded; reconnect with friends"})


def _pre_dose_checklist(story: _Story) -> None:
    """Questionnaires, pre-dose vitals, fasting, escort and the clinician present."""
    for instrument, score in (("PHQ-9", 16), ("GAD-7", 11)):  # answered item by item; the totals are computed
        story.record("questionnaire", answered(instrument, score), CLIENT)
    story.record("vitals", {"phase": "pre_dose", "systolic": 124, "diastolic": 80}, THERAPIST)
    story.record("fasting", {"attested": True, "hours": 6}, CLIENT)
    story.record("escort", {"name": "Escort Sample", "phone": "+1 555 010 0199"}, FRONT_DESK)
    story.record("clinician_present", {"clinician": "Therapist Demo Sample, LCSW"}, THERAPIST)


def _kap_session(story: _Story, number: int, *, early_discharge: bool = False) -> None:
    """One KAP session: checklist, dosing, 120 minutes' observation, discharge, integration."""
    label = f"KAP session {number}"
    starts = story.clock.now()
    story.book("kap_session", starts, THERAPIST, room="dosing-1")  # a room and its therapist for two hours
    _pre_dose_checklist(story)
    story.fire("start_kap_session", THERAPIST, note=label)
    if early_discharge:
        story.clock.advance(minutes=60)
        story.refused("discharge", THERAPIST, note=f"{label} discharge after 60 minutes")
        story.clock.advance(minutes=60)
    else:
        story.clock.advance(minutes=120)
    story.record("vitals", {"phase": "post_dose", "systolic": 118, "diastolic": 76}, THERAPIST)
    story.record("discharge_check", {"stable": True, "no_driving_acknowledged": True}, THERAPIST)
    story.fire("discharge", THERAPIST, note=f"{label} discharge after 120 minutes")
    story.clock.advance(minutes=60)
    story.fire("complete_integration", THERAPIST, note=f"{label} integration psychotherapy")


def _integration_session(story: _Story) -> None:
    starts = story.clock.now()
    story.book("integration_session", starts, THERAPIST)
    story.fire("start_integration_session", THERAPIST)
    story.clock.advance(minutes=60)
    story.fire("complete_integration_session", THERAPIST)


def _hold_and_resume(story: _Story) -> None:
    _book_evaluation(story)
    # The pause outlasts the booked evaluation: the front desk cancels it, then holds the case.
    story.record("appointment_update", {"appointment": "a1", "action": "cancel", "reason": "client paused"},
                 FRONT_DESK)
    story.note("evaluation cancelled: the client asked to pause")
    story.fire("hold", FRONT_DESK, {"reason": "client asked to pause for two weeks"})
    story.later(14, 9)
    story.fire("resume", FRONT_DESK)
    # The case is evaluation_booked again, with no evaluation booked: book a new one.
    starts = _evaluation_appointment(story)
    story.note("evaluation rebooked")
    story.record("payment", {"amount": "250.00", "purpose": "evaluation_fee"}, FRONT_DESK)
    story.note("$250 evaluation fee paid")
    story.clock.set(starts)
    story.fire("start_evaluation", PRESCRIBER)


def _checkin(story: _Story, phq9: int, gad7: int) -> None:
    for instrument, score in (("PHQ-9", phq9), ("GAD-7", gad7)):
        story.record("questionnaire", answered(instrument, score), CLIENT)


def _therapy_session(story: _Story, number: int) -> None:
    """A booked 53-minute psychotherapy session: a billable visit (90837)."""
    starts = story.later(7, 15)
    story.book("psychotherapy_session", starts, THERAPIST)
    story.fire("start_session", THERAPIST, note=f"session {number}")
    story.clock.advance(minutes=53)
    story.fire("complete_session", THERAPIST, note=f"session {number} (53 minutes)")


def _psychotherapy_episode(story: _Story) -> None:
    """Intake assessment, weekly sessions with a PHQ-9 and GAD-7 every 4, a planned discharge."""
    starts = datetime.combine(story.clock.now().date() + timedelta(days=2), time(14), tzinfo=UTC)
    story.book("intake", starts, THERAPIST)
    story.fire("book_intake", FRONT_DESK)
    story.record("consent", {"form_version": "2026-01", "signed_on": story.clock.now().date().isoformat()},
                 FRONT_DESK)
    _checkin(story, phq9=14, gad7=11)
    story.note("consent to treatment and baseline PHQ-9 and GAD-7 recorded")
    story.clock.set(starts)
    story.fire("start_intake", THERAPIST)
    story.clock.advance(minutes=60)
    story.fire("complete_intake", THERAPIST, {"goals": "sleep better; fewer panic spells"})
    for number in range(1, 5):
        _therapy_session(story, number)
    story.later(7, 15)
    story.refused("start_session", THERAPIST, note="session 5")
    _checkin(story, phq9=8, gad7=6)
    story.note("check-in questionnaires recorded after 4 sessions")
    story.fire("start_session", THERAPIST, note="session 5")
    story.clock.advance(minutes=53)
    story.fire("complete_session", THERAPIST, note="session 5 (53 minutes)")
    story.fire("discharge", THERAPIST, {"reason": "goals met; follow up as needed"}, note="planned discharge")


_SCENES: tuple[tuple[str, str, str, Callable[[_Story], None]], ...] = (
    ("kap", "Sample Client-One", "evaluation booked, fee unpaid: the evaluation cannot start, the slot is released",
     _unpaid_fee),
    ("kap", "Sample Client-Two", "a hard exclusion found at screening: recorded as ineligible", _ineligible),
    (
        "kap",
        "Sample Client-Three",
        "a full treatment plan: 3 KAP sessions, an integration session, treatment completed",
        _full_plan,
    ),
    ("kap", "Sample Client-Four", "put on hold while the evaluation was booked, then resumed", _hold_and_resume),
    (
        "psychotherapy",
        "Sample Client-Five",
        "outpatient psychotherapy (not KAP): intake, 5 sessions with a check-in after 4, planned discharge",
        _psychotherapy_episode,
    ),
)
