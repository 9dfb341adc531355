"""What the customer sees of the escalation ladder: the steps on his order's history with how
many were asked and how far, never whom; and each step wakes his order's socket."""

import json
from datetime import timedelta

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order
from dispatch.service import Actor, create_order
from kit import after_commit
from kit.events import drain
from kit.fanout import order_channel
from matching import service as engine
from tests.factories import make_customer
from tests.matching.test_escalation_ladder import CENTER, emergency_tech


async def test_the_customer_sees_the_round_with_counts_and_radius_but_no_technician(
    client: AsyncClient, session: AsyncSession, index,  # noqa: ANN001
) -> None:
    techs = [await emergency_tech(session, index, km) for km in (0.5, 1.0, 1.5, 2.0)]
    household = await make_customer(session, *CENTER)
    order = await create_order(session, customer_id=household.customer.id, address_id=household.address.id,
                               kind="emergency_leak", actor=Actor("customer", str(household.account.id)))
    await drain(session)
    response = await client.get(f"/v1/orders/{order.id}/events", headers=household.headers)
    assert response.status_code == 200, response.text
    [round_] = [e for e in response.json()["data"] if e["action"] == "offer_round"]
    assert round_["payload"] == {"round": 1, "offers": 3, "radius_m": 3000.0}
    assert round_["to_status"] == round_["from_status"]
    for tech in techs:  # neither in a payload nor anywhere else
        assert str(tech.technician.id) not in response.text


async def test_a_step_wakes_the_order_socket_after_commit(session: AsyncSession, redis) -> None:  # noqa: ANN001
    household = await make_customer(session, *CENTER)
    order = await create_order(session, customer_id=household.customer.id, address_id=household.address.id,
                               kind="emergency_leak", actor=Actor("customer", str(household.account.id)))
    await drain(session)  # nobody online: it waits in matching
    order = await session.get(Order, order.id, populate_existing=True)
    listener = redis.pubsub()
    await listener.subscribe(order_channel(order.id))
    after_commit.discard(session)  # the order's own pushes
    assert await engine.raise_due_alerts(session, order.created_at + timedelta(seconds=121)) == 1
    await session.commit()
    await after_commit.run(session)
    pushed = []
    for _ in range(20):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            pushed.append(json.loads(message["data"]))
    assert [(m["type"], m["action"], m["status"]) for m in pushed] == [("status", "alerted", "matching")]
    await listener.aclose()
