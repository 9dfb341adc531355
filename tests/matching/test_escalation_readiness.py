"""Emergency readiness in the live engine: an area's reserve of free emergency technicians is
priced for routine work, and idle emergency technicians get a hint towards uncovered areas."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.events import drain
from kit.fanout import account_channel
from kit.geo import point, polygon_from_geojson
from dispatch.models import Order, ServiceStation
from dispatch.service import Actor, create_order
from matching import service as engine
from matching.models import Offer
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    return engine.geo_index(redis)


async def station(session: AsyncSession, lon: float, name: str) -> ServiceStation:
    d = 0.02
    ring = [[lon - d, CENTER[1] - d], [lon + d, CENTER[1] - d], [lon + d, CENTER[1] + d], [lon - d, CENTER[1] + d],
            [lon - d, CENTER[1] - d]]
    row = ServiceStation(name=name, city="demo", location=point(lon, CENTER[1]),
                         service_area=polygon_from_geojson({"type": "Polygon", "coordinates": [ring]}))
    session.add(row)
    await session.flush()
    return row


async def online(session: AsyncSession, index, lon: float, kinds: tuple[str, ...]):  # noqa: ANN001, ANN201
    ctx = await make_technician(session, kinds=kinds)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=lon, lat=CENTER[1], at=datetime.now(timezone.utc))
    return ctx


async def order(session: AsyncSession, kind: str, lon: float, created_at: datetime | None = None) -> Order:
    c = await make_customer(session, lon=lon, lat=CENTER[1])
    made = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind=kind,
                              actor=Actor("customer", str(c.account.id)), now=created_at)
    return made


async def past_emergency(session: AsyncSession, lon: float) -> None:
    """A leak last week in the area, long dealt with: it sets the area's emergency rate."""
    leak = await order(session, "emergency_leak", lon, datetime.now(timezone.utc) - timedelta(days=7))
    leak.status = "cancelled"
    session.add(leak)
    await session.flush()


async def offered_to(session: AsyncSession, order_id) -> set:  # noqa: ANN001
    return set((await session.exec(select(Offer.technician_id).where(Offer.order_id == order_id))).all())


async def test_routine_work_goes_around_the_areas_last_free_emergency_technician(session: AsyncSession, index) -> None:  # noqa: ANN001
    await station(session, CENTER[0], "东城服务站")
    await past_emergency(session, CENTER[0])
    reserve = await online(session, index, CENTER[0] + 0.001, ("repair", "emergency"))
    other = await online(session, index, CENTER[0] + 0.006, ("repair",))  # ~0.5 km farther
    routine = await order(session, "repair", CENTER[0])
    await drain(session)
    await engine.run_batch(session, index)
    assert await offered_to(session, routine.id) == {other.technician.id}
    assert reserve.technician.id not in await offered_to(session, routine.id)


async def test_without_emergencies_in_the_area_the_nearest_takes_routine_work(session: AsyncSession, index) -> None:  # noqa: ANN001
    await station(session, CENTER[0], "东城服务站")
    nearest = await online(session, index, CENTER[0] + 0.001, ("repair", "emergency"))
    await online(session, index, CENTER[0] + 0.006, ("repair",))
    routine = await order(session, "repair", CENTER[0])
    await drain(session)
    await engine.run_batch(session, index)
    assert await offered_to(session, routine.id) == {nearest.technician.id}


async def test_idle_emergency_technician_is_hinted_towards_an_uncovered_area(session: AsyncSession, index, redis) -> None:  # noqa: ANN001
    uncovered = await station(session, CENTER[0], "东城服务站")
    await station(session, CENTER[0] + 0.1, "西城服务站")  # no emergencies: keeps nobody
    await past_emergency(session, CENTER[0])
    spare = await online(session, index, CENTER[0] + 0.1, ("repair", "emergency"))
    listener = redis.pubsub()
    await listener.subscribe(account_channel(spare.account.id))
    after_commit.discard(session)
    await engine.run_batch(session, index)
    await session.commit()
    await after_commit.run(session)
    hint = None
    for _ in range(20):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None and json.loads(message["data"])["type"] == "reposition":
            hint = json.loads(message["data"])
            break
    assert hint is not None and hint["station_id"] == str(uncovered.id)
    assert "offer_id" not in hint
    after_commit.discard(session)
    await engine.run_batch(session, index)  # once per period
    await session.commit()
    await after_commit.run(session)
    again = await listener.get_message(ignore_subscribe_messages=True, timeout=0.3)
    assert again is None or json.loads(again["data"])["type"] != "reposition"
    await listener.aclose()
