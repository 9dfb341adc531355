"""Provider webhooks: verified, stored once, handled in any order."""

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from settlement import ledger, service
from settlement.models import Payment, WebhookInbox
from tests.settlement.support import accept, assert_ledger_balances, complete, entries_of, finalize_review, new_order


pytestmark = pytest.mark.usefixtures("settlement_handlers")


async def _deliver(client: AsyncClient, event: dict) -> dict:
    body, signature = service.get_gateway().signed(event)
    response = await client.post("/v1/webhooks/stripe", content=body,
                                 headers={"Stripe-Signature": signature, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_dispute_webhook_delivered_twice_is_recorded_once(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=4)
    for settlement_id in await service.pending_transfer_ids(session):
        await service.transfer_settlement(session, settlement_id, service.get_gateway())
    payment = await session.get(Payment, order.id)
    gateway = service.get_gateway()
    dispute_id = gateway.open_dispute(charge_id=payment.charge_id, amount_minor=2000)
    event = next(e for e in gateway.events() if e["data"]["object"].get("id") == dispute_id)
    assert (await _deliver(client, event))["duplicate"] is False
    assert (await _deliver(client, event))["duplicate"] is True
    assert (await session.exec(select(WebhookInbox).where(WebhookInbox.event_id == event["id"]))).one().processed_at
    kinds = await entries_of(session, order.id)
    assert kinds.count("dispute") == 1 and "reversal" in kinds  # his balance covered the clawback
    assert await ledger.balance(session, ledger.technician_receivable(technician.technician.id)) == 0
    await assert_ledger_balances(session)


async def test_refund_webhook_arriving_before_the_capture_is_applied_once_the_capture_is_known(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    payment = await session.get(Payment, order.id)
    gateway = service.get_gateway()
    # The provider captured and refunded (e.g. from its dashboard) before we recorded the capture.
    gateway.capture(hold_id=payment.hold_id, amount_minor=8000, idempotency_key=f"settlement:{order.id}:capture:v1")
    gateway.refund(charge_or_hold_id=payment.charge_id, amount_minor=500, idempotency_key=f"dash:{order.id}")
    refunded = [e for e in gateway.events() if e["type"] == "charge.refunded"
                and e["data"]["object"]["transfer_group"] == str(order.id)][-1]
    await _deliver(client, refunded)
    row = (await session.exec(select(WebhookInbox).where(WebhookInbox.event_id == refunded["id"]))).one()
    assert row.processed_at is None and row.attempts == 1

    await complete(session, order)  # our capture replays the provider's under the same key
    await _deliver(client, refunded)  # a redelivery also drives the pending inbox
    await session.refresh(row)
    await session.refresh(payment)
    assert row.processed_at is not None and payment.refunded_minor == 500
    assert await entries_of(session, order.id) == ["hold", "capture", "refund"]
    await assert_ledger_balances(session)


async def test_unsigned_webhook_is_rejected_as_bad_request(client: AsyncClient) -> None:
    response = await client.post("/v1/webhooks/stripe", content=b'{"id": "evt_1"}',
                                 headers={"Stripe-Signature": "t=1,v1=00"})
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-webhook"


async def test_a_dispute_not_yet_booked_holds_the_transfer_until_its_webhook_nets_it(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    payment = await session.get(Payment, order.id)
    gateway = service.get_gateway()
    # Most of the charge goes back before the payout; its webhook has not arrived yet.
    dispute_id = gateway.open_dispute(charge_id=payment.charge_id, amount_minor=payment.captured_minor * 9 // 10)
    await finalize_review(session, order, stars=5)
    (settlement_id,) = await service.pending_transfer_ids(session)
    with pytest.raises(service.SettlementNotReady):
        async with session.begin_nested():
            await service.transfer_settlement(session, settlement_id, gateway)
    event = next(e for e in gateway.events() if e["data"]["object"].get("id") == dispute_id)
    await _deliver(client, event)
    assert await service.transfer_settlement(session, settlement_id, gateway)
    kinds = await entries_of(session, order.id)
    assert "dispute" in kinds and "receivable_offset" in kinds
    await assert_ledger_balances(session)
