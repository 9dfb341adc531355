"""Emergency readiness in the live engine: routine work may not take an area's reserve of free
emergency technicians, and idle emergency technicians get a hint towards uncovered areas."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.config import get_settings
from kit.events import drain
from kit.fanout import account_channel
from kit.geo import point, polygon_from_geojson
from dispatch.models import Order, ServiceStation
from dispatch.service import Actor, create_order
from matching import service as engine
from matching.escalation import reserve_floor
from matching.candidates import OfferCandidate
from matching.models import Offer
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


@pytest.fixture(autouse=True)
def one_hour_of_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """The areas' emergency rates from the last hour: one leak in it is a busy area (a floor of
    one at the default cover probability)."""
    monkeypatch.setattr(get_settings(), "reserve_history_days", 1 / 24)


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
    """A leak earlier this hour in the area, dealt with: it sets the area's emergency rate."""
    leak = await order(session, "emergency_leak", lon, datetime.now(timezone.utc) - timedelta(minutes=20))
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
    why = {row.technician_id: row.reason for row in (await session.exec(
        select(OfferCandidate).where(OfferCandidate.order_id == routine.id))).all()}
    assert why[reserve.technician.id] == "reserved_for_emergencies"


async def test_routine_work_waits_rather_than_drain_the_reserve(session: AsyncSession, index) -> None:  # noqa: ANN001
    await station(session, CENTER[0], "东城服务站")
    await past_emergency(session, CENTER[0])
    reserve = await online(session, index, CENTER[0] + 0.001, ("repair", "emergency"))
    routine = await order(session, "repair", CENTER[0])
    await drain(session)
    await engine.run_batch(session, index)
    assert await offered_to(session, routine.id) == set()
    leak = await order(session, "emergency_leak", CENTER[0])
    await drain(session)
    await engine.run_batch(session, index)
    assert await offered_to(session, leak.id) == {reserve.technician.id}


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
    # What his phone shows without looking anything up: the station's name and where its area is.
    assert hint["station_name"] == "东城服务站"
    assert hint["area"] == {"type": "Point", "coordinates": [pytest.approx(CENTER[0]), pytest.approx(CENTER[1])]}
    assert "offer_id" not in hint
    after_commit.discard(session)
    await engine.run_batch(session, index)  # once per period
    await session.commit()
    await after_commit.run(session)
    again = await listener.get_message(ignore_subscribe_messages=True, timeout=0.3)
    assert again is None or json.loads(again["data"])["type"] != "reposition"
    await listener.aclose()


@pytest.mark.parametrize(("per_hour", "floor"), [(0.0, 0), (0.05, 0), (0.5, 0), (1.0, 1), (4.0, 3)])
def test_the_floor_covers_one_sla_of_the_areas_emergencies(per_hour: float, floor: int) -> None:
    # Poisson arrivals within 30 minutes, all covered with probability 0.7: a quiet area keeps nobody.
    assert reserve_floor(per_hour, 30, 0.7) == floor
