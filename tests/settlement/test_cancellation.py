"""The cancellation policy in the ledger: free before acceptance and in the grace after it, the
rules' fee after, never more than the hold, the technician's share booked and paid out, every
step idempotent and the hash chain intact."""

from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from kit.events import drain
from settlement import cancellation, handlers, ledger, service
from settlement.models import Payment, Settlement
from settlement.rules import Rules, cancellation_fee
from tests.factories import make_staff
from tests.settlement.support import OPS, accept, assert_ledger_balances, entries_of, new_order

pytestmark = pytest.mark.usefixtures("settlement_handlers")

RULES = Rules(7, 1500, 0, {"5": 500, "4": 0, "3": -1000, "2": None, "1": None}, 0, "immediate",
              cancellation_fee_minor=3000, cancellation_fee_accepted_minor=1000, cancellation_free_minutes=2,
              cancellation_technician_bps=8000)
ACCEPTED_AT = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


async def _publish_rules(client: AsyncClient, session: AsyncSession, **policy: int) -> None:
    _, admin = await make_staff(session, "admin")
    body = {"platform_fee_bps": 1500, "platform_fee_fixed_minor": 0, "minimum_payout_minor": 0,
            "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
            "payout_schedule": "immediate", "cancellation_fee_minor": 3000, "cancellation_fee_accepted_minor": 1000,
            "cancellation_free_minutes": 0, "cancellation_technician_bps": 8000, **policy}
    response = await client.post("/v1/settlement-rules", headers=admin, json=body)
    assert response.status_code == 201, response.text


async def _quote(client: AsyncClient, order_id, headers) -> dict:  # noqa: ANN001
    response = await client.get(f"/v1/orders/{order_id}/cancellation-quote", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _pay_pending(session: AsyncSession) -> None:
    for settlement_id in await service.pending_transfer_ids(session):
        assert await service.transfer_settlement(session, settlement_id, service.get_gateway())


# -- the pure policy --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["awaiting_consent", "created", "matching", "offered"])
def test_cancelling_before_acceptance_is_free(status: str) -> None:
    fee = cancellation_fee(RULES, status=status, accepted_at=None, now=ACCEPTED_AT, hold_minor=8000)
    assert (fee.fee_minor, fee.technician_share_minor, fee.free_until) == (0, 0, None)


def test_cancelling_within_the_grace_after_acceptance_is_free_and_says_until_when() -> None:
    fee = cancellation_fee(RULES, status="accepted", accepted_at=ACCEPTED_AT,
                           now=ACCEPTED_AT + timedelta(seconds=119), hold_minor=8000)
    assert (fee.fee_minor, fee.free_until) == (0, ACCEPTED_AT + timedelta(minutes=2))


def test_after_the_grace_the_accepted_fee_applies_and_once_en_route_the_dispatched_fee() -> None:
    late = ACCEPTED_AT + timedelta(minutes=2)
    accepted = cancellation_fee(RULES, status="accepted", accepted_at=ACCEPTED_AT, now=late, hold_minor=8000)
    assert (accepted.fee_minor, accepted.technician_share_minor, accepted.platform_share_minor) == (1000, 800, 200)
    for status in ("en_route", "arrived", "in_service"):
        # No grace once he set out, however soon after accepting.
        dispatched = cancellation_fee(RULES, status=status, accepted_at=ACCEPTED_AT, now=ACCEPTED_AT, hold_minor=8000)
        assert (dispatched.fee_minor, dispatched.technician_share_minor) == (3000, 2400)


def test_the_fee_is_never_more_than_the_hold() -> None:
    fee = cancellation_fee(RULES, status="en_route", accepted_at=ACCEPTED_AT, now=ACCEPTED_AT, hold_minor=1200)
    assert (fee.fee_minor, fee.technician_share_minor, fee.platform_share_minor) == (1200, 960, 240)
    free_service = cancellation_fee(RULES, status="en_route", accepted_at=ACCEPTED_AT, now=ACCEPTED_AT, hold_minor=0)
    assert free_service.fee_minor == 0


# -- through the API and the ledger -----------------------------------------------------------


async def test_cancelling_before_acceptance_moves_no_money(client: AsyncClient, session: AsyncSession) -> None:
    await _publish_rules(client, session)
    order, customer, _ = await new_order(client, session)
    await dispatch.transition(session, order.id, "start_matching", OPS)
    quote = await _quote(client, order.id, customer.headers)
    assert quote["fee"] == {"amount_minor": 0, "currency": "CNY"} and quote["can_cancel"]
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "changed"})
    assert response.status_code == 200, response.text
    await drain(session)
    assert await entries_of(session, order.id) == []
    await assert_ledger_balances(session)


async def test_cancelling_in_the_grace_after_acceptance_releases_the_whole_hold(
    client: AsyncClient, session: AsyncSession,
) -> None:
    await _publish_rules(client, session, cancellation_free_minutes=5)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    quote = await _quote(client, order.id, customer.headers)
    assert quote["fee"]["amount_minor"] == 0 and quote["free_until"] is not None and quote["can_reschedule"]
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers,
                                 json={"reason": "changed my mind", "reason_code": "changed_mind"})
    assert response.status_code == 200, response.text
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.captured_minor) == ("cancelled", 0)
    assert await entries_of(session, order.id) == ["hold", "hold_released"]
    await assert_ledger_balances(session)


