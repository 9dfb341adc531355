"""An emergency does not wait behind routine work: its deliveries go on the urgent lane, which a
worker runs on connections (and, deployed so, in a process) of its own."""

import asyncio
import json
from datetime import datetime, timezone

from sqlalchemy import func, text
from sqlmodel import select

from app import worker
from app.wiring import register_handlers
from dispatch.models import Order
from dispatch.service import HOME_EMERGENCY_KIND, Actor, create_order
from kit import jobs
from kit.models import Delivery
from kit.redis import get_redis
from matching import service as matching
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def test_a_worker_of_the_urgent_lane_alone_offers_an_emergency_and_leaves_routine_work(
        committed_sessions, redis, empty_queue) -> None:  # noqa: ANN001
    register_handlers()
    index = matching.geo_index(get_redis())
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        tech = await make_technician(session, kinds=("repair", "inspection", "emergency"))
        await matching.go_online(session, index, tech.technician)
        await matching.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                       at=datetime.now(timezone.utc))
        routine = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                     kind="repair", actor=Actor("customer", str(customer.account.id)))
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind=HOME_EMERGENCY_KIND, actor=Actor("customer", str(customer.account.id)))
        await session.commit()

    stop = asyncio.Event()
    urgent = asyncio.create_task(jobs.run_lane(worker.lanes()["urgent"], stop))
    try:
        for _ in range(100):
            async with committed_sessions() as session:
                emergency = await session.get(Order, order.id, populate_existing=True)
            if emergency.status == "offered":
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await urgent
    assert emergency.status == "offered" and emergency.technician_id is None  # offered, not yet accepted
    async with committed_sessions() as session:
        states = {(d.subscriber, d.state) for d in (await session.exec(select(Delivery).where(
            Delivery.topic == "dispatch.order_created"))).all()}
        # The routine order's deliveries wait on the realtime lane, which nobody ran.
        assert ("matching", "done") in states and ("matching", "pending") in states
        assert (await session.get(Order, routine.id)).status == "created"


async def test_a_worker_of_the_urgent_role_only_takes_no_share_of_the_cities(redis) -> None:  # noqa: ANN001
    await jobs.write_heartbeat("2026-11-30T12:00:00Z", {}, matches=False)
    await redis.set(f"{jobs.HEARTBEAT_PREFIX}other-host:1", '{"at": "2026-11-30T12:00:00Z", "jobs": {}, "matches": true}',
                    ex=jobs.HEARTBEAT_TTL_S)
    assert await jobs.live_workers() == 2
    assert await jobs.live_workers(matchers_only=True) == 1


async def test_the_urgent_warm_up_runs_the_lane_once_on_no_delivery_and_writes_nothing(
        committed_sessions, redis, empty_queue) -> None:  # noqa: ANN001
    async with committed_sessions() as session:
        deliveries_before = (await session.exec(select(func.count()).select_from(Delivery))).one()
    await worker._warm_up()
    async with committed_sessions() as session:
        queued = (await session.exec(text("SELECT entrypoint, convert_from(payload, 'UTF8') FROM pgqueuer"))).all()
    assert [(entrypoint, json.loads(payload)) for entrypoint, payload in queued] == [
        (jobs.DELIVER_URGENT, {"delivery_id": worker.NO_DELIVERY})]

    stop = asyncio.Event()
    urgent = asyncio.create_task(jobs.run_lane(worker.lanes()["urgent"], stop))
    try:
        for _ in range(100):
            async with committed_sessions() as session:
                left = (await session.exec(text("SELECT count(*) FROM pgqueuer"))).one()[0]
            if not left:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await urgent
    assert left == 0
    async with committed_sessions() as session:
        statuses = (await session.exec(text("SELECT status FROM pgqueuer_log WHERE entrypoint = :e "
                                            "AND status NOT IN ('queued', 'picked')").bindparams(e=jobs.DELIVER_URGENT))).all()
        assert [s for (s,) in statuses] == ["successful"]
        assert (await session.exec(select(func.count()).select_from(Delivery))).one() == deliveries_before
