"""Field (issue #13, items 5, 6 and 9): a price approval binds the price the customer saw, a
follow-up charges nobody without consent, and hazard deadlines are bounded and need a time zone."""

import uuid
from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.events import drain
from dispatch.field.models import Hazard, PriceChange
from dispatch.models import Order, ServiceKind
from kit.models import OutboxMessage
from matching import service as engine
from matching.models import Offer
from settlement.models import Payment
from tests.factories import make_customer
from tests.field.support import in_service_job, report


def complete_url(order_id: uuid.UUID) -> str:
    return f"/v1/jobs/{order_id}/complete"


def decide_url(order_id: uuid.UUID, verb: str) -> str:
    return f"/v1/orders/{order_id}/price-change/{verb}"


async def approvals(session: AsyncSession) -> list[dict]:
    rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.price_change_approved"))).all()
    return [r.payload for r in rows]


async def test_approving_a_price_the_technician_has_since_raised_is_refused(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    seen = (await client.post(complete_url(job.order.id), headers=job.technician.headers, json=report(9500))).json()
    raised = (await client.post(complete_url(job.order.id), headers=job.technician.headers, json=report(90000))).json()
    assert seen["price_change"]["id"] != raised["price_change"]["id"]

    stale = await client.post(decide_url(job.order.id, "approve"), headers=job.customer.headers,
                              json={"price_change_id": seen["price_change"]["id"]})
    assert stale.status_code == 409, stale.text
    assert stale.json()["type"] == "/problems/price-change-not-pending"
    unnamed = await client.post(decide_url(job.order.id, "approve"), headers=job.customer.headers, json={})
    assert unnamed.status_code == 422
    pending = await session.get(PriceChange, uuid.UUID(raised["price_change"]["id"]), populate_existing=True)
    assert pending.status == "pending" and await approvals(session) == []

    current = await client.post(decide_url(job.order.id, "reject"), headers=job.customer.headers,
                                json={"price_change_id": raised["price_change"]["id"]})
    assert (current.status_code, current.json()["status"]) == (200, "rejected")


async def test_completion_withdraws_a_pending_price_which_cannot_be_approved_afterwards(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    asked = (await client.post(complete_url(job.order.id), headers=job.technician.headers, json=report(50000))).json()
    done = await client.post(complete_url(job.order.id), headers=job.technician.headers, json=report(8000))
    assert done.status_code == 200, done.text
    change_id = uuid.UUID(asked["price_change"]["id"])
    assert (await session.get(PriceChange, change_id, populate_existing=True)).status == "withdrawn"
    visit = (await client.get(f"/v1/orders/{job.order.id}/visit", headers=job.customer.headers)).json()
    assert visit["pending_price_change"] is None

    late = await client.post(decide_url(job.order.id, "approve"), headers=job.customer.headers,
                             json={"price_change_id": str(change_id)})
    assert late.status_code == 409, late.text
    assert await approvals(session) == []
    assert (await session.get(PriceChange, change_id, populate_existing=True)).status == "withdrawn"


def hazards(n: int, severity: str = "major", **extra) -> list[dict]:  # noqa: ANN003
    return [{"category": "aged_hose", "severity": severity, **extra} for _ in range(n)]


async def test_a_priced_followup_is_neither_matched_nor_held_until_the_customer_consents(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    done = await client.post(complete_url(job.order.id), headers=job.technician.headers,
                             json=report(8000, hazards=hazards(2)))
    assert done.status_code == 200, done.text
    found = (await session.exec(select(Hazard).where(Hazard.order_id == job.order.id))).all()
    first, second = [await session.get(Order, h.followup_order_id) for h in found]
    assert (first.status, second.status) == ("awaiting_consent", "awaiting_consent")
    await drain(session)
    index = engine.geo_index(redis)
    await engine.run_batch(session, index)
    for followup in (first, second):
        assert (await session.get(Order, followup.id, populate_existing=True)).status == "awaiting_consent"
        assert (await session.exec(select(Offer).where(Offer.order_id == followup.id))).all() == []
        assert await session.get(Payment, followup.id) is None

    stranger = await make_customer(session)
    assert (await client.post(f"/v1/orders/{first.id}/consent", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"/v1/orders/{first.id}/consent", headers=job.technician.headers)).status_code == 403
    agreed = await client.post(f"/v1/orders/{first.id}/consent", headers=job.customer.headers)
    assert (agreed.status_code, agreed.json()["status"]) == (200, "matching")
    again = await client.post(f"/v1/orders/{first.id}/consent", headers=job.customer.headers)
    assert again.status_code == 409
    declined = await client.post(f"/v1/orders/{second.id}/cancel", headers=job.customer.headers,
                                 json={"reason": "will call my own plumber"})
    assert declined.json()["status"] == "cancelled"
    await drain(session)
    await engine.run_batch(session, index)
    assert (await session.get(Order, first.id, populate_existing=True)).status == "offered"
    assert (await session.get(Order, second.id, populate_existing=True)).status == "cancelled"


async def test_a_followup_the_catalogue_makes_free_needs_no_consent(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    kind = await session.get(ServiceKind, "repair")
    job = await in_service_job(session, redis)
    kind.base_price_minor = 0
    session.add(kind)
    await session.flush()
    done = await client.post(complete_url(job.order.id), headers=job.technician.headers,
                             json=report(8000, hazards=hazards(1)))
    assert done.status_code == 200, done.text
    hazard = (await session.exec(select(Hazard).where(Hazard.order_id == job.order.id))).one()
    assert (await session.get(Order, hazard.followup_order_id)).status == "created"


async def test_a_hazard_deadline_without_a_time_zone_is_422_and_does_not_block_completion(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    url = complete_url(job.order.id)
    naive = (datetime.now(timezone.utc) + timedelta(days=2)).replace(tzinfo=None).isoformat()
    refused = await client.post(url, headers=job.technician.headers,
                                json=report(8000, hazards=hazards(1, deadline_at=naive)))
    assert refused.status_code == 422, refused.text  # a 500 before
    assert refused.headers["content-type"] == "application/problem+json"
    done = await client.post(url, headers=job.technician.headers,
                             json=report(8000, hazards=hazards(1, deadline_at=naive + "+08:00")))
    assert done.status_code == 200, done.text


async def test_hazard_deadlines_and_count_are_bounded(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    url = complete_url(job.order.id)
    soon = datetime.now(timezone.utc) + timedelta(days=2)
    for bad in (
        hazards(1, deadline_at="9999-12-31T00:00:00+00:00"),
        hazards(1, "critical", deadline_at=(soon + timedelta(days=5)).isoformat()),
        hazards(11),
    ):
        refused = await client.post(url, headers=job.technician.headers,
                                    json=report(8000, hazards=bad, valve_closed=True))
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await session.get(Order, job.order.id, populate_existing=True)).status == "in_service"
    assert (await session.exec(select(Order).where(Order.source == "followup",
                                                   Order.customer_id == job.order.customer_id))).all() == []
    done = await client.post(url, headers=job.technician.headers,
                             json=report(8000, hazards=hazards(1, "critical", deadline_at=soon.isoformat()),
                                         valve_closed=True))
    assert done.status_code == 200, done.text
