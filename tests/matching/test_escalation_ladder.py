"""The escalation ladder in the live engine, on real PostgreSQL/PostGIS and Redis: K offers at
once, first accept wins and the others are withdrawn (their phones told), a wider round when a
round lapses, a re-offer after the cooldown, ops alerts at the threshold, timeline events."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from dispatch.alerts import OpsAlert, acknowledge, ops_channel
from kit.events import drain
from kit.fanout import account_channel
from dispatch.models import Order, OrderEvent
from dispatch.service import Actor, create_order
from matching import service as engine
from matching.models import Offer
from tests.factories import make_customer, make_staff, make_technician

CENTER = (120.155, 30.274)
KM_LON = 1 / (111.32 * 0.8645)  # degrees of longitude per km at this latitude


async def emergency_tech(session: AsyncSession, index, km: float, **kw):  # noqa: ANN001, ANN003, ANN201
    ctx = await make_technician(session, kinds=("repair", "emergency"), **kw)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=CENTER[0] + km * KM_LON, lat=CENTER[1],
                                 at=datetime.now(timezone.utc))
    return ctx


async def leak(session: AsyncSession) -> Order:
    c = await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="emergency_leak",
                               actor=Actor("customer", str(c.account.id)))
    await drain(session)
    return await session.get(Order, order.id, populate_existing=True)


async def open_offers(session: AsyncSession, order_id: uuid.UUID) -> list[Offer]:
    return list((await session.exec(select(Offer).where(Offer.order_id == order_id, Offer.status == "offered")
                                    .order_by(Offer.distance_m))).all())


async def next_message(listener, kind: str) -> dict:  # noqa: ANN001
    """The next message of this type (subscribe confirmations come back as None; the ops
    channel also carries order status changes)."""
    for _ in range(20):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None and json.loads(message["data"])["type"] == kind:
            return json.loads(message["data"])
    raise AssertionError(f"no {kind} published")


async def actions(session: AsyncSession, order_id: uuid.UUID) -> list[str]:
    return [e.action for e in (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order_id)
                                                  .order_by(OrderEvent.id))).all()]


async def test_emergency_goes_to_the_three_nearest_at_once(session: AsyncSession, index) -> None:  # noqa: ANN001
    techs = [await emergency_tech(session, index, km) for km in (0.5, 1.0, 1.5, 2.0)]
    order = await leak(session)
    offers = await open_offers(session, order.id)
    assert order.status == "offered"
    assert [o.technician_id for o in offers] == [t.technician.id for t in techs[:3]]
    assert {o.policy for o in offers} == {"emergency"}
    assert (await actions(session, order.id))[-2:] == ["offer_round", "offer"]


async def test_first_accept_wins_and_the_others_are_withdrawn_and_told(session: AsyncSession, index, redis) -> None:  # noqa: ANN001
    techs = [await emergency_tech(session, index, km) for km in (0.5, 1.0, 1.5)]
    order = await leak(session)
    offers = await open_offers(session, order.id)
    listener = redis.pubsub()
    await listener.subscribe(*(account_channel(t.account.id) for t in techs))
    after_commit.discard(session)  # the offers' own pushes
    await engine.accept_offer(session, offers[1].id, techs[1].technician.id)
    await session.commit()
    await after_commit.run(session)
    order = await session.get(Order, order.id, populate_existing=True)
    assert (order.status, order.technician_id) == ("accepted", techs[1].technician.id)
    statuses = {o.technician_id: o.status for o in (await session.exec(
        select(Offer).where(Offer.order_id == order.id).execution_options(populate_existing=True))).all()}
    assert statuses == {techs[0].technician.id: "withdrawn", techs[1].technician.id: "accepted",
                        techs[2].technician.id: "withdrawn"}
    told = []
    for _ in range(20):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            told.append((message["channel"], json.loads(message["data"])))
    withdrawn = {channel for channel, body in told if body["type"] == "offer_withdrawn" and body["reason"] == "taken"}
    assert withdrawn == {account_channel(techs[0].account.id), account_channel(techs[2].account.id)}
    with pytest.raises(engine.OfferNotAcceptable):
        await engine.accept_offer(session, offers[0].id, techs[0].technician.id)
    await listener.aclose()


async def test_two_accepts_at_the_same_time_give_the_order_to_exactly_one(committed_sessions, index) -> None:  # noqa: ANN001
    async with committed_sessions() as session:
        techs = [await emergency_tech(session, index, km) for km in (0.5, 1.0)]
        order = await leak(session)
        offers = await open_offers(session, order.id)
        await session.commit()

    async def accept(offer: Offer, tech) -> str:  # noqa: ANN001
        async with committed_sessions() as session:
            try:
                await engine.accept_offer(session, offer.id, tech.technician.id)
                await session.commit()
                return "won"
            except engine.OfferNotAcceptable:
                await session.rollback()
                return "lost"

    results = await asyncio.gather(*(accept(o, t) for o, t in zip(offers, techs)))
    assert sorted(results) == ["lost", "won"]
    async with committed_sessions() as session:
        rows = (await session.exec(select(Offer.status).where(Offer.order_id == order.id))).all()
        assert sorted(rows) == ["accepted", "withdrawn"]


async def test_a_lapsed_round_widens_to_the_next(session: AsyncSession, index) -> None:  # noqa: ANN001
    near = [await emergency_tech(session, index, km) for km in (0.5, 1.0, 1.5, 2.0)]
    far = await emergency_tech(session, index, 5.0)  # beyond round 1's 3 km
    order = await leak(session)
    first = await open_offers(session, order.id)
    assert far.technician.id not in {o.technician_id for o in first}
    later = first[0].expires_at + timedelta(seconds=1)
    for t in (*near, far):  # fresh positions at the later time
        await engine.record_position(session, index, t.technician, lon=(await index.get(str(t.technician.id), t.technician.city_id)).lon,
                                     lat=CENTER[1], at=later, now=later)
    assert await engine.expire_offers(session, index, later) == 3
    second = await open_offers(session, order.id)
    # Round 2 (8 km, K=5): the two nobody asked yet; the three who let it lapse cool down.
    assert {o.technician_id for o in second} == {near[3].technician.id, far.technician.id}
    steps = await actions(session, order.id)
    assert steps.count("offer_round") == 2 and "escalated" in steps and "offer_lapsed" in steps
    escalated = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id,
                                                             OrderEvent.action == "escalated"))).one()
    assert escalated.payload == {"round": 2, "radius_m": 8000.0}


async def test_the_only_technician_is_offered_again_after_the_cooldown(session: AsyncSession, index) -> None:  # noqa: ANN001
    only = await emergency_tech(session, index, 1.0)
    order = await leak(session)
    offer = (await open_offers(session, order.id))[0]
    lapsed_at = offer.expires_at + timedelta(seconds=1)
    await engine.expire_offers(session, index, lapsed_at)
    assert await open_offers(session, order.id) == []  # cooling down: not at once
    soon = lapsed_at + timedelta(seconds=30)
    await engine.record_position(session, index, only.technician, lon=CENTER[0] + KM_LON, lat=CENTER[1], at=soon, now=soon)
    await engine.run_batch(session, index, soon)
    assert await open_offers(session, order.id) == []
    after = lapsed_at + timedelta(seconds=61)
    await engine.record_position(session, index, only.technician, lon=CENTER[0] + KM_LON, lat=CENTER[1], at=after, now=after)
    await engine.run_batch(session, index, after)
    again = await open_offers(session, order.id)
    assert [o.technician_id for o in again] == [only.technician.id]
    assert again[0].id != offer.id


async def test_without_escalation_a_lapsed_technician_is_never_offered_again(session: AsyncSession, index, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "escalation_enabled", False)
    only = await emergency_tech(session, index, 1.0)
    await emergency_tech(session, index, 2.0)
    order = await leak(session)
    assert len(await open_offers(session, order.id)) == 1  # one at a time
    offer = (await open_offers(session, order.id))[0]
    much_later = offer.expires_at + timedelta(minutes=10)
    await engine.expire_offers(session, index, offer.expires_at + timedelta(seconds=1))
    await engine.record_position(session, index, only.technician, lon=CENTER[0] + KM_LON, lat=CENTER[1],
                                 at=much_later, now=much_later)
    await engine.run_batch(session, index, much_later)
    assert only.technician.id not in {o.technician_id for o in await open_offers(session, order.id)}


async def test_unaccepted_emergency_alerts_ops_once_and_is_acknowledged(session: AsyncSession, index, redis) -> None:  # noqa: ANN001
    order = await leak(session)  # nobody online: it waits in matching
    listener = redis.pubsub()
    await listener.subscribe(ops_channel("demo"))
    assert await engine.raise_due_alerts(session, order.created_at + timedelta(seconds=119)) == 0
    at = order.created_at + timedelta(seconds=121)
    assert await engine.raise_due_alerts(session, at) == 1
    await session.commit()
    await after_commit.run(session)
    assert await engine.raise_due_alerts(session, at + timedelta(seconds=60)) == 0  # raised once
    alert = (await session.exec(select(OpsAlert).where(OpsAlert.order_id == order.id))).one()
    assert (alert.kind, alert.level, alert.acknowledged_at) == ("emergency_unaccepted", "critical", None)
    assert "alerted" in await actions(session, order.id)
    body = await next_message(listener, "alert")
    assert (body["v"], body["type"], body["alert"]["id"], body["alert"]["order_id"]) == (1, "alert", str(alert.id), str(order.id))

    admin, _ = await make_staff(session, "admin")
    await acknowledge(session, alert.id, admin.id)
    await session.commit()
    await after_commit.run(session)
    acked = await next_message(listener, "alert_acknowledged")
    assert (acked["type"], acked["id"]) == ("alert_acknowledged", str(alert.id))
    assert await engine.raise_due_alerts(session, at + timedelta(seconds=120)) == 0  # still once after the ack
    await listener.aclose()
