"""Customer cancel and reschedule in the order's life, and the technician told why he lost a
job or a price: cancelled, rescheduled, reassigned, price change rejected."""

from datetime import datetime, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import handlers
from kit.events import drain
from dispatch.models import Notification, Order, OrderEvent, Technician
from dispatch.service import Actor, transition
from tests.factories import make_customer, make_staff, make_technician
from tests.field.support import accepted_job, in_service_job, report


async def _notices(session: AsyncSession, account_id, kind: str) -> list[Notification]:  # noqa: ANN001
    return list((await session.exec(select(Notification).where(
        Notification.account_id == account_id, Notification.kind == kind))).all())


async def _publish_rules(client: AsyncClient, session: AsyncSession, **policy: int) -> None:
    _, admin = await make_staff(session, "admin")
    body = {"platform_fee_bps": 1500, "platform_fee_fixed_minor": 0, "minimum_payout_minor": 0,
            "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
            "payout_schedule": "immediate", "cancellation_fee_minor": 3000, **policy}
    assert (await client.post("/v1/settlement-rules", headers=admin, json=body)).status_code == 201


async def test_reschedule_releases_the_technician_and_matches_the_order_again(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    await drain(session)
    response = await client.post(f"/v1/orders/{job.order.id}/reschedule", headers=job.customer.headers,
                                 json={"reason_code": "too_slow"})
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["technician_id"]) == ("matching", None)
    await drain(session)
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == job.order.id,
                                                         OrderEvent.action == "reschedule"))).one()
    assert (event.from_status, event.to_status, event.payload) == ("accepted", "matching", {"reason_code": "too_slow"})
    technician = await session.get(Technician, job.technician.technician.id, populate_existing=True)
    assert technician.status == "online"
    [notice] = await _notices(session, job.technician.account.id, "job_released")
    assert notice.payload["action"] == "reschedule" and notice.payload["reason_code"] == "too_slow"


@pytest.mark.parametrize("actions,state", [(["start_matching"], "matching"),
                                           (["start_matching", "offer", "accept", "depart"], "en_route"),
                                           (["start_matching", "cancel"], "cancelled")])
async def test_reschedule_in_a_state_that_does_not_allow_it_names_the_state(
    client: AsyncClient, session: AsyncSession, actions: list[str], state: str,
) -> None:
    c = await make_customer(session)
    technician = await make_technician(session)
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    for action in actions:
        await transition(session, order["id"], action, Actor.system(), reason="test" if action == "cancel" else None,
                         set_values={"technician_id": technician.technician.id} if action == "accept" else None)
    response = await client.post(f"/v1/orders/{order['id']}/reschedule", headers=c.headers,
                                 json={"reason_code": "changed_mind"})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (response.json()["type"], response.json()["current_state"]) == ("/problems/illegal-transition", state)


