"""Inspection campaigns: due households spread within capacity, no-access re-plans, exhaustion."""

from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.events import drain
from dispatch.field import campaigns, visits
from dispatch.field.models import InspectionPlan, Visit
from dispatch.models import Order
from kit.models import OutboxMessage
from tests.factories import make_customer
from tests.field.support import CENTER, accepted_job, make_station


async def plans(session: AsyncSession, station_id) -> list[InspectionPlan]:  # noqa: ANN001
    return list((await session.exec(select(InspectionPlan).where(InspectionPlan.station_id == station_id)
                                    .order_by(InspectionPlan.created_at, InspectionPlan.attempt))).all())


async def test_due_households_are_spread_over_the_coming_days_within_capacity(session: AsyncSession) -> None:
    station = await make_station(session, capacity=2, half_side_deg=0.002)
    for i in range(5):
        await make_customer(session, lon=CENTER[0] + 0.0002 * i, lat=CENTER[1])
    await make_customer(session, lon=CENTER[0] + 0.5, lat=CENTER[1])  # outside the station's area
    now = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    run = await campaigns.run_daily(session, now)
    assert (run.planned, run.ordered) == (5, 0)
    days = Counter(p.planned_on for p in await plans(session, station.id))
    tomorrow = now.date() + timedelta(days=1)
    assert days == {tomorrow: 2, tomorrow + timedelta(days=1): 2, tomorrow + timedelta(days=2): 1}
    again = await campaigns.run_daily(session, now)
    assert again.planned == 0  # already planned households are not planned twice
    ordered = await campaigns.run_daily(session, now + timedelta(days=1))
    assert ordered.ordered == 2
    orders = (await session.exec(select(Order).where(col(Order.id).in_(
        [p.order_id for p in await plans(session, station.id) if p.order_id])))).all()
    assert {(o.kind, o.status) for o in orders} == {("inspection", "created")}


async def test_no_access_is_recorded_and_replanned_on_another_day_and_time_until_ops_is_alerted(session: AsyncSession, redis, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "field_campaign_max_tries", 2)
    station = await make_station(session, capacity=3, half_side_deg=0.001)
    household = await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    day = datetime.now(timezone.utc)
    await campaigns.run_daily(session, day - timedelta(days=1))
    for attempt in (1, 2):
        await campaigns.run_daily(session, day)
        plan = [p for p in await plans(session, station.id) if p.status == "ordered"][0]
        assert plan.attempt == attempt
        order = await session.get(Order, plan.order_id)
        await drain(session)
        job = await accepted_job(session, redis, day, order=order, customer=household, start_m=30)
        tech_id = job.technician.technician.id
        await visits.depart(session, redis, order.id, tech_id, day)
        cancelled = await visits.no_access(session, redis, order.id, tech_id, "s3://door.jpg", day)
        assert (cancelled.status, cancelled.status_reason) == ("cancelled", "no_access")
        visit = await session.get(Visit, order.id)
        assert (visit.outcome, visit.no_access_photo_ref) == ("no_access", "s3://door.jpg")
        assert visit.no_access_location is not None
        run = await campaigns.run_daily(session, day)
        if attempt == 1:
            assert run.replanned == 1
            first, second = await plans(session, station.id)
            assert second.planned_on > first.planned_on and second.slot != first.slot
            day = datetime.combine(second.planned_on, datetime.min.time(), timezone.utc) + timedelta(hours=9)
            await redis.flushdb()  # the next try starts from a clean live index
    assert run.exhausted == 1
    alerts = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.campaign_retries_exhausted"))).all()
    assert [a.payload for a in alerts] == [{"address_id": str(household.address.id), "customer_id": str(household.customer.id)}]
