"""The city as a partition on real PostgreSQL and Redis: orders and technicians take their city,
matching runs per city, the live index hears of status changes only after the commit and
rebuilds itself after Redis loses its data, and offers are decided on the database's clock."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.cities import city_at
from dispatch.models import Account, Order, ServiceStation
from dispatch.service import Actor, create_order
from kit.db import session_scope
from kit.events import drain
from matching import service as engine
from matching.index import live_key
from tests.backbone.cities_support import (
    HANGZHOU,
    SHANGHAI,
    online_at,
    technician_of,
    two_cities,
)
from tests.factories import make_customer


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    return engine.geo_index(redis)


async def _order_at(session: AsyncSession, lon: float, lat: float) -> Order:
    c = await make_customer(session, lon=lon, lat=lat)
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                               actor=Actor("customer", str(c.account.id)))
    await drain(session)
    return await session.get(Order, order.id, populate_existing=True)


async def test_an_order_takes_the_city_of_the_station_nearest_its_address_and_a_technician_his_station(
        session: AsyncSession) -> None:
    stations = await two_cities(session)
    # Outside every service area, still nearer Shanghai's station.
    order = await _order_at(session, SHANGHAI[0] + 0.2, SHANGHAI[1])
    assert order.city_id == "shanghai"
    assert (await _order_at(session, *HANGZHOU)).city_id == "hangzhou"
    assert (await technician_of(session, stations["shanghai"])).city_id == "shanghai"


async def test_a_matching_round_takes_only_its_city_orders_and_technicians(session: AsyncSession, index) -> None:  # noqa: ANN001
    stations = await two_cities(session)
    in_hangzhou = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
    in_shanghai = await online_at(session, index, stations["shanghai"], SHANGHAI[0] + 0.002, SHANGHAI[1])
    hangzhou_order = await _order_at(session, *HANGZHOU)
    shanghai_order = await _order_at(session, *SHANGHAI)
    assert await engine.active_cities(session) == ["hangzhou", "shanghai"]

    offers = await engine.run_batch(session, index, city_id="shanghai")
    assert [(o.order_id, o.technician_id, o.city_id) for o in offers] == [
        (shanghai_order.id, in_shanghai.id, "shanghai")]
    assert (await session.get(Order, hangzhou_order.id, populate_existing=True)).status == "matching"
    offers = await engine.run_batch(session, index, city_id="hangzhou")
    assert [(o.order_id, o.technician_id) for o in offers] == [(hangzhou_order.id, in_hangzhou.id)]


async def test_going_online_reaches_the_live_index_only_once_committed(committed_sessions, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        stations = await two_cities(session)
        tech = await technician_of(session, stations["hangzhou"])
        await session.commit()

    with pytest.raises(RuntimeError):
        async with session_scope() as session:
            await engine.go_online(session, index, await session.get(type(tech), tech.id))
            raise RuntimeError("the request fails after going online")
    assert await _live_status(redis, tech.id) is None

    async with session_scope() as session:
        await engine.go_online(session, index, await session.get(type(tech), tech.id))
        assert await _live_status(redis, tech.id) is None  # not before the commit
    assert await _live_status(redis, tech.id) == "online"


async def _live_status(redis, technician_id: uuid.UUID) -> str | None:  # noqa: ANN001
    raw = await redis.hget(live_key("hangzhou"), str(technician_id))
    return json.loads(raw).get("status") if raw else None


async def test_after_redis_is_emptied_the_next_fix_puts_everyone_on_duty_back_on_the_map(
        committed_sessions, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        stations = await two_cities(session)
        moving = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
        resting = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.004, HANGZHOU[1])
        await session.commit()
    await redis.flushdb()

    # The technician socket's hot path: no technician row, no session; his city is looked up.
    await engine.record_fix(index, moving.id, lon=HANGZHOU[0] + 0.0021, lat=HANGZHOU[1], at=datetime.now(timezone.utc))
    found = {t.id: t for t in await index.nearby("hangzhou", *HANGZHOU, k=5, max_radius_m=5_000)}
    assert set(found) == {str(moving.id), str(resting.id)}
    assert found[str(moving.id)].lon == pytest.approx(HANGZHOU[0] + 0.0021)  # the newer fix survives the rebuild


async def test_after_redis_is_emptied_the_next_matching_round_rebuilds_and_offers(session: AsyncSession, index,
                                                                                  redis) -> None:  # noqa: ANN001
    stations = await two_cities(session)
    tech = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
    order = await _order_at(session, *HANGZHOU)
    await redis.flushdb()
    offers = await engine.run_batch(session, index, city_id="hangzhou")
    assert [(o.order_id, o.technician_id) for o in offers] == [(order.id, tech.id)]


class _Skewed(datetime):
    offset = timedelta(0)

    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206
        return datetime.now(tz) + cls.offset


@pytest.fixture
def skewed_process_clock(monkeypatch):  # noqa: ANN001, ANN201
    """The matching engine's process clock, skewed by the given offset."""
    def skew(offset: timedelta) -> None:
        monkeypatch.setattr(_Skewed, "offset", offset)
        monkeypatch.setattr(engine, "datetime", _Skewed)
    return skew


