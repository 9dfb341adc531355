"""The order state machine, pure: (state, action, actor role) -> next state, or IllegalTransition."""

from dataclasses import dataclass

from dispatch.errors import IllegalTransition

STATES = (
    "awaiting_consent", "scheduled", "created", "matching", "offered", "accepted", "en_route", "arrived",
    "in_service", "completed", "reviewed", "settled", "cancelled", "unfulfilled", "payment_attention",
)
TERMINAL = frozenset({"settled", "cancelled", "unfulfilled"})
# A technician holds the order: from acceptance until completion (his load, his position on
# the customer's map, the identity card at the door).
ACTIVE_JOB_STATES = ("accepted", "en_route", "arrived", "in_service")
# Still to be served: what counts against a customer's cap of open orders.
# A booked appointment (scheduled) waits outside matching until its window nears.
OPEN_STATES = ("scheduled", "created", "matching", "offered", *ACTIVE_JOB_STATES, "payment_attention")
# A declined card before the technician is at the door releases him; at the door or later the
# job goes on (gas safety first) and the payment is settled with the customer afterwards.
PAYMENT_RELEASES_TECHNICIAN = ("accepted", "en_route")

# action -> {from_state: to_state}
_TRANSITIONS: dict[str, dict[str, str]] = {
    # A priced follow-up waits for the customer (or operations) to agree before it is matched.
    "consent": {"awaiting_consent": "matching"},
    "start_matching": {"created": "matching"},
    # A booked appointment enters matching shortly before its window (scheduling.service.release_due).
    "release": {"scheduled": "matching"},
    "offer": {"matching": "offered"},
    # A declined or expired offer sends the order back to matching for the next candidate.
    "offer_lapsed": {"offered": "matching"},
    "accept": {"offered": "accepted"},
    "depart": {"accepted": "en_route"},
    "arrive": {"en_route": "arrived"},
    "start_service": {"arrived": "in_service"},
    "complete": {"in_service": "completed"},
    "review": {"completed": "reviewed"},
    "settle": {"reviewed": "settled"},
    "mark_unfulfilled": {"created": "unfulfilled", "matching": "unfulfilled", "offered": "unfulfilled"},
    # An emergency pre-empting a routine job not yet started returns it to matching.
    "preempt": {"accepted": "matching"},
    # The customer lets the technician go before he sets out; the order is matched again.
    "reschedule": {"accepted": "matching"},
    # Operations give the order to a technician they chose, taking it from whoever held it.
    "assign": {s: "accepted" for s in ("matching", "offered", "accepted", "en_route")},
    # The card was declined: the customer sees "payment needs attention" and can pay with another.
    "payment_declined": {s: "payment_attention" for s in (*PAYMENT_RELEASES_TECHNICIAN, "completed")},
    # Another card was authorised: back to matching, or to completed when the job was done.
    "payment_retried": {"payment_attention": "matching"},
    "payment_recovered": {"payment_attention": "completed"},
    "cancel": {s: "cancelled" for s in ("awaiting_consent", *OPEN_STATES)},
}

# Who may cancel in which state: once the technician is at the door, only operations may.
_CANCEL_ROLES: dict[str, frozenset[str]] = {
    "awaiting_consent": frozenset({"customer", "admin", "system"}),
    "scheduled": frozenset({"customer", "admin", "system"}),
    "created": frozenset({"customer", "admin", "system"}),
    "matching": frozenset({"customer", "admin", "system"}),
    "offered": frozenset({"customer", "admin", "system"}),
    "accepted": frozenset({"customer", "admin", "system"}),
    "en_route": frozenset({"customer", "admin", "system"}),
    "arrived": frozenset({"admin", "system"}),
    "in_service": frozenset({"admin", "system"}),
    "payment_attention": frozenset({"customer", "admin", "system"}),
}

# The customer pays, so only he or operations may agree to a follow-up.
_CONSENT_ROLES = frozenset({"customer", "admin"})

ACTIONS = tuple(_TRANSITIONS)
REASON_REQUIRED = frozenset({"cancel", "mark_unfulfilled", "preempt", "reschedule", "payment_declined"})
# Only the payment side moves an order into or out of payment_attention.
_SYSTEM_ONLY = frozenset({"payment_declined", "payment_retried", "payment_recovered", "release"})


@dataclass(frozen=True)
class Transition:
    action: str
    from_status: str
    to_status: str


def next_state(state: str, action: str, actor_role: str = "system", reason: str | None = None) -> Transition:
    if state not in STATES:
        raise IllegalTransition(f"unknown state {state!r}")
    targets = _TRANSITIONS.get(action)
    if targets is None:
        raise IllegalTransition(f"unknown action {action!r}")
    if state not in targets:
        raise IllegalTransition(f"cannot {action} an order that is {state}")
    if action == "cancel" and actor_role not in _CANCEL_ROLES[state]:
        raise IllegalTransition(f"a {actor_role} cannot cancel an order that is {state}")
    if action == "assign" and actor_role != "admin":
        raise IllegalTransition("only operations can assign an order")
    if action == "reschedule" and actor_role not in _CONSENT_ROLES:
        raise IllegalTransition(f"a {actor_role} cannot reschedule an order")
    if action == "consent" and actor_role not in _CONSENT_ROLES:
        raise IllegalTransition(f"a {actor_role} cannot consent to an order")
    if action in _SYSTEM_ONLY and actor_role != "system":
        raise IllegalTransition(f"a {actor_role} cannot {action} an order")
    if action in REASON_REQUIRED and not (reason and reason.strip()):
        raise IllegalTransition(f"{action} needs a reason")
    return Transition(action, state, targets[state])


def legal_actions(state: str) -> list[str]:
    return [a for a, t in _TRANSITIONS.items() if state in t]
