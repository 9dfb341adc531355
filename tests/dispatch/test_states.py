"""The order state machine: every (state, action) pair is either the one legal move or an error."""

import pytest

from dispatch.errors import IllegalTransition
from dispatch.states import ACTIONS, STATES, TERMINAL, legal_actions, next_state

LEGAL = {
    ("awaiting_consent", "consent"): "matching",
    ("created", "start_matching"): "matching",
    ("matching", "offer"): "offered",
    ("offered", "offer_lapsed"): "matching",
    ("offered", "accept"): "accepted",
    ("accepted", "depart"): "en_route",
    ("en_route", "arrive"): "arrived",
    ("arrived", "start_service"): "in_service",
    ("in_service", "complete"): "completed",
    ("completed", "review"): "reviewed",
    ("reviewed", "settle"): "settled",
    ("created", "mark_unfulfilled"): "unfulfilled",
    ("matching", "mark_unfulfilled"): "unfulfilled",
    ("offered", "mark_unfulfilled"): "unfulfilled",
    ("accepted", "preempt"): "matching",
    ("accepted", "reschedule"): "matching",
    **{(s, "assign"): "accepted" for s in ("matching", "offered", "accepted", "en_route")},
    **{(s, "cancel"): "cancelled" for s in
       ("awaiting_consent", "scheduled", "created", "matching", "offered", "accepted", "en_route", "arrived", "in_service",
        "payment_attention")},
}


@pytest.mark.parametrize("state,action", [(s, a) for s in STATES for a in ACTIONS])
def test_every_state_action_pair_is_legal_exactly_as_specified(state: str, action: str) -> None:
    expected = LEGAL.get((state, action))
    if expected is None:
        with pytest.raises(IllegalTransition):
            next_state(state, action, "admin", reason="because")
    else:
        assert next_state(state, action, "admin", reason="because").to_status == expected


def test_terminal_states_allow_nothing() -> None:
    for state in TERMINAL:
        assert legal_actions(state) == []


@pytest.mark.parametrize("state", ["arrived", "in_service"])
def test_customer_cannot_cancel_once_technician_is_at_the_door(state: str) -> None:
    with pytest.raises(IllegalTransition, match="customer cannot cancel"):
        next_state(state, "cancel", "customer", reason="changed my mind")
    assert next_state(state, "cancel", "admin", reason="gas supply cut").to_status == "cancelled"


@pytest.mark.parametrize("action", ["cancel", "mark_unfulfilled", "preempt"])
def test_cancellation_and_failure_need_a_reason(action: str) -> None:
    state = {"cancel": "created", "mark_unfulfilled": "matching", "preempt": "accepted"}[action]
    with pytest.raises(IllegalTransition, match="needs a reason"):
        next_state(state, action, "admin", reason="  ")


def test_unknown_state_and_action_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        next_state("teleported", "accept")
    with pytest.raises(IllegalTransition):
        next_state("created", "teleport")


def test_only_the_system_releases_a_booked_appointment_into_matching() -> None:
    assert next_state("scheduled", "release", "system").to_status == "matching"
    for role in ("customer", "admin", "technician"):
        with pytest.raises(IllegalTransition):
            next_state("scheduled", "release", role)