async def test_a_process_clock_60s_ahead_neither_refuses_an_accept_nor_lapses_fresh_offers(
        session: AsyncSession, index, skewed_process_clock) -> None:  # noqa: ANN001
    stations = await two_cities(session)
    tech = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
    order = await _order_at(session, *HANGZHOU)
    skewed_process_clock(timedelta(seconds=60))
    [offer] = await engine.run_batch(session, index, city_id="hangzhou")
    assert await engine.expire_offers(session, index) == 0
    accepted = await engine.accept_offer(session, offer.id, tech.id)
    assert (accepted.id, accepted.status) == (order.id, "accepted")


async def test_a_process_clock_90s_ahead_or_60s_behind_still_makes_offers_that_last_their_timeout(
        session: AsyncSession, index, skewed_process_clock) -> None:  # noqa: ANN001
    stations = await two_cities(session)
    await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
    await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.004, HANGZHOU[1])
    for offset in (timedelta(seconds=90), timedelta(seconds=-60)):
        skewed_process_clock(timedelta(0))
        order = await _order_at(session, *HANGZHOU)
        skewed_process_clock(offset)
        [offer] = await engine.run_batch(session, index, city_id="hangzhou")
        assert offer.order_id == order.id
        left = offer.expires_at - await engine.database_now(session)
        assert timedelta(seconds=25) < left <= timedelta(seconds=30)


async def test_the_demo_seeds_two_cities_each_with_stations_technicians_and_customers(
        session: AsyncSession, monkeypatch) -> None:  # noqa: ANN001
    from dataclasses import replace

    from sqlalchemy import func

    from dispatch import seed
    from dispatch.models import Address, Customer, Technician

    assert {seed.CITIES[c].name for c in seed.CITIES} == {"杭州", "上海"}
    for city in ("demo", "shanghai"):  # fewer people: every account costs a slow password hash
        monkeypatch.setitem(seed.CITIES, city, replace(seed.CITIES[city], technicians=3, customers=3))
        await seed.seed_city(session, city)
    for city, technicians in (("demo", 3), ("shanghai", 3)):
        stations = (await session.exec(select(ServiceStation).where(ServiceStation.city_id == city))).all()
        assert len(stations) == 3
        assert (await session.exec(select(func.count()).select_from(Technician).where(
            Technician.city_id == city))).one() == technicians
    # Every seeded home lies nearest a station of its own city.
    shanghai_homes = (await session.exec(select(Address).join(Customer).join(
        Account, Account.id == Customer.account_id).where(col(Account.email).like("%@shanghai.gasdispatch.local")))).all()
    assert shanghai_homes and {await city_at(session, a.location) for a in shanghai_homes} == {"shanghai"}


async def test_order_and_offer_gauges_and_the_ops_queue_are_per_city(session: AsyncSession, index, client) -> None:  # noqa: ANN001
    from api.observability import (
        OFFERS_BY_STATE,
        ORDERS_BY_STATE,
        refresh_marketplace_gauges,
    )
    from tests.factories import make_staff

    stations = await two_cities(session)
    in_shanghai = await online_at(session, index, stations["shanghai"], SHANGHAI[0] + 0.002, SHANGHAI[1])
    await technician_of(session, stations["hangzhou"])
    await _order_at(session, *HANGZHOU)
    await _order_at(session, *SHANGHAI)
    await engine.run_batch(session, index, city_id="shanghai")
    await refresh_marketplace_gauges(session)
    assert ORDERS_BY_STATE.labels("hangzhou", "matching")._value.get() == 1
    assert ORDERS_BY_STATE.labels("shanghai", "offered")._value.get() == 1
    assert OFFERS_BY_STATE.labels("shanghai", "offered")._value.get() == 1

    _, headers = await make_staff(session, "admin")
    queue = await client.get("/v1/ops/certifications", params={"status": "verified", "city": "shanghai"}, headers=headers)
    assert queue.status_code == 200
    assert {row["applicant"]["id"] for row in queue.json()["data"]} == {str(in_shanghai.id)}
    assert (await client.get("/v1/ops/certifications", params={"city": "{x}"}, headers=headers)).status_code == 422


async def test_a_technician_of_another_city_checks_in_at_the_door_on_his_city_track(
        session: AsyncSession, index) -> None:  # noqa: ANN001
    from dispatch.field import identity, visits

    stations = await two_cities(session)
    tech = await online_at(session, index, stations["shanghai"], SHANGHAI[0] + 0.0003, SHANGHAI[1])
    order = await _order_at(session, *SHANGHAI)
    offers = await engine.run_batch(session, index, city_id="shanghai")
    assert [o.technician_id for o in offers] == [tech.id]
    await engine.accept_offer(session, offers[0].id, tech.id)
    now = datetime.now(timezone.utc)
    await visits.depart(session, index.redis, order.id, tech.id, now)
    await identity.waive(session, order, Actor("customer", "c"), "I know him", now)
    assert (await visits.arrive(session, index.redis, order.id, tech.id, now)).status == "arrived"
