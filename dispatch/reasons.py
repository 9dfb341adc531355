"""Why an order changed state when no person wrote the reason: slugs the apps translate
(`reason.<slug>`). A reason a person typed (a cancel note, an operator's words) is kept as written."""

OFFER_EXPIRED = "offer_expired"
SLA_DEADLINE_PASSED = "sla_deadline_passed"
NO_TECHNICIAN_ACCEPTED = "no_technician_accepted"
PREEMPTED_BY_EMERGENCY = "preempted_by_emergency"
NO_ACCESS = "no_access"
CARD_DECLINED = "card_declined"

MACHINE_REASONS = (OFFER_EXPIRED, SLA_DEADLINE_PASSED, NO_TECHNICIAN_ACCEPTED, PREEMPTED_BY_EMERGENCY, NO_ACCESS,
                   CARD_DECLINED)
