"""On-demand work on top of the day plan (issue #15, item 4), and the reminders of booked visits.

- `commitments` is matching's view of the plan: each technician's booked visits still ahead,
  so that the instant matcher weighs what an emergency or urgent job would make them miss
  (matching.scoring.plan_cost).
- When a technician with planned visits ahead accepts an on-demand job, the rest of his city's
  day is planned again from the job's end (`on_order_status_changed`); so it is on a cadence
  through the day as orders arrive (`replan_due`, the cron GASDISPATCH_CRON_REPLAN).
- A booked visit the new plan cannot keep inside its window moves to the next window with room
  and its customer is told (`booking_moved`); with none in the booking horizon it stays, raised
  to operations as unplanned.
- The day before a visit its customer is reminded (`remind_due`); his technician setting off
  is told by the orders' own notifications.
Services flush, never commit.
"""

import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import queries
from dispatch import service as dispatch
from dispatch.events import OrderStatusChanged
from dispatch.states import ACTIVE_JOB_STATES
from kit.config import get_settings
from kit.db import database_now
from kit.events import handles, subscribe
from kit.geo import lonlat
from matching.model import PlannedVisit
from scheduling import planner
from scheduling import service as bookings
from scheduling import slots as grid
from scheduling.errors import BookingInvalid, SlotUnavailable
from scheduling.models import Booking, PlanStop
from scheduling.service import city_timezone

log = structlog.get_logger(__name__)
REPLANNER = dispatch.Actor.system("scheduling")
# Visits not yet served that a plan still holds for their technician.
AHEAD_STATES = ("scheduled", "created", "matching", "offered")
REMINDER_LEAD = timedelta(days=1)


async def _stops_ahead(session: AsyncSession, ids: Sequence[uuid.UUID], now: datetime) -> list[tuple[PlanStop, queries.BookedVisit]]:
    """The technicians' planned stops not yet begun whose visits are still to be served, each
    with its visit, by planned arrival."""
    stops = (await session.exec(select(PlanStop).where(
        col(PlanStop.technician_id).in_(ids), PlanStop.planned_departure_at > now)
        .order_by(PlanStop.planned_arrival_at))).all() if ids else []
    visits = await queries.visits_of(session, [s.order_id for s in stops]) if stops else {}
    return [(s, visits[s.order_id]) for s in stops
            if s.order_id in visits and visits[s.order_id].status in AHEAD_STATES]


async def commitments(session: AsyncSession, ids: Sequence[uuid.UUID],
                      now: datetime) -> dict[uuid.UUID, tuple[PlannedVisit, ...]]:
    """Technician -> his planned visits not yet served, by planned arrival."""
    out: dict[uuid.UUID, list[PlannedVisit]] = {}
    for stop, visit in await _stops_ahead(session, ids, now):
        where = lonlat(visit.location)
        if where is not None:
            out.setdefault(stop.technician_id, []).append(
                PlannedVisit(lon=where[0], lat=where[1], arrival=stop.planned_arrival_at, latest=visit.window_end))
    return {technician_id: tuple(planned) for technician_id, planned in out.items()}


async def replan_day(session: AsyncSession, city_id: str, day: date, now: datetime,
                     time_limit: float | None = None) -> planner.DayPlanResult:
    """Plan what is left of the city's local day again; a visit it cannot keep moves to the next
    window with room, and only one that cannot move is raised to operations."""
    limit = time_limit or get_settings().replan_time_limit_s
    result = await planner.plan_day(session, city_id=city_id, day=day, now=now, alert_unplanned=False,
                                    time_limit=limit)
    moved_within_day = False
    for missing in result.unplanned:
        moved = await _move_to_next_window(session, missing.order_id, now)
        if moved is None:
            await planner.alert(session, missing, day, now)
        moved_within_day |= moved == day
    if moved_within_day:  # a visit moved to a later window of the same day gets its place in the plan
        result = await planner.plan_day(session, city_id=city_id, day=day, now=now, time_limit=limit)
    return result