async def test_reschedule_is_refused_once_cancelling_would_cost_a_fee(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    await _publish_rules(client, session, cancellation_fee_accepted_minor=1000)
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    await drain(session)
    response = await client.post(f"/v1/orders/{job.order.id}/reschedule", headers=job.customer.headers,
                                 json={"reason_code": "too_slow"})
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/reschedule-not-free"
    assert response.json()["current_state"] == "accepted"
    assert response.json()["fee"] == {"amount_minor": 1000, "currency": "CNY"}


@pytest.mark.parametrize("state_actions,state", [
    (["start_matching", "offer", "accept", "depart", "arrive"], "arrived"),
    (["start_matching", "cancel"], "cancelled"),
])
async def test_cancel_in_a_state_that_does_not_allow_it_names_the_state(
    client: AsyncClient, session: AsyncSession, state_actions: list[str], state: str,
) -> None:
    c = await make_customer(session)
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    for action in state_actions:
        await transition(session, order["id"], action, Actor.system(), reason="test" if action == "cancel" else None)
    response = await client.post(f"/v1/orders/{order['id']}/cancel", headers=c.headers,
                                 json={"reason": "no", "accepted_fee_minor": 100_000})
    assert response.status_code == 409, response.text
    assert (response.json()["type"], response.json()["current_state"]) == ("/problems/illegal-transition", state)


async def test_bad_cancel_and_reschedule_bodies_are_422(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    for url, body in ((f"/v1/orders/{order['id']}/cancel", {"reason": "x", "accepted_fee_minor": -1}),
                      (f"/v1/orders/{order['id']}/cancel", {"reason": "x", "reason_code": "<script>"}),
                      (f"/v1/orders/{order['id']}/reschedule", {}),
                      (f"/v1/orders/{order['id']}/reschedule", {"reason_code": "bored", "extra": 1})):
        response = await client.post(url, headers=c.headers, json=body)
        assert response.status_code == 422, (url, body, response.text)


async def test_a_customer_cannot_quote_or_reschedule_another_customers_order(
    client: AsyncClient, session: AsyncSession,
) -> None:
    owner, stranger = await make_customer(session), await make_customer(session)
    order = (await client.post("/v1/orders", headers=owner.headers,
                               json={"kind": "repair", "address_id": str(owner.address.id)})).json()
    assert (await client.get(f"/v1/orders/{order['id']}/cancellation-quote", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"/v1/orders/{order['id']}/reschedule", headers=stranger.headers,
                              json={"reason_code": "other"})).status_code == 404


async def test_the_technician_is_told_the_cancellation_reason_and_his_compensation(
    session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    # The event as a customer's cancel writes it (tests/settlement/test_cancellation.py moves the money;
    # here only the dispatch handler runs, so no capture reaches the sandbox provider).
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    await transition(session, job.order.id, "depart", Actor.system())
    event = {"order_id": str(job.order.id), "action": "cancel", "from": "en_route", "to": "cancelled",
             "technician_id": str(job.technician.technician.id), "reason": "不在家",
             "payload": {"reason_code": "not_home", "cancellation_fee": {
                 "fee_minor": 3000, "technician_share_minor": 2400, "currency": "CNY", "rule_version": 1}}}
    await handlers.on_order_status_changed(session, event)
    await handlers.on_order_status_changed(session, event)  # redelivered
    [notice] = await _notices(session, job.technician.account.id, "job_cancelled")
    assert notice.payload["reason_code"] == "not_home" and notice.payload["reason"] == "不在家"
    assert notice.payload["compensation"] == {"amount_minor": 2400, "currency": "CNY"}


async def test_a_customers_cancel_puts_the_reason_and_the_quoted_fee_in_the_event(
    client: AsyncClient, session: AsyncSession,
) -> None:
    await _publish_rules(client, session, cancellation_technician_bps=8000)
    c = await make_customer(session)
    technician = await make_technician(session)
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    for action in ("start_matching", "offer", "accept", "depart"):
        await transition(session, order["id"], action, Actor.system(),
                         set_values={"technician_id": technician.technician.id} if action == "accept" else None)
    response = await client.post(f"/v1/orders/{order['id']}/cancel", headers=c.headers,
                                 json={"reason": "不在家", "reason_code": "not_home", "accepted_fee_minor": 3000})
    assert response.status_code == 200, response.text
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order["id"],
                                                         OrderEvent.action == "cancel"))).one()
    fee = event.payload["cancellation_fee"]
    assert (event.payload["reason_code"], fee["fee_minor"], fee["technician_share_minor"]) == ("not_home", 3000, 2400)


async def test_a_reassign_event_tells_the_previous_technician(session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    other = await make_technician(session)
    event = {"order_id": str(job.order.id), "action": "assign", "from": "accepted", "to": "accepted",
             "technician_id": str(other.technician.id), "reason": "closer technician",
             "payload": {"technician_id": str(other.technician.id),
                         "previous_technician_id": str(job.technician.technician.id)}}
    await handlers.on_order_status_changed(session, event)
    await handlers.on_order_status_changed(session, event)  # redelivered
    [notice] = await _notices(session, job.technician.account.id, "job_reassigned")
    assert notice.payload["action"] == "assign" and notice.payload["reason"] == "closer technician"
    assert await _notices(session, other.account.id, "job_reassigned") == []


async def test_the_technician_is_told_when_the_customer_rejects_his_price(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    asked = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers, json=report(9500))
    assert asked.status_code == 202, asked.text
    change_id = asked.json()["price_change"]["id"]
    rejected = await client.post(f"/v1/orders/{job.order.id}/price-change/reject", headers=job.customer.headers,
                                 json={"price_change_id": change_id})
    assert rejected.status_code == 200, rejected.text
    await drain(session)
    [notice] = await _notices(session, job.technician.account.id, "price_change_rejected")
    assert notice.payload == {"order_id": str(job.order.id), "price_change_id": change_id, "amount_minor": 9500,
                              "currency": "CNY", "reason_code": "customer_rejected_price"}
    assert (await session.get(Order, job.order.id, populate_existing=True)).status == "in_service"
