"""The KAP practice's fee schedule, from its own page (``seed-kap-faq.txt``, "the Process and cost").

| service | code | fee | insurance |
|---|---|---|---|
| prescriber evaluation (nurse practitioner), 60 min | 90792 | $250, one time, due before it | no (self-pay) |
| intention-setting psychotherapy, 60 min | 90837 | $165 | out of network |
| KAP session: ketamine support and monitoring | none | no cost: no charge line | no |
| KAP session: integration psychotherapy, 60 min | 90837 | $165 | out of network |
| integration session, 60 min | 90837 | $165 | out of network |

Psychotherapy is coded by the minutes it lasted when they are recorded (``billed_minutes`` on the
visit's completion or attendance): 90832 from 16 minutes, 90834 from 38, 90837 from 53; shorter is not
billable. The page gives the fee of the 60-minute session only; the shorter bands' fees below are the
practice's to set (a new workflow version), here in proportion.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kapflow.domain.billing import Billing, ClientRecords, EstimateRule, FactNames, Service, TimeBand, VisitBilling
from kapflow.domain.case import CaseFacts
from kapflow.workflows.clinical_facts import CLIENT_ADDRESS_LINES

PSYCHOTHERAPY_BANDS = (
    TimeBand(16, "90832", Decimal("85.00")),
    TimeBand(38, "90834", Decimal("125.00")),
    TimeBand(53, "90837", Decimal("165.00")),
)

SERVICES = (
    Service("prescriber_evaluation", "Prescriber evaluation", Decimal("250.00"), code="90792",
            purpose="evaluation_fee"),
    Service("intention_setting", "Intention-setting psychotherapy", Decimal("165.00"), code="90837",
            insurance=True, time_bands=PSYCHOTHERAPY_BANDS, purpose="psychotherapy"),
    Service("ketamine_support", "Ketamine support and monitoring", Decimal("0.00"), minutes=75),
    Service("integration_psychotherapy", "Integration psychotherapy (KAP session)", Decimal("165.00"),
            code="90837", insurance=True, time_bands=PSYCHOTHERAPY_BANDS, purpose="psychotherapy"),
    Service("integration_session", "Integration session psychotherapy", Decimal("165.00"), code="90837",
            insurance=True, time_bands=PSYCHOTHERAPY_BANDS, purpose="psychotherapy"),
)

VISITS = (
    VisitBilling("evaluation", ("prescriber_evaluation",), completes=("find_suitable", "find_ineligible")),
    VisitBilling("intention_setting", ("intention_setting",), completes=("complete_intention_setting",)),
    # The integration psychotherapy follows the dosing: the visit is complete when it is.
    VisitBilling("kap_session", ("ketamine_support", "integration_psychotherapy"),
                 completes=("complete_integration",)),
    VisitBilling("integration_session", ("integration_session",), completes=("complete_integration_session",)),
)

NO_CHARGE_NOTE = ("The ketamine medication support and monitoring portion of each KAP session was provided at no "
                  "charge and is not billed; only the psychotherapy is.")

def expected_services(plan: Mapping[str, Any], facts: CaseFacts) -> tuple[tuple[str, int], ...]:
    """What a plan set or extended leads the client to expect: each KAP session's two parts, the integration
    sessions the plan names, and the intention-setting session when a plan is set before it took place."""
    if plan["action"] not in ("set", "extend"):
        return ()
    sessions = int(plan["sessions"])
    expected = []
    if plan["action"] == "set" and not facts.moves_by("complete_intention_setting"):
        expected.append(("intention_setting", 1))
    expected += [("ketamine_support", sessions), ("integration_psychotherapy", sessions)]
    if plan.get("integration_sessions"):
        expected.append(("integration_session", int(plan["integration_sessions"])))
    return tuple(expected)


def _basis(plan: Mapping[str, Any]) -> str:
    count = int(plan["sessions"])
    sessions = f"{count} KAP session{'s' if count != 1 else ''}"
    return f"treatment plan set: {sessions}" if plan["action"] == "set" else f"treatment plan extended by {sessions}"


KAP_BILLING = Billing(
    services={s.name: s for s in SERVICES},
    visits=VISITS,
    facts=FactNames(charge="charge", payment="payment", adjustment="billing_adjustment"),
    no_charge_note=NO_CHARGE_NOTE,
    clerk="billing",
    issuers=frozenset({"billing"}),
    # Every client of this out-of-network practice is self-pay or out of network: each gets an estimate.
    estimate=EstimateRule("treatment_plan", "good_faith_estimate", expected_services, _basis),
    records=ClientRecords(birth_date="date_of_birth", phone="phone", address="client_address",
                          address_lines=CLIENT_ADDRESS_LINES, diagnosis="diagnosis", diagnosis_date="diagnosed_on",
                          superbill="superbill_issued"),
)