async def _move_to_next_window(session: AsyncSession, order_id: uuid.UUID, now: datetime) -> date | None:
    """The first window with room after the booking's own (that day, then the next days of the
    horizon), and a notification to its customer; the local day it moved to, None when none has
    room."""
    order = await queries.find_order(session, order_id)
    if order is None or order.status != "scheduled" or order.window_start is None:
        return None
    address = await queries.find_address(session, order.address_id)
    assert address is not None, "an order's address outlives it"
    tz = await city_timezone(session, order.city_id)
    first_day = order.window_start.astimezone(tz).date()
    for offset in range(grid.HORIZON_DAYS + 1):
        day = first_day + timedelta(days=offset)
        try:
            plan = await bookings.day_windows(session, address=address, kind=order.kind, day=day, now=now,
                                              skip_order=order_id)
        except BookingInvalid:  # past the booking horizon
            break
        for slot in plan.slots:
            if slot.window.start <= order.window_start:
                continue
            try:
                moved = await bookings.move(session, order_id, window_start=slot.window.start, actor=REPLANNER, now=now)
            except SlotUnavailable:
                continue
            await bookings.tell_customer(session, moved, "booking_moved", "预约时段已调整 / Appointment moved",
                                         dedupe_key=f"booking:{moved.id}:moved:{moved.window_start.isoformat()}",
                                         was=order.window_start.isoformat())
            log.info("scheduling.booking_moved", order_id=str(order_id), window_start=moved.window_start.isoformat())
            return day
    return None


async def _next_stop(session: AsyncSession, technician_id: uuid.UUID, now: datetime) -> PlanStop | None:
    """His next planned visit not yet begun and still to be served."""
    ahead = await _stops_ahead(session, [technician_id], now)
    return ahead[0][0] if ahead else None


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """An on-demand job accepted by a technician with planned visits still ahead: the day of his
    next visit (his city's) is planned again from the job's end."""
    if event.to != "accepted" or event.technician_id is None:
        return
    if await session.get(Booking, event.order_id) is not None:
        return  # a booked visit of the plan itself
    order = await queries.find_order(session, event.order_id)
    if order is None or order.status not in ACTIVE_JOB_STATES:
        return
    now = await database_now(session)
    stop = await _next_stop(session, event.technician_id, now)
    if stop is None:
        return
    result = await replan_day(session, stop.city_id, stop.day, now)
    log.info("scheduling.replanned_after_insertion", order_id=str(order.id), technician_id=str(event.technician_id),
             stops=len(result.stops), unplanned=len(result.unplanned))


async def replan_due(session: AsyncSession, now: datetime) -> int:
    """The cadence: every city with booked visits still ahead today is planned again."""
    done = 0
    for city_id in await queries.city_ids(session):
        tz = await city_timezone(session, city_id)
        today = now.astimezone(tz).date()
        if await queries.scheduled_visits(session, city_id, now, datetime.combine(today + timedelta(days=1), time(0), tz)):
            done += len((await replan_day(session, city_id, today, now)).stops)
    return done


async def remind_due(session: AsyncSession, now: datetime) -> int:
    """Customers whose booked visit starts within a day, booked before that day began: reminded
    once per window (a visit moved to another window is reminded again)."""
    orders = await queries.scheduled_starting(session, now, now + REMINDER_LEAD)
    booked = dict((await session.exec(select(Booking.order_id, Booking.created_at).where(
        col(Booking.order_id).in_([o.id for o in orders])))).all()) if orders else {}
    reminded = 0
    for order in orders:
        if order.id in booked and booked[order.id] <= order.window_start - REMINDER_LEAD:
            reminded += await bookings.tell_customer(
                session, order, "booking_reminder", "上门提醒 / Visit reminder",
                dedupe_key=f"booking:{order.id}:reminder:{order.window_start.isoformat()}")
    return reminded


def register() -> None:
    subscribe("dispatch.order_status_changed", on_order_status_changed, subscriber="scheduling")
