"""The worker's jobs drive an order from creation to payout on committed data."""

from datetime import datetime, timedelta, timezone

from sqlmodel import select

from app.worker import run_once
from dispatch.models import Notification, Order
from kit.redis import get_redis
from dispatch.service import Actor, create_order, transition
from matching import service as engine
from matching.models import Offer
from ratings.service import submit_review
from settlement.models import Settlement
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def test_worker_offers_finalizes_the_review_and_pays_the_technician(committed_sessions, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(get_redis())
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        tech = await make_technician(session)
        await engine.go_online(session, index, tech.technician)
        await engine.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                     at=datetime.now(timezone.utc))
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind="repair", actor=Actor("customer", str(customer.account.id)))
        await session.commit()

    await run_once()
    async with committed_sessions() as session:
        offer = (await session.exec(select(Offer).where(Offer.order_id == order.id))).one()
        assert offer.technician_id == tech.technician.id
        await engine.accept_offer(session, offer.id, tech.technician.id)
        for action in ("depart", "arrive", "start_service", "complete"):
            await transition(session, order.id, action, Actor.system("test"),
                             payload={"report_id": "test-report"} if action == "complete" else None)
        await session.commit()
    await run_once()  # hold placed on acceptance, captured on completion
    async with committed_sessions() as session:
        await submit_review(session, order_id=order.id, customer_id=customer.customer.id, stars=5)
        await session.commit()

    counts = await run_once(datetime.now(timezone.utc) + timedelta(hours=25))  # the edit window has closed
    assert counts["reviews"] == 1 and counts["payouts"] == 1
    async with committed_sessions() as session:
        assert (await session.get(Order, order.id)).status == "settled"
        settlement = (await session.exec(select(Settlement).where(Settlement.order_id == order.id))).one()
        assert settlement.status == "transferred"
    await run_once()  # relays the settlement's events
    async with committed_sessions() as session:
        payout = (await session.exec(select(Notification).where(
            Notification.account_id == tech.account.id, Notification.kind == "payout"))).one()
        assert payout.payload["amount_minor"] == settlement.payout_minor


async def test_the_standalone_worker_process_matches_orders(committed_sessions, redis) -> None:  # noqa: ANN001
    """`gasdispatch worker` wires its own event handlers: an order made elsewhere gets offered."""
    import asyncio
    import os
    import subprocess
    import sys

    index = engine.geo_index(get_redis())
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        tech = await make_technician(session)
        await engine.go_online(session, index, tech.technician)
        await engine.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                     at=datetime.now(timezone.utc))
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind="repair", actor=Actor("customer", str(customer.account.id)))
        await session.commit()
    process = subprocess.Popen([sys.executable, "-m", "app", "worker"],
                               env={**os.environ, "GASDISPATCH_BATCH_WINDOW_S": "0.2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # up to 60 s: the worker process imports the whole app first
            async with committed_sessions() as session:
                offered = (await session.exec(select(Offer).where(Offer.order_id == order.id))).first()
            if offered is not None:
                break
            await asyncio.sleep(0.1)
        assert offered is not None and offered.technician_id == tech.technician.id
    finally:
        process.terminate()
        process.wait(timeout=10)
