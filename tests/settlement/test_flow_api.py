"""The money flow of an order end to end through the HTTP API and the event bus."""

from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch.events import drain
from dispatch.models import Order
from settlement import handlers, ledger, service
from settlement.models import Payment, Settlement
from settlement.reconcile import reconcile
from tests.factories import make_staff
from tests.settlement.support import (
    OPS, accept, assert_ledger_balances, complete, entries_of, finalize_review, new_order,
)


@pytest.fixture(autouse=True)
def settlement_handlers():
    handlers.register()
    yield
    from dispatch.events import unsubscribe

    unsubscribe("dispatch.order_status_changed", handlers.on_order_status_changed)
    unsubscribe("ratings.review_finalized", handlers.on_review_finalized)


async def _pay_pending(session: AsyncSession) -> None:
    for settlement_id in await service.pending_transfer_ids(session):
        assert await service.transfer_settlement(session, settlement_id, service.get_gateway())


async def test_order_is_held_captured_settled_and_transferred_and_the_ledger_reconciles(
    client: AsyncClient, session: AsyncSession
) -> None:
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    # Other suites commit orders to the same database; only this order's movement counts.
    holds_before = await ledger.balance(session, ledger.CUSTOMER_HOLDS)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.held_minor) == ("authorised", 8000)

    await complete(session, order, final_price_minor=7000)
    await session.refresh(payment)
    assert (payment.status, payment.captured_minor) == ("captured", 7000)
    assert await ledger.balance(session, ledger.CUSTOMER_HOLDS) == holds_before

    await finalize_review(session, order, stars=5)
    await _pay_pending(session)
    await drain(session)

    _, auditor = await make_staff(session, "auditor")
    listed = (await client.get("/v1/settlements", headers=auditor, params={"technician_id": str(technician.technician.id)})).json()
    assert len(listed["data"]) == 1
    settled = listed["data"][0]
    # 7000 base, +5 % = 350, fee 15 % of base = 1050 -> 6300
    assert (settled["base_minor"], settled["adjustment_minor"], settled["fee_minor"], settled["payout_minor"]) == (
        7000, 350, 1050, 6300)
    assert settled["status"] == "transferred" and settled["transfer_id"]
    order_state = (await client.get(f"/v1/orders/{order.id}", headers=customer.headers)).json()
    assert order_state["status"] == "settled"

    await assert_ledger_balances(session)
    assert await entries_of(session, order.id) == ["hold", "capture", "settlement", "transfer"]
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == 0
    assert await ledger.balance(session, ledger.PLATFORM_REVENUE) <= -1050
    assert await reconcile(session, service.get_gateway(), started, datetime.now(timezone.utc) + timedelta(seconds=1)) == []

    verify = (await client.get("/v1/audit/ledger/verify", headers=auditor)).json()
    assert verify["ok"] and verify["checked"] >= 4


async def test_redelivered_events_do_not_move_money_twice(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    payload = {"order_id": str(order.id), "action": "complete", "from": "in_service", "to": "completed",
               "technician_id": str(technician.technician.id), "reason": None, "payload": {}}
    await handlers.on_order_status_changed(session, payload)
    await finalize_review(session, order, stars=4)
    await finalize_review(session, order, stars=1)
    s = await service.compute_settlement(session, order_id=order.id, review_id="again", stars=3)
    assert (s.stars, s.payout_minor) == (4, 6800)  # the first finalized review wins; 8000 - 15 %
    assert await entries_of(session, order.id) == ["hold", "capture", "settlement"]


async def test_cancelling_before_work_releases_the_hold(client: AsyncClient, session: AsyncSession) -> None:
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "changed my mind"})
    assert response.status_code == 200
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert payment.status == "cancelled"
    assert await entries_of(session, order.id) == ["hold", "hold_released"]
    await assert_ledger_balances(session)


async def test_cancelling_after_departure_keeps_the_cancellation_fee_the_rules_set(
    client: AsyncClient, session: AsyncSession
) -> None:
    _, admin = await make_staff(session, "admin")
    rules = {"platform_fee_bps": 1500, "platform_fee_fixed_minor": 0, "minimum_payout_minor": 0,
             "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
             "payout_schedule": "immediate", "cancellation_fee_minor": 2000}
    assert (await client.post("/v1/settlement-rules", headers=admin, json=rules)).status_code == 201
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await dispatch.transition(session, order.id, "depart", OPS)
    await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "not home"})
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.captured_minor) == ("captured", 2000)
    assert await entries_of(session, order.id) == ["hold", "capture", "cancellation_fee"]
    await assert_ledger_balances(session)


async def test_low_rating_holds_the_settlement_until_operations_decide(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=2)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=2)
    assert s.status == "held" and await service.pending_transfer_ids(session) == []
    _, admin = await make_staff(session, "admin")
    released = await client.post(f"/v1/settlements/{s.id}/release", headers=admin, json={"adjustment_bps": -2000})
    assert released.status_code == 200, released.text
    assert released.json()["payout_minor"] == 8000 - 1600 - 1200
    await _pay_pending(session)
    assert (await session.get(Order, order.id, populate_existing=True)).status == "settled"


async def test_refund_after_settlement_reverses_the_transfer_and_records_the_rest_as_receivable(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=4)
    await _pay_pending(session)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=4)
    gateway = service.get_gateway()
    gateway.withdraw(account_id=s.connected_account_id, amount_minor=6000)  # he kept 800 on his balance
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "r1"},
                                 json={"amount_minor": 3000})
    assert response.status_code == 201, response.text
    replay = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "r1"},
                               json={"amount_minor": 3000})
    assert replay.json() == response.json()
    receivable = ledger.technician_receivable(technician.technician.id)
    # 3000 clawed back; the provider refused to reverse more than his 800 balance, so none was reversed
    assert await ledger.balance(session, receivable) == 3000
    assert await entries_of(session, order.id) == ["hold", "capture", "settlement", "transfer", "refund", "clawback"]
    await assert_ledger_balances(session)


async def test_refund_beyond_the_captured_amount_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "too-much"},
                                 json={"amount_minor": 9000})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
