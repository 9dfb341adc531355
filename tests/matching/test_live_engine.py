"""The live engine on real PostgreSQL/PostGIS and Redis: offers, expiry, emergencies, capacity."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.events import drain
from dispatch.models import CustomerBlock, Order
from dispatch.service import Actor, create_order, order_events, transition
from matching import service as engine
from matching.models import Offer
from tests.factories import make_customer, make_technician, online_technician

CENTER = (120.155, 30.274)


async def new_order(session: AsyncSession, kind: str = "repair", lon: float = CENTER[0], lat: float = CENTER[1],
                    now: datetime | None = None) -> Order:
    c = await make_customer(session, lon=lon, lat=lat)
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind=kind,
                               actor=Actor("customer", str(c.account.id)), now=now)
    await drain(session)  # order_created -> matching (and an immediate offer for emergencies)
    return await session.get(Order, order.id, populate_existing=True)


async def open_offer(session: AsyncSession, order_id: uuid.UUID) -> Offer | None:
    return (await session.exec(select(Offer).where(Offer.order_id == order_id, Offer.status == "offered"))).first()


async def test_emergency_is_offered_at_once_to_the_nearest_emergency_technician(session: AsyncSession, index) -> None:  # noqa: ANN001
    near = await online_technician(session, index, CENTER[0] + 0.003, CENTER[1], kinds=("repair", "emergency"))
    await online_technician(session, index, CENTER[0] + 0.001, CENTER[1], kinds=("repair",))  # closer, not certified
    order = await new_order(session, kind="emergency_leak")
    assert order.status == "offered"
    offer = await open_offer(session, order.id)
    assert offer.technician_id == near.technician.id
    assert offer.expires_at - offer.created_at == timedelta(seconds=15)


async def test_emergency_is_offered_before_routine_orders_created_earlier(session: AsyncSession, index) -> None:  # noqa: ANN001
    only = await online_technician(session, index, CENTER[0], CENTER[1], kinds=("repair", "emergency"))
    routine = await new_order(session, kind="repair")
    assert routine.status == "matching"  # routine waits for the batch window
    emergency = await new_order(session, kind="emergency_leak")
    offers = await engine.run_batch(session, index)
    assert offers == []  # the only technician's slot is reserved by the emergency offer
    assert (await open_offer(session, emergency.id)).technician_id == only.technician.id
    assert await open_offer(session, routine.id) is None


async def test_offer_expiry_moves_to_the_next_candidate(session: AsyncSession, index) -> None:  # noqa: ANN001
    first = await online_technician(session, index, CENTER[0] + 0.002, CENTER[1])
    second = await online_technician(session, index, CENTER[0] + 0.02, CENTER[1])
    order = await new_order(session)
    await engine.run_batch(session, index)
    offer = await open_offer(session, order.id)
    assert offer.technician_id == first.technician.id
    later = offer.expires_at + timedelta(seconds=1)
    assert await engine.expire_offers(session, index, later) == 1
    await engine.run_batch(session, index, later)
    assert (await open_offer(session, order.id)).technician_id == second.technician.id
    with pytest.raises(engine.OfferNotAcceptable):
        await engine.accept_offer(session, offer.id, first.technician.id, later)


async def test_declines_up_to_the_limit_leave_the_order_unfulfilled_with_a_reason(session: AsyncSession, index, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "max_offer_attempts", 2)
    a = await online_technician(session, index, CENTER[0] + 0.002, CENTER[1])
    b = await online_technician(session, index, CENTER[0] + 0.004, CENTER[1])
    order = await new_order(session)
    for tech in (a, b):
        await engine.run_batch(session, index)
        offer = await open_offer(session, order.id)
        assert offer.technician_id == tech.technician.id
        await engine.decline_offer(session, index, offer.id, tech.technician.id, "too far")
    order = await session.get(Order, order.id, populate_existing=True)
    assert (order.status, order.status_reason) == ("unfulfilled", "no_technician_accepted")
    assert (await order_events(session, order.id))[-1].payload == {"offers": 2}


async def test_accepting_sets_the_technician_and_fills_his_capacity(client: AsyncClient, session: AsyncSession, index) -> None:  # noqa: ANN001
    tech = await online_technician(session, index, CENTER[0] + 0.002, CENTER[1], max_jobs=1)
    order = await new_order(session)
    await engine.run_batch(session, index)
    offers = (await client.get("/v1/offers", headers=tech.headers)).json()["data"]
    assert [o["order_id"] for o in offers] == [str(order.id)]
    assert offers[0]["area"]["coordinates"] == [round(CENTER[0], 3), round(CENTER[1], 3)]
    accepted = await client.post(f"/v1/offers/{offers[0]['id']}/accept", headers=tech.headers)
    assert accepted.status_code == 200, accepted.text
    order = await session.get(Order, order.id, populate_existing=True)
    assert (order.status, order.technician_id) == ("accepted", tech.technician.id)
    again = await client.post(f"/v1/offers/{offers[0]['id']}/accept", headers=tech.headers)
    assert again.status_code == 409
    # At capacity: the next order is not offered to him.
    second = await new_order(session)
    assert await engine.run_batch(session, index) == []
    assert (await session.get(Order, second.id, populate_existing=True)).status == "matching"


async def test_batch_never_offers_a_technician_more_than_his_capacity(session: AsyncSession, index) -> None:  # noqa: ANN001
    await online_technician(session, index, CENTER[0], CENTER[1], max_jobs=2)
    orders = [await new_order(session, lon=CENTER[0] + 0.001 * i) for i in range(4)]
    offers = await engine.run_batch(session, index)
    assert len(offers) == 2
    assert len({o.order_id for o in offers}) == 2
    assert {(await session.get(Order, o.id, populate_existing=True)).status for o in orders} == {"offered", "matching"}


async def test_ineligible_technicians_get_no_offer(session: AsyncSession, index) -> None:  # noqa: ANN001
    now = datetime.now(timezone.utc)
    await online_technician(session, index, CENTER[0], CENTER[1], kinds=("inspection",))  # wrong skill
    await online_technician(session, index, CENTER[0] + 0.3, CENTER[1])  # ~29 km: out of range
    stale = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    await index.set_availability(technician_id=str(stale.technician.id), city="demo", status="online", active_jobs=0,
                                 max_jobs=1, position=(CENTER[0] + 0.001, CENTER[1], now - timedelta(seconds=120)))
    expired = await make_technician(session, valid_until=now + timedelta(seconds=5))
    await engine.go_online(session, index, expired.technician)
    await engine.record_position(session, index, expired.technician, lon=CENTER[0], lat=CENTER[1], at=now)
    order = await new_order(session)
    assert await engine.run_batch(session, index, now + timedelta(seconds=10)) == []
    assert (await session.get(Order, order.id, populate_existing=True)).status == "matching"


async def test_customer_blocked_technician_is_skipped(client: AsyncClient, session: AsyncSession, index) -> None:  # noqa: ANN001
    blocked = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    other = await online_technician(session, index, CENTER[0] + 0.01, CENTER[1])
    c = await make_customer(session)
    assert (await client.post("/v1/customers/me/blocked-technicians", headers=c.headers,
                              json={"technician_id": str(blocked.technician.id)})).status_code == 201
    created = await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})
    await drain(session)
    await engine.run_batch(session, index)
    assert (await open_offer(session, uuid.UUID(created.json()["id"]))).technician_id == other.technician.id


async def test_a_rounds_exclusions_are_each_orders_own(session: AsyncSession, index) -> None:  # noqa: ANN001
    """The round reads every waiting order's exclusions in one query: a customer's block and a
    decline keep the technician from that order only."""
    near = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1], max_jobs=3)
    far = await online_technician(session, index, CENTER[0] + 0.03, CENTER[1], max_jobs=3)
    blocked, declined, free = [await new_order(session) for _ in range(3)]
    now = datetime.now(timezone.utc)
    session.add(CustomerBlock(customer_id=blocked.customer_id, technician_id=near.technician.id))
    session.add(Offer(order_id=declined.id, technician_id=near.technician.id, city_id=declined.city_id,
                      status="declined", policy="batch", attempt=1, distance_m=100.0, eta_s=12.0, created_at=now,
                      expires_at=now, decided_at=now))
    await session.flush()
    later = now + timedelta(seconds=30)  # past adaptive batching's window for contended orders
    offered = {o.order_id: o.technician_id for o in await engine.run_batch(session, index, later)}
    assert offered == {blocked.id: far.technician.id, declined.id: far.technician.id, free.id: near.technician.id}


async def test_customer_pick_becomes_a_direct_offer_and_falls_back_when_declined(client: AsyncClient, session: AsyncSession, index) -> None:  # noqa: ANN001
    picked = await online_technician(session, index, CENTER[0] + 0.02, CENTER[1])
    nearer = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    c = await make_customer(session)
    nearby = (await client.get("/v1/technicians/nearby", headers=c.headers,
                               params={"address_id": str(c.address.id), "kind": "repair"})).json()["data"]
    assert [t["id"] for t in nearby] == [str(nearer.technician.id), str(picked.technician.id)]
    assert all(t["distance_m"] % 100 == 0 for t in nearby)
    created = await client.post("/v1/orders", headers=c.headers, json={
        "kind": "repair", "address_id": str(c.address.id), "preferred_technician_id": str(picked.technician.id)})
    await drain(session)
    order_id = uuid.UUID(created.json()["id"])
    offer = await open_offer(session, order_id)
    assert (offer.technician_id, offer.policy) == (picked.technician.id, "direct")
    await engine.decline_offer(session, index, offer.id, picked.technician.id, "busy today")
    await engine.run_batch(session, index)
    assert (await open_offer(session, order_id)).technician_id == nearer.technician.id


async def test_position_fixes_are_validated_and_jumps_rejected(client: AsyncClient, session: AsyncSession, index) -> None:  # noqa: ANN001
    from matching.index import POSITION_UPDATES

    tech = await online_technician(session, index, CENTER[0], CENTER[1])
    now = datetime.now(timezone.utc)

    def fix(lon: float, lat: float, at: datetime) -> dict:
        return {"position": {"type": "Point", "coordinates": [lon, lat]}, "ts": at.isoformat()}

    ok = await client.post("/v1/technicians/me/location", headers=tech.headers, json=fix(CENTER[0] + 0.0001, CENTER[1], now + timedelta(seconds=1)))
    assert ok.status_code == 202 and ok.json()["outcome"] == "accepted"
    jumps_before = POSITION_UPDATES.labels("implausible_jump")._value.get()
    jump = await client.post("/v1/technicians/me/location", headers=tech.headers, json=fix(CENTER[0] + 0.5, CENTER[1], now + timedelta(seconds=2)))
    assert jump.status_code == 422 and jump.json()["type"] == "/problems/implausible-position"
    assert POSITION_UPDATES.labels("implausible_jump")._value.get() == jumps_before + 1
    future = await client.post("/v1/technicians/me/location", headers=tech.headers, json=fix(CENTER[0], CENTER[1], now + timedelta(hours=1)))
    assert future.status_code == 422
    out_of_order = await client.post("/v1/technicians/me/location", headers=tech.headers, json=fix(CENTER[0], CENTER[1], now - timedelta(seconds=30)))
    assert out_of_order.json()["outcome"] == "stale"
    bad = await client.post("/v1/technicians/me/location", headers=tech.headers, json=fix(200.0, CENTER[1], now))
    assert bad.status_code == 422
    assert (await index.get(str(tech.technician.id), tech.technician.city_id)).lon == pytest.approx(CENTER[0] + 0.0001)


async def test_going_offline_lapses_open_offers(session: AsyncSession, index) -> None:  # noqa: ANN001
    a = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    b = await online_technician(session, index, CENTER[0] + 0.01, CENTER[1])
    order = await new_order(session)
    await engine.run_batch(session, index)
    assert (await open_offer(session, order.id)).technician_id == a.technician.id
    await engine.go_offline(session, index, a.technician)
    await after_commit.run(session)  # the live index hears of it once committed
    await engine.run_batch(session, index)
    assert (await open_offer(session, order.id)).technician_id == b.technician.id
    assert await index.nearby("demo", CENTER[0], CENTER[1], k=5, max_radius_m=5000) != []
    assert str(a.technician.id) not in [t.id for t in await index.nearby("demo", CENTER[0], CENTER[1], k=5, max_radius_m=5000)]


async def test_each_round_reads_the_supply_afresh_so_a_move_or_going_offline_is_never_offered_stale(
        session: AsyncSession, index) -> None:  # noqa: ANN001
    east = (CENTER[0] + 0.02, CENTER[1])
    nearest_east = await online_technician(session, index, east[0] + 0.001, east[1])
    mover = await online_technician(session, index, CENTER[0] - 0.03, CENTER[1])
    first = await new_order(session, lon=CENTER[0] - 0.029, lat=CENTER[1])
    await engine.run_batch(session, index)  # a round, so a snapshot kept between rounds would hold both
    assert (await open_offer(session, first.id)).technician_id == mover.technician.id
    await engine.go_offline(session, index, nearest_east.technician)
    await after_commit.run(session)
    moved_at = datetime.now(timezone.utc) + timedelta(minutes=5)  # 3 km in 5 min is a plausible drive
    assert await engine.record_position(session, index, mover.technician, lon=east[0] + 0.003, lat=east[1],
                                        at=moved_at, now=moved_at) == "accepted"
    supply = await index.supply(mover.technician.city_id)
    assert supply.ids == [str(mover.technician.id)]
    assert (supply.lon[0], supply.lat[0]) == (pytest.approx(east[0] + 0.003), pytest.approx(east[1]))
    await engine.decline_offer(session, index, (await open_offer(session, first.id)).id, mover.technician.id, "busy")
    second = await new_order(session, lon=east[0], lat=east[1])
    await engine.run_batch(session, index)
    offer = await open_offer(session, second.id)
    assert offer.technician_id == mover.technician.id
    assert offer.distance_m == pytest.approx(3 * 96, rel=0.05)  # from where he is now, not where he was


async def test_overdue_orders_become_unfulfilled(session: AsyncSession, index) -> None:  # noqa: ANN001
    order = await new_order(session)
    assert await engine.sweep_unfulfilled(session, order.sla_deadline + timedelta(seconds=1)) == 1
    order = await session.get(Order, order.id, populate_existing=True)
    assert (order.status, order.status_reason) == ("unfulfilled", "sla_deadline_passed")


async def test_offers_of_a_silent_technician_move_on_but_a_connected_one_keeps_them(session: AsyncSession, index) -> None:  # noqa: ANN001
    from kit.fanout import presence_key

    silent = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    other = await online_technician(session, index, CENTER[0] + 0.01, CENTER[1])
    order = await new_order(session)
    await engine.run_batch(session, index)
    assert (await open_offer(session, order.id)).technician_id == silent.technician.id
    soon = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert await engine.lapse_offers_of_absent(session, index, soon) == 0  # his last fix is fresh

    later = datetime.now(timezone.utc) + timedelta(seconds=61)
    await index.redis.set(presence_key(silent.technician.id), "1")
    assert await engine.lapse_offers_of_absent(session, index, later) == 0  # socket still open

    await index.redis.delete(presence_key(silent.technician.id))
    assert await engine.lapse_offers_of_absent(session, index, later) == 1
    await engine.expire_offers(session, index, later)
    # The other technician's fix is as old: give him a fresh one at the new time.
    await engine.record_position(session, index, other.technician, lon=CENTER[0] + 0.01, lat=CENTER[1], at=later, now=later)
    await engine.run_batch(session, index, later)
    assert (await open_offer(session, order.id)).technician_id == other.technician.id


async def test_emergency_preempts_a_routine_job_not_yet_started(session: AsyncSession, index) -> None:  # noqa: ANN001
    tech = await online_technician(session, index, CENTER[0] + 0.002, CENTER[1], kinds=("repair", "emergency"))
    routine = await new_order(session)
    await engine.run_batch(session, index)
    offer = await open_offer(session, routine.id)
    await engine.accept_offer(session, offer.id, tech.technician.id)
    emergency = await new_order(session, kind="emergency_leak")
    assert (await open_offer(session, emergency.id)).technician_id == tech.technician.id
    routine = await session.get(Order, routine.id, populate_existing=True)
    assert (routine.status, routine.technician_id) == ("matching", None)
    assert routine.status_reason == "preempted_by_emergency"
    assert (await order_events(session, routine.id))[-1].payload["emergency_order_id"] == str(emergency.id)


async def test_emergency_does_not_preempt_when_disabled_or_job_started(session: AsyncSession, index, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    tech = await online_technician(session, index, CENTER[0] + 0.002, CENTER[1], kinds=("repair", "emergency"))
    routine = await new_order(session)
    await engine.run_batch(session, index)
    await engine.accept_offer(session, (await open_offer(session, routine.id)).id, tech.technician.id)
    monkeypatch.setattr(get_settings(), "emergency_preempt", False)
    first = await new_order(session, kind="emergency_leak")
    assert first.status == "matching"
    monkeypatch.setattr(get_settings(), "emergency_preempt", True)
    await transition(session, routine.id, "depart", Actor("technician", str(tech.technician.id)))
    second = await new_order(session, kind="emergency_leak")
    assert second.status == "matching"
    assert (await session.get(Order, routine.id, populate_existing=True)).technician_id == tech.technician.id
