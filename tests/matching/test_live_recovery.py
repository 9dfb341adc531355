"""Races on real commits, and recovery after Redis loses everything."""

import asyncio
import shutil
import socket
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import Conflict
from kit.events import drain
from dispatch.models import Order
from dispatch.service import Actor, create_order
from matching import service as engine
from matching.models import Offer
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def _setup(factory, redis: Redis, technicians: int) -> tuple[uuid.UUID, list[uuid.UUID]]:  # noqa: ANN001
    index = engine.geo_index(redis)
    async with factory() as session:
        techs = []
        for i in range(technicians):
            ctx = await make_technician(session)
            await engine.go_online(session, index, ctx.technician)
            await engine.record_position(session, index, ctx.technician, lon=CENTER[0] + 0.002 * (i + 1),
                                         lat=CENTER[1], at=datetime.now(timezone.utc))
            techs.append(ctx.technician.id)
        c = await make_customer(session)
        order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                                   actor=Actor("customer", str(c.account.id)))
        await drain(session)
        await engine.run_batch(session, index)
        await session.commit()
        return order.id, techs


async def _accept(factory, offer_id: uuid.UUID, technician_id: uuid.UUID) -> str:  # noqa: ANN001
    async with factory() as session:
        try:
            await engine.accept_offer(session, offer_id, technician_id)
            await session.commit()
            return "won"
        except Conflict:
            await session.rollback()
            return "lost"


async def test_double_tap_accept_from_two_connections_wins_once(committed_sessions, redis) -> None:  # noqa: ANN001
    order_id, (first, _) = await _setup(committed_sessions, redis, 2)
    async with committed_sessions() as session:
        offer = (await session.exec(select(Offer).where(Offer.order_id == order_id))).one()
    results = await asyncio.gather(*(_accept(committed_sessions, offer.id, first) for _ in range(4)))
    assert sorted(results) == ["lost", "lost", "lost", "won"]


async def test_late_accept_races_the_next_candidate_and_exactly_one_technician_wins(committed_sessions, redis) -> None:  # noqa: ANN001
    order_id, (first, second) = await _setup(committed_sessions, redis, 2)
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        stale_offer = (await session.exec(select(Offer).where(Offer.order_id == order_id))).one()
    assert stale_offer.technician_id == first

    async def move_on_and_accept() -> str:
        async with committed_sessions() as session:
            later = stale_offer.expires_at + timedelta(seconds=1)
            await engine.expire_offers(session, index, later)
            offers = await engine.run_batch(session, index, later)
            await session.commit()
        if not offers:
            return "lost"
        return await _accept(committed_sessions, offers[0].id, second)

    results = await asyncio.gather(_accept(committed_sessions, stale_offer.id, first), move_on_and_accept())
    assert results.count("won") == 1
    async with committed_sessions() as session:
        order = await session.get(Order, order_id)
        accepted = (await session.exec(select(Offer).where(Offer.order_id == order_id, Offer.status == "accepted"))).all()
    assert order.status == "accepted"
    assert [o.technician_id for o in accepted] == [order.technician_id]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):  # noqa: ANN001, ANN201
    """A Redis of this test's own, so it can be killed and restarted empty."""
    port = _free_port()
    command = [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path)]
    processes = []

    async def start() -> Redis:
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        client = Redis(host="127.0.0.1", port=port, decode_responses=True)
        for _ in range(100):
            try:
                await client.ping()
                return client
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("redis did not start")

    yield start, processes
    for p in processes:
        p.kill()
        p.wait()


async def test_matching_recovers_after_redis_restarts_empty(session: AsyncSession, private_redis) -> None:  # noqa: ANN001
    start, processes = private_redis
    redis = await start()
    index = engine.geo_index(redis)
    tech = await make_technician(session)
    await engine.go_online(session, index, tech.technician)
    await engine.record_position(session, index, tech.technician, lon=CENTER[0], lat=CENTER[1],
                                 at=datetime.now(timezone.utc))  # first fix is persisted to PostgreSQL

    processes[-1].kill()
    processes[-1].wait()
    await redis.aclose()
    redis = await start()
    index = engine.geo_index(redis)
    assert await index.nearby("demo", CENTER[0], CENTER[1], k=5, max_radius_m=5000) == []

    assert await engine.rebuild_index(session, index) >= 1
    c = await make_customer(session)
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                               actor=Actor("customer", str(c.account.id)))
    await drain(session)
    offers = await engine.run_batch(session, index)
    assert [(o.order_id, o.technician_id) for o in offers] == [(order.id, tech.technician.id)]
    await redis.aclose()
