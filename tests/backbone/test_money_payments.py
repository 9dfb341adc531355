"""Payments that fail end cleanly: a declined card puts the order in payment_attention, the
customer is told and pays with another card; a capture never runs ahead of its hold."""

import uuid

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch.models import Notification, Order
from kit.config import get_settings
from kit.errors import NotReady
from kit.events import drain
from settlement import service
from settlement.models import Payment, PaymentAttempt
from tests.settlement.support import OPS, accept, complete, entries_of, new_order

DECLINING_CARD = "pm_card_chargeDeclined"
GOOD_CARD = "pm_card_visa"


async def _order(session: AsyncSession, order_id: uuid.UUID) -> Order:
    return await session.get(Order, order_id, populate_existing=True)


async def test_declined_card_at_acceptance_asks_the_customer_and_another_card_lets_the_order_proceed(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, customer, technician = await new_order(client, session)
    monkeypatch.setattr(get_settings(), "settlement_payment_method_ref", DECLINING_CARD)
    await accept(session, order, technician)

    waiting = await _order(session, order.id)
    assert (waiting.status, waiting.technician_id) == ("payment_attention", None)
    assert await session.get(Payment, order.id) is None
    told = (await session.exec(select(Notification).where(Notification.account_id == customer.account.id,
                                                          Notification.kind == "payment_attention"))).all()
    assert [n.payload["order_id"] for n in told] == [str(order.id)]
    await drain(session)  # redelivered or not, a decline is never tried again on its own
    assert len((await session.exec(select(PaymentAttempt).where(PaymentAttempt.order_id == order.id))).all()) == 1

    seen = (await client.get(f"/v1/orders/{order.id}", headers=customer.headers)).json()
    assert seen["status"] == "payment_attention"

    declined = await client.post(f"/v1/orders/{order.id}/payment/retry", headers=customer.headers,
                                 json={"payment_method": DECLINING_CARD})
    assert declined.status_code == 200, declined.text
    assert (declined.json()["outcome"], declined.json()["order"]["status"]) == ("declined", "payment_attention")

    paid = await client.post(f"/v1/orders/{order.id}/payment/retry", headers=customer.headers,
                             json={"payment_method": GOOD_CARD})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["outcome"], paid.json()["order"]["status"]) == ("authorised", "matching")
    payment = await session.get(Payment, order.id, populate_existing=True)
    assert (payment.status, payment.held_minor) == ("authorised", 8000)

    await dispatch.transition(session, order.id, "offer", OPS)
    await dispatch.transition(session, order.id, "accept", dispatch.Actor("technician", str(technician.account.id)),
                              set_values={"technician_id": technician.technician.id})
    await drain(session)
    await complete(session, order)
    captured = await session.get(Payment, order.id, populate_existing=True)
    assert (captured.status, captured.captured_minor, captured.hold_id) == ("captured", 8000, payment.hold_id)
    assert (await _order(session, order.id)).status == "completed"
    assert await entries_of(session, order.id) == ["hold", "capture"]


async def test_retry_is_refused_for_an_order_whose_payment_needs_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    response = await client.post(f"/v1/orders/{order.id}/payment/retry", headers=customer.headers,
                                 json={"payment_method": GOOD_CARD})
    assert response.status_code == 409
    assert response.json()["current_state"] == "accepted"
    bad = await client.post(f"/v1/orders/{order.id}/payment/retry", headers=customer.headers,
                            json={"payment_method": "4000000000000002"})
    assert bad.status_code == 422  # a payment method id, never card data


async def test_card_declined_after_the_door_is_settled_after_the_job_and_never_completes_uncaptured(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, customer, technician = await new_order(client, session)
    for action in ("start_matching", "offer"):
        await dispatch.transition(session, order.id, action, OPS)
    await dispatch.transition(session, order.id, "accept", dispatch.Actor("technician", str(technician.account.id)),
                              set_values={"technician_id": technician.technician.id})
    for action in ("depart", "arrive"):  # he reached the door before the hold was tried
        await dispatch.transition(session, order.id, action, OPS)
    monkeypatch.setattr(get_settings(), "settlement_payment_method_ref", DECLINING_CARD)
    await drain(session)
    assert (await _order(session, order.id)).status == "arrived"  # the gas job goes on
    await dispatch.transition(session, order.id, "start_service", OPS)
    await dispatch.transition(session, order.id, "complete", OPS, payload={"report_id": "r"})
    await drain(session)
    done = await _order(session, order.id)
    assert (done.status, done.technician_id) == ("payment_attention", technician.technician.id)
    quote = await client.get(f"/v1/orders/{order.id}/cancellation-quote", headers=customer.headers)
    assert quote.json()["can_cancel"] is False

    paid = await client.post(f"/v1/orders/{order.id}/payment/retry", headers=customer.headers,
                             json={"payment_method": GOOD_CARD})
    assert paid.json()["order"]["status"] == "completed"
    await drain(session)
    assert (await session.get(Payment, order.id, populate_existing=True)).status == "captured"


async def test_capture_before_the_hold_exists_raises_not_ready_and_captures_once_it_does(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    for action in ("start_matching", "offer"):
        await dispatch.transition(session, order.id, action, OPS)
    await dispatch.transition(session, order.id, "accept", dispatch.Actor("technician", str(technician.account.id)),
                              set_values={"technician_id": technician.technician.id})
    for action in ("depart", "arrive", "start_service"):
        await dispatch.transition(session, order.id, action, OPS)
    await dispatch.transition(session, order.id, "complete", OPS, payload={"report_id": "r"})
    gateway = service.get_gateway()
    with pytest.raises(NotReady):
        await service.capture_order(session, order.id, None, gateway)
    assert await session.get(Payment, order.id) is None
    await service.place_hold(session, order.id, gateway)
    captured = await service.capture_order(session, order.id, None, gateway)
    assert (captured.status, captured.captured_minor) == ("captured", 8000)