async def test_fee_after_acceptance_is_captured_split_and_the_technician_share_paid_out(
    client: AsyncClient, session: AsyncSession,
) -> None:
    await _publish_rules(client, session)
    revenue_before = await ledger.balance(session, ledger.PLATFORM_REVENUE)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await dispatch.transition(session, order.id, "depart", OPS)
    quote = await _quote(client, order.id, customer.headers)
    assert (quote["fee"]["amount_minor"], quote["technician_share"]["amount_minor"]) == (3000, 2400)
    assert not quote["can_reschedule"]
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers,
                                 json={"reason": "not home", "reason_code": "not_home", "accepted_fee_minor": 3000})
    assert response.status_code == 200, response.text
    await drain(session)

    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.held_minor, payment.captured_minor) == ("captured", 8000, 3000)
    assert await ledger.balance(session, ledger.PLATFORM_REVENUE) - revenue_before == -600
    payable = ledger.technician_payable(technician.technician.id)
    assert await ledger.balance(session, payable) == -2400
    s = (await session.exec(select(Settlement).where(Settlement.order_id == order.id))).one()
    assert (s.kind, s.stars, s.base_minor, s.fee_minor, s.payout_minor, s.status) == (
        "cancellation", None, 3000, 600, 2400, "transfer_pending")

    await _pay_pending(session)
    await session.refresh(s)
    assert s.status == "transferred" and s.transfer_id
    assert await ledger.balance(session, payable) == 0
    assert await entries_of(session, order.id) == ["hold", "capture", "cancellation_fee", "transfer"]
    assert (await dispatch.get_order(session, order.id)).status == "cancelled"  # no review/settle step
    await assert_ledger_balances(session)


async def test_a_fee_above_the_hold_captures_only_the_hold(client: AsyncClient, session: AsyncSession) -> None:
    await _publish_rules(client, session, cancellation_fee_minor=50_000, cancellation_technician_bps=10_000)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await dispatch.transition(session, order.id, "depart", OPS)
    quote = await _quote(client, order.id, customer.headers)
    assert quote["fee"]["amount_minor"] == 8000
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers,
                                 json={"reason": "not home", "accepted_fee_minor": 8000})
    assert response.status_code == 200, response.text
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert payment.captured_minor == payment.held_minor == 8000
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == -8000
    await assert_ledger_balances(session)


async def test_a_redelivered_cancel_event_moves_no_money_twice(client: AsyncClient, session: AsyncSession) -> None:
    await _publish_rules(client, session, cancellation_free_minutes=0)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers,
                      json={"reason": "too slow", "accepted_fee_minor": 1000})
    await drain(session)
    event = {"order_id": str(order.id), "action": "cancel", "from": "accepted", "to": "cancelled",
             "technician_id": str(technician.technician.id), "reason": "too slow",
             "payload": {"cancellation_fee": {"fee_minor": 1000, "technician_share_minor": 800, "currency": "CNY",
                                              "rule_version": (await service.current_rules(session)).version}}}
    await handlers.on_order_status_changed(session, event)
    await cancellation.settle_cancelled_order(session, order.id, technician_id=technician.technician.id,
                                              fee=event["payload"]["cancellation_fee"], gateway=service.get_gateway())
    assert await entries_of(session, order.id) == ["hold", "capture", "cancellation_fee"]
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == -800
    assert len((await session.exec(select(Settlement).where(Settlement.order_id == order.id))).all()) == 1
    await assert_ledger_balances(session)


async def test_the_customer_pays_no_fee_he_did_not_accept(client: AsyncClient, session: AsyncSession) -> None:
    await _publish_rules(client, session, cancellation_free_minutes=10)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    shown = await _quote(client, order.id, customer.headers)
    assert shown["fee"]["amount_minor"] == 0
    await dispatch.transition(session, order.id, "depart", OPS)  # while the dialog was open
    refused = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers,
                                json={"reason": "not home", "accepted_fee_minor": 0})
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"] == "/problems/cancellation-fee-changed"
    assert (problem["current_state"], problem["fee"]) == ("en_route", {"amount_minor": 3000, "currency": "CNY"})
    unconfirmed = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "x"})
    assert unconfirmed.status_code == 409
    assert (await dispatch.get_order(session, order.id)).status == "en_route"
    await drain(session)
    assert await entries_of(session, order.id) == ["hold"]
    await assert_ledger_balances(session)


async def test_operations_cancel_without_charging_the_customer(client: AsyncClient, session: AsyncSession) -> None:
    await _publish_rules(client, session)
    _, admin = await make_staff(session, "admin")
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await dispatch.transition(session, order.id, "depart", OPS)
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=admin, json={"reason": "supply shut"})
    assert response.status_code == 200, response.text
    await drain(session)
    assert await entries_of(session, order.id) == ["hold", "hold_released"]
    await assert_ledger_balances(session)
