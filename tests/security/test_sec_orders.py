"""Orders (issue #13, items 4 and 13): priority is not the customer's to set, open orders are capped
and their creation rate limited, and the history a customer reads names no other customer's order
nor a technician's private decline reason."""

import asyncio
import uuid
from datetime import datetime, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit import after_commit
from kit.events import drain
from kit.fanout import order_channel
from dispatch.models import Order
from dispatch.service import Actor, TooManyOpenOrders, create_order
from matching import service as engine
from tests.factories import make_customer, make_staff, make_technician

CENTER = (120.155, 30.274)


ORDERS = "/v1/orders"


async def place(client: AsyncClient, customer, kind: str = "repair", **extra):  # noqa: ANN001, ANN003, ANN201
    return await client.post(ORDERS, headers=customer.headers,
                             json={"kind": kind, "address_id": str(customer.address.id), **extra})


async def test_a_customer_cannot_declare_an_emergency_the_kind_sets_the_priority(
    client: AsyncClient, session: AsyncSession,
) -> None:
    c = await make_customer(session)
    declared = await place(client, c, "repair", priority="emergency")
    assert declared.status_code == 422, declared.text
    assert declared.headers["content-type"] == "application/problem+json"
    assert (await session.exec(select(Order).where(Order.customer_id == c.customer.id))).all() == []
    repair = await place(client, c, "repair")
    leak = await place(client, c, "emergency_leak")  # "I smell gas" is the gas-leak kind
    assert (repair.json()["priority"], leak.json()["priority"]) == ("routine", "emergency")


async def test_open_orders_per_customer_are_capped_with_a_409_problem(
    client: AsyncClient, session: AsyncSession, redis, monkeypatch,  # noqa: ANN001
) -> None:
    monkeypatch.setattr(get_settings(), "customer_order_rate", "100/minute")
    cap = get_settings().customer_max_open_orders
    c = await make_customer(session)
    placed = [await place(client, c, "repair") for _ in range(cap)]
    assert [r.status_code for r in placed] == [201] * cap
    refused = await place(client, c, "repair")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/too-many-open-orders"
    await client.post(f"{ORDERS}/{placed[0].json()['id']}/cancel", headers=c.headers, json={"reason": "done"})
    assert (await place(client, c)).status_code == 201
    # Smelling gas is never refused for other open orders.
    assert (await place(client, c, "emergency_leak")).status_code == 201


async def test_a_burst_of_emergencies_is_rate_limited_with_a_429_problem(
    client: AsyncClient, session: AsyncSession, redis, monkeypatch,  # noqa: ANN001
) -> None:
    monkeypatch.setattr(get_settings(), "customer_max_open_orders", 100)
    monkeypatch.setattr(get_settings(), "customer_order_rate", "5/minute")
    c = await make_customer(session)
    responses = [await place(client, c, "emergency_leak") for _ in range(12)]
    # One home, one emergency: the repeats join the first order until the window is full.
    assert [r.status_code for r in responses] == [201] + [200] * 4 + [429] * 7
    assert {r.json()["id"] for r in responses[:5]} == {responses[0].json()["id"]}
    last = responses[-1]
    assert last.headers["content-type"] == "application/problem+json"
    assert last.json()["type"] == "/problems/too-many-attempts"
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    other = await make_customer(session)
    assert (await place(client, other)).status_code == 201  # the window is per customer


async def test_concurrent_orders_of_one_customer_stop_at_the_cap(committed_sessions) -> None:  # noqa: ANN001
    async with committed_sessions() as session:
        c = await make_customer(session)
        await session.commit()
    cap = get_settings().customer_max_open_orders

    async def one() -> bool:
        async with committed_sessions() as session:
            try:
                await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                                   actor=Actor("customer", str(c.account.id)))
                await session.commit()
                return True
            except TooManyOpenOrders:
                return False

    results = await asyncio.gather(*(one() for _ in range(cap + 4)))
    assert results.count(True) == cap
    async with committed_sessions() as session:
        rows = (await session.exec(select(Order).where(Order.customer_id == c.customer.id))).all()
        assert len(rows) == cap


async def _online(session: AsyncSession, index, east_deg: float, kinds: tuple[str, ...]):  # noqa: ANN001, ANN202
    ctx = await make_technician(session, kinds=kinds)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=CENTER[0] + east_deg, lat=CENTER[1],
                                 at=datetime.now(timezone.utc))
    return ctx


async def _open_offer(session: AsyncSession, order_id: uuid.UUID):  # noqa: ANN202
    from matching.models import Offer

    return (await session.exec(select(Offer).where(Offer.order_id == order_id, Offer.status == "offered"))).one()


async def test_a_customers_order_history_names_no_other_order_nor_a_decline_reason(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    index = engine.geo_index(redis)
    near = await _online(session, index, 0.001, ("repair",))
    far = await _online(session, index, 0.003, ("repair", "emergency"))
    mine = await make_customer(session, *CENTER)
    neighbour = await make_customer(session, *CENTER)
    order = await create_order(session, customer_id=mine.customer.id, address_id=mine.address.id, kind="repair",
                               actor=Actor("customer", str(mine.account.id)))
    live = redis.pubsub()  # what the customer's order page receives
    await live.subscribe(order_channel(order.id))
    assert (await live.get_message(timeout=1.0))["type"] == "subscribe"
    await drain(session)
    await engine.run_batch(session, index)
    private = "the customer was rude on the phone last time"
    await engine.decline_offer(session, index, (await _open_offer(session, order.id)).id, near.technician.id, private)
    await engine.run_batch(session, index)
    await engine.accept_offer(session, (await _open_offer(session, order.id)).id, far.technician.id)
    # The neighbour's gas-leak emergency takes the technician from this routine job.
    emergency = await create_order(session, customer_id=neighbour.customer.id, address_id=neighbour.address.id,
                                   kind="emergency_leak", actor=Actor("customer", str(neighbour.account.id)))
    await drain(session)
    assert (await session.get(Order, order.id, populate_existing=True)).status == "matching"
    await after_commit.run(session)
    pushed = []
    while (frame := await live.get_message(ignore_subscribe_messages=True, timeout=1.0)) is not None:
        pushed.append(frame["data"])
    await live.aclose()

    leaks = (str(emergency.id), private)
    events = await client.get(f"{ORDERS}/{order.id}/events", headers=mine.headers)
    assert events.status_code == 200
    assert [e["action"] for e in events.json()["data"]][-1] == "preempt"
    shown = await client.get(f"{ORDERS}/{order.id}", headers=mine.headers)
    listed = await client.get(ORDERS, headers=mine.headers)
    for response in (events, shown, listed):
        assert not any(secret in response.text for secret in leaks), response.text
    assert any('"action": "preempt"' in frame for frame in pushed), pushed
    assert not any(secret in frame for secret in leaks for frame in pushed), pushed
    assert shown.json()["status_reason"] is None
    assert str(near.technician.id) not in events.text  # who else was offered the job is not his business

    _, admin = await make_staff(session, "admin")
    audit = await client.get(f"{ORDERS}/{order.id}/events", headers=admin)
    assert all(secret in audit.text for secret in leaks)  # operations keep the whole record


async def test_cancellation_reasons_stay_visible_to_the_customer(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    order = (await place(client, c)).json()
    await client.post(f"{ORDERS}/{order['id']}/cancel", headers=c.headers, json={"reason": "fixed it myself"})
    events = (await client.get(f"{ORDERS}/{order['id']}/events", headers=c.headers)).json()["data"]
    assert [e["reason"] for e in events if e["action"] == "cancel"] == ["fixed it myself"]
