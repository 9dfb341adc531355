"""What the technician's phone (and the customer's) needs from the server to word things itself:
the order's SLA deadline on offers and jobs, and a found hazard as slugs and fields."""

import uuid
from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import handlers
from dispatch.field.events import HazardFound
from dispatch.models import Notification, Order
from kit.events import drain
from dispatch.service import Actor, create_order
from matching import service as engine
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def test_offers_and_jobs_carry_the_orders_sla_deadline(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(redis)
    tech = await make_technician(session)
    await engine.go_online(session, index, tech.technician)
    await engine.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                 at=datetime.now(timezone.utc))
    c = await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                               actor=Actor("customer", str(c.account.id)))
    await drain(session)
    [offer] = await engine.run_batch(session, index)
    due = (await session.get(Order, order.id)).sla_deadline
    summary = handlers.offer_summary(order, str(offer.id), 100, 60, offer.expires_at.isoformat())
    assert datetime.fromisoformat(summary["sla_deadline"]) == due  # what the socket pushes
    [listed] = (await client.get("/v1/offers", headers=tech.headers)).json()["data"]
    assert datetime.fromisoformat(listed["sla_deadline"]) == due
    assert (await client.post(f"/v1/offers/{offer.id}/accept", headers=tech.headers)).status_code == 200
    [job] = (await client.get("/v1/orders", headers=tech.headers)).json()["data"]
    assert datetime.fromisoformat(job["sla_deadline"]) == due


async def test_a_found_hazard_reaches_the_customer_as_slugs_and_fields(session: AsyncSession) -> None:
    c = await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    deadline = datetime.now(timezone.utc) + timedelta(days=3)
    event = HazardFound(order_id=uuid.uuid4(), hazard_id=uuid.uuid4(), customer_id=c.customer.id,
                        category="aged_hose", severity="major", deadline_at=deadline, followup_order_id=uuid.uuid4())
    await handlers.on_hazard_found(session, event)
    [notice] = (await session.exec(select(Notification).where(Notification.account_id == c.account.id,
                                                              Notification.kind == "hazard_found"))).all()
    # No machine-made English sentence: the apps word notification.hazard_found from these.
    assert notice.body == ""
    assert (notice.payload["category"], notice.payload["severity"]) == ("aged_hose", "major")
    assert datetime.fromisoformat(notice.payload["deadline_at"]) == deadline
