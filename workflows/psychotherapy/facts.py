"""The facts the outpatient psychotherapy pathway records: the practice's shared clinical facts.

Nothing here is new: an inquiry, a payment, consent to treatment and its
withdrawal, PHQ-9 and GAD-7 scores, appointments and changes to them mean what
they mean in the KAP pathway (``kapflow.workflows.clinical_facts``). Only the
vocabulary is this pathway's own: the concerns an inquiry may name, the
appointment kinds and their lengths, the consent form's title. How long a
session lasted is not a fact anyone types: it is the time between the
therapist's start and completion of the session (see ``billing``).
"""

from __future__ import annotations

from kapflow.workflows.clinical_facts import APPOINTMENT_UPDATE as APPOINTMENT_UPDATE
from kapflow.workflows.clinical_facts import CONSENT_WITHDRAWN as CONSENT_WITHDRAWN
from kapflow.workflows.clinical_facts import PAYMENT as PAYMENT
from kapflow.workflows.clinical_facts import QUESTIONNAIRE as QUESTIONNAIRE
from kapflow.workflows.clinical_facts import appointment_spec, consent_spec, inquiry_spec

CONCERNS = (
    "depression", "anxiety", "ptsd", "emotional_trauma", "grief", "relationships", "stress", "other",
)

# Minutes each appointment kind lasts (default, allowed range). A session's default is the
# "therapy hour" of 53 minutes, the shortest that bills as 90837.
APPOINTMENT_MINUTES: dict[str, tuple[int, int, int]] = {
    "intake": (60, 45, 90),
    "psychotherapy_session": (53, 30, 90),
}

INQUIRY = inquiry_spec(CONCERNS, "a psychotherapy inquiry form: who asks, how to reach them, what brings them")
CONSENT = consent_spec("consent to psychotherapy treatment")
APPOINTMENT = appointment_spec(APPOINTMENT_MINUTES)

ALL_SPECS = (INQUIRY, PAYMENT, CONSENT, CONSENT_WITHDRAWN, QUESTIONNAIRE, APPOINTMENT, APPOINTMENT_UPDATE)
