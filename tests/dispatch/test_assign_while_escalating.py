"""An operator assigning an order that is still escalating: an offer lapsing (or a new round
going out) while the assignment waits on the order's lock changes only the escalation state,
which the assignment overrides, so it goes through instead of failing with 409."""

import asyncio
import uuid
from datetime import timedelta

from sqlmodel import select

from dispatch import assignments
from dispatch.models import Order
from dispatch.service import Actor
from matching import service as engine
from matching.models import Offer
from tests.dispatch.test_ops_actions import matching_order, online


async def test_an_assignment_waiting_on_an_offer_expiry_goes_through(committed_sessions, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        order = await matching_order(session)
        technician = await online(session, index, 300)
        [offer] = await engine.run_batch(session, index)
        await session.commit()
    assert (offer.order_id, offer.technician_id) == (order.id, technician.technician.id)
    admin = Actor("admin", str(uuid.uuid4()))
    async with committed_sessions() as expiry, committed_sessions() as operator:
        # The expiry holds the order while it lapses the offer: offered -> matching.
        assert await engine.expire_offers(expiry, index, offer.expires_at + timedelta(seconds=1)) == 1
        assigning = asyncio.create_task(assignments.assign(operator, redis, order.id, technician.technician.id, admin))
        await asyncio.sleep(0.3)  # the assignment read "offered" and waits on the order's lock
        assert not assigning.done()
        await expiry.commit()
        done = await assigning
        await operator.commit()
    assert (done.order.status, done.order.technician_id) == ("accepted", technician.technician.id)
    async with committed_sessions() as session:
        assert (await session.get(Order, order.id)).status == "accepted"
        offers = (await session.exec(select(Offer.status).where(Offer.order_id == order.id))).all()
        assert offers == ["expired"]
