"""An emergency does not wait for a worker: the process that commits it runs its realtime
deliveries (matching's among them) right after the commit; the queued jobs remain the fallback."""

from datetime import datetime, timezone

from sqlmodel import select

from app.wiring import register_handlers
from dispatch.models import Order
from dispatch.service import HOME_EMERGENCY_KIND, Actor, create_order
from kit.db import session_scope
from kit.models import Delivery
from kit.redis import get_redis
from matching import service as matching
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def test_an_emergency_is_offered_by_the_committing_process_without_a_worker(
        committed_sessions, redis, empty_queue) -> None:  # noqa: ANN001
    register_handlers()
    index = matching.geo_index(get_redis())
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        tech = await make_technician(session, kinds=("repair", "inspection", "emergency"))
        await matching.go_online(session, index, tech.technician)
        await matching.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                       at=datetime.now(timezone.utc))
        await session.commit()

    async with session_scope() as session:  # the API's unit of work: commit, then its after-commit actions
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind=HOME_EMERGENCY_KIND, actor=Actor("customer", str(customer.account.id)))
        routine = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                     kind="repair", actor=Actor("customer", str(customer.account.id)))

    async with committed_sessions() as session:
        emergency = await session.get(Order, order.id)
        assert emergency.priority == "emergency" and emergency.status == "offered"
        assert emergency.technician_id is None  # offered, not yet accepted
        states = {(d.subscriber, d.state) for d in (await session.exec(select(Delivery).where(
            Delivery.topic == "dispatch.order_created"))).all()}
        assert ("matching", "done") in states
        # A routine order waits for the worker and the batch.
        assert (await session.get(Order, routine.id)).status == "created"
