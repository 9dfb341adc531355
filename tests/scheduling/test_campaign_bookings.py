"""Inspection campaigns as planned routes (issue #15, item 3): the day before, each household's
periodic inspection is booked a window in its time of day (the household is told and may move
it), the day planner routes those visits with the other bookings, and a household nobody found
at home is booked another window on another day and time of day."""

from datetime import timedelta

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field import campaigns
from dispatch.field.models import InspectionPlan
from dispatch.models import Notification, Order
from scheduling import planner
from scheduling.service import TIME_OF_DAY_HOURS
from tests.factories import make_customer, make_technician
from tests.field.support import CENTER, make_station
from tests.scheduling.scheduling_factories import TZ, day_ahead, local, put_week


async def _plans(session: AsyncSession, station_id) -> dict:  # noqa: ANN001
    rows = (await session.exec(select(InspectionPlan).where(InspectionPlan.station_id == station_id)
                               .order_by(InspectionPlan.created_at, InspectionPlan.attempt))).all()
    return {(p.address_id, p.attempt): p for p in rows}


async def _told(session: AsyncSession, account_id) -> list[str]:  # noqa: ANN001
    return [n.payload["order_id"] for n in (await session.exec(select(Notification).where(
        Notification.account_id == account_id, Notification.kind == "inspection_booked")
        .order_by(Notification.created_at))).all()]


async def test_campaign_visits_are_booked_in_their_time_of_day_routed_and_rebooked_after_no_access(
    client: AsyncClient, session: AsyncSession,
) -> None:
    station = await make_station(session, capacity=3, half_side_deg=0.002)
    inspector = await make_technician(session, kinds=("inspection",), station=station)
    await put_week(client, inspector.headers)  # 08:00-18:00, lunch 12:00-13:00
    households = {c.address.id: c for c in [
        await make_customer(session, lon=CENTER[0] + 0.0004 * i, lat=CENTER[1]) for i in range(3)]}
    day = day_ahead()
    now = local(day, 10)  # the daily run; its plans are for the next (UTC) day
    run = await campaigns.run_daily(session, now)

    assert (run.planned, run.ordered, run.booked) == (3, 3, 3)
    tomorrow = day + timedelta(days=1)
    plans = await _plans(session, station.id)
    for (address_id, _), plan in plans.items():
        order = await session.get(Order, plan.order_id)
        assert (order.status, order.source, order.kind) == ("scheduled", "campaign", "inspection")
        start = order.window_start.astimezone(TZ)
        assert start.date() == tomorrow
        first, last = TIME_OF_DAY_HOURS[plan.slot]
        # in its time of day where the inspector works then; the evening falls back to the day
        assert (first <= start.hour < last) == (plan.slot != "evening")
        assert await _told(session, households[address_id].account.id) == [str(order.id)]

    city_id = order.city_id
    routed = await planner.plan_day(session, city_id=city_id, day=tomorrow, now=now, time_limit=1.0)
    assert routed.unplanned == []
    assert {s.order_id for s in routed.stops} == {p.order_id for p in plans.values()}
    assert {s.technician_id for s in routed.stops} == {inspector.technician.id}

    # Nobody opens the door at the morning visit: the next run books that household again,
    # on another day, in the next time of day.
    missed = next(p for p in plans.values() if p.slot == "morning")
    await campaigns.record_outcome(session, missed.order_id, "no_access", now)
    again = await campaigns.run_daily(session, now + timedelta(days=1))
    assert (again.replanned, again.booked) == (1, 1)
    retry = (await _plans(session, station.id))[(missed.address_id, 2)]
    rebooked = await session.get(Order, retry.order_id)
    start = rebooked.window_start.astimezone(TZ)
    assert retry.slot == "afternoon" and start.date() > tomorrow
    assert TIME_OF_DAY_HOURS["afternoon"][0] <= start.hour < TIME_OF_DAY_HOURS["afternoon"][1]
    assert await _told(session, households[missed.address_id].account.id) == [str(missed.order_id), str(rebooked.id)]
    # the household may move the window it was given
    free = start + timedelta(hours=2) if start.hour < 16 else start - timedelta(hours=2)
    moved = await client.post(f"/v1/bookings/{rebooked.id}/reschedule", headers=households[missed.address_id].headers,
                              json={"window_start": free.isoformat()})
    assert moved.status_code == 200, moved.text


async def test_a_campaign_visit_without_a_window_with_room_is_ordered_on_its_day_as_before(
    session: AsyncSession,
) -> None:
    station = await make_station(session, capacity=2, half_side_deg=0.002)  # nobody has shifts here
    await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    now = local(day_ahead(), 10)
    run = await campaigns.run_daily(session, now)
    assert (run.planned, run.ordered, run.booked) == (1, 0, 0)
    on_its_day = await campaigns.run_daily(session, now + timedelta(days=1))
    assert (on_its_day.ordered, on_its_day.booked) == (1, 0)
    plan = next(iter((await _plans(session, station.id)).values()))
    assert (await session.get(Order, plan.order_id)).status == "created"
