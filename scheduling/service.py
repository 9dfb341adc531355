"""Shifts and availability, appointment windows and bookings. Services flush, never commit.

A booking is an order in `scheduled` with an arrival window, holding one technician's capacity
(scheduling_booking); the capacity rule is in scheduling/slots.py. The instant matcher takes
orders only in `created` (on creation) and `matching` (batch rounds), so a booked order is not
offered before `release_due` moves it into matching, the travel allowance before its window,
with the technician who holds it as the preferred one (matching falls back to anyone else).
Cancelling is the orders' own path (settlement.cancellation): free while scheduled.
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import queries
from dispatch import service as dispatch
from dispatch.cities import city_at, timezone_of
from dispatch.notifications import notify, pushed
from kit.fanout import order_channel, push_after_commit
from dispatch.models import (
    Address,
    Certification,
    Order,
    ServiceKind,
    ServiceStation,
    Technician,
)
from dispatch.states import OPEN_STATES
from dispatch.stations import get_service_kind
from kit.errors import NotFound
from kit.geo import point, to_geojson
from scheduling import slots as grid
from scheduling.errors import (
    BookingInvalid,
    OnDemandOnly,
    ScheduleInvalid,
    SlotUnavailable,
)
from scheduling.models import Booking, DayOff, Roster, WeeklyShift
from scheduling.schemas import (
    BreakIn,
    DayOffIn,
    DayOffPublic,
    ScheduleIn,
    SchedulePublic,
    WeeklyShiftIn,
)

ON_DEMAND_PRIORITIES = frozenset({"emergency", "urgent"})
RELEASER = dispatch.Actor.system("scheduling")


async def city_timezone(session: AsyncSession, city_id: str) -> ZoneInfo:
    """The city's zone; a configured city without its row yet has the column's default."""
    return ZoneInfo(await timezone_of(session, city_id))


def _today(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


# -- working time ------------------------------------------------------------------------------


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M")


async def get_schedule(session: AsyncSession, technician_id: uuid.UUID, now: datetime) -> SchedulePublic:
    """His weekly shifts, start and end places, and the days off not yet over."""
    technician = await session.get(Technician, technician_id)
    if technician is None:
        raise NotFound("no such technician")
    tz = await city_timezone(session, technician.city_id)
    shifts = (await session.exec(select(WeeklyShift).where(WeeklyShift.technician_id == technician_id)
                                 .order_by(WeeklyShift.weekday))).all()
    days_off = (await session.exec(select(DayOff).where(
        DayOff.technician_id == technician_id, DayOff.last_day >= _today(now, tz)).order_by(DayOff.first_day))).all()
    roster = await session.get(Roster, technician_id)
    return SchedulePublic(
        technician_id=technician_id, timezone=tz.key,
        weekly=[WeeklyShiftIn(weekday=s.weekday, start=s.starts, end=s.ends,
                              breaks=[BreakIn(start=time.fromisoformat(a), end=time.fromisoformat(b)) for a, b in s.breaks])
                for s in shifts],
        days_off=[DayOffPublic(id=d.id, first_day=d.first_day, last_day=d.last_day, reason=d.reason) for d in days_off],
        start_location=to_geojson(roster.start_location) if roster else None,
        end_location=to_geojson(roster.end_location) if roster else None)


def _check_local(t: time, field: str) -> None:
    if t.tzinfo is not None:
        raise ScheduleInvalid(field, "times of day are local to the city, without an offset")


def _check_weekly(weekly: list[WeeklyShiftIn]) -> None:
    seen: set[int] = set()
    for i, shift in enumerate(weekly):
        at = f"weekly[{i}]"
        if shift.weekday in seen:
            raise ScheduleInvalid(f"{at}.weekday", "one shift per weekday")
        seen.add(shift.weekday)
        _check_local(shift.start, f"{at}.start")
        _check_local(shift.end, f"{at}.end")
        if shift.end <= shift.start:
            raise ScheduleInvalid(f"{at}.end", "a shift ends after it starts, on the same day")
        for j, pause in enumerate(shift.breaks):
            _check_local(pause.start, f"{at}.breaks[{j}].start")
            _check_local(pause.end, f"{at}.breaks[{j}].end")
        ordered = sorted(enumerate(shift.breaks), key=lambda b: b[1].start)
        for n, (j, pause) in enumerate(ordered):
            where = f"{at}.breaks[{j}]"
            if pause.end <= pause.start:
                raise ScheduleInvalid(f"{where}.end", "a break ends after it starts")
            if pause.start < shift.start or pause.end > shift.end:
                raise ScheduleInvalid(where, "a break lies inside its shift")
            if n and ordered[n - 1][1].end > pause.start:
                raise ScheduleInvalid(where, "breaks do not overlap")


def _check_days_off(days_off: list[DayOffIn], kept: list[DayOff], today: date) -> None:
    spans = [(d.first_day, d.last_day) for d in kept]
    for i, day_off in enumerate(days_off):
        at = f"days_off[{i}]"
        if day_off.last_day < day_off.first_day:
            raise ScheduleInvalid(f"{at}.last_day", "the last day off is not before the first")
        if day_off.last_day < today:
            raise ScheduleInvalid(f"{at}.last_day", "days off in the past cannot be set")
        for first, last in spans:
            if day_off.first_day <= last and first <= day_off.last_day:
                raise ScheduleInvalid(at, "days off overlap")
        spans.append((day_off.first_day, day_off.last_day))


async def put_schedule(session: AsyncSession, technician_id: uuid.UUID, schedule: ScheduleIn,
                       now: datetime) -> SchedulePublic:
    """Replaces his working time; bookings already made keep their technician (operations move
    them when a change leaves one outside his new hours)."""
    technician = await session.get(Technician, technician_id, with_for_update=True)
    if technician is None:
        raise NotFound("no such technician")
    today = _today(now, await city_timezone(session, technician.city_id))
    _check_weekly(schedule.weekly)
    kept = list((await session.exec(select(DayOff).where(
        DayOff.technician_id == technician_id, DayOff.last_day < today))).all())
    _check_days_off(schedule.days_off, kept, today)
    await session.exec(delete(WeeklyShift).where(col(WeeklyShift.technician_id) == technician_id))
    await session.exec(delete(DayOff).where(col(DayOff.technician_id) == technician_id, col(DayOff.last_day) >= today))
    for shift in schedule.weekly:
        session.add(WeeklyShift(technician_id=technician_id, weekday=shift.weekday, starts=shift.start, ends=shift.end,
                                breaks=[[_hhmm(b.start), _hhmm(b.end)] for b in sorted(shift.breaks, key=lambda b: b.start)]))
    for day_off in schedule.days_off:
        session.add(DayOff(technician_id=technician_id, first_day=day_off.first_day, last_day=day_off.last_day,
                           reason=day_off.reason))
    roster = await session.get(Roster, technician_id) or Roster(technician_id=technician_id)
    roster.start_location = point(*schedule.start_location.coordinates) if schedule.start_location else None
    roster.end_location = point(*schedule.end_location.coordinates) if schedule.end_location else None
    roster.updated_at = now
    session.add(roster)
    await session.flush()
    return await get_schedule(session, technician_id, now)


# -- windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayPlan:
    """What a booking at an address needs to know about one local day."""

    city_id: str
    tz: ZoneInfo
    day: date
    kind: str
    slots: list[grid.Slot]


async def _bookable_kind(session: AsyncSession, kind: str) -> ServiceKind:
    service_kind = await get_service_kind(session, kind)
    if service_kind.default_priority in ON_DEMAND_PRIORITIES:
        raise OnDemandOnly(service_kind.default_priority)
    return service_kind


async def _own_address(session: AsyncSession, address_id: uuid.UUID, customer_id: uuid.UUID) -> Address:
    address = await session.get(Address, address_id)
    if address is None or address.customer_id != customer_id:
        raise NotFound("no such address")
    return address


async def _technician_days(session: AsyncSession, address_id: uuid.UUID, city_id: str, certification: str,
                           day: date, tz: ZoneInfo, skip_order: uuid.UUID | None) -> list[grid.TechnicianDay]:
    """Technicians who work that day, are certified for the work and cover the address: a
    technician of a station whose service area covers it, or one without a station in its city."""
    where = select(Address.location).where(Address.id == address_id).scalar_subquery()
    rows = (await session.exec(
        select(Technician.id, WeeklyShift)
        .join(WeeklyShift, WeeklyShift.technician_id == Technician.id)
        .outerjoin(ServiceStation, ServiceStation.id == Technician.station_id)
        .where(WeeklyShift.weekday == day.weekday(), Technician.onboarding == "active",
               Technician.status != "suspended",
               or_(and_(col(Technician.station_id).is_not(None), func.ST_Covers(ServiceStation.service_area, where)),
                   and_(col(Technician.station_id).is_(None), Technician.city_id == city_id)))
        .where(~select(DayOff.id).where(DayOff.technician_id == Technician.id, DayOff.first_day <= day,
                                        DayOff.last_day >= day).exists())
    )).all()
    ids = [technician_id for technician_id, _ in rows]
    if not ids:
        return []
    certified: dict[uuid.UUID, list[grid.Interval]] = {}
    for cert in (await session.exec(select(Certification).where(
            col(Certification.technician_id).in_(ids), Certification.kind == certification,
            Certification.status == "verified"))).all():
        certified.setdefault(cert.technician_id, []).append(grid.Interval(cert.valid_from, cert.valid_until))
    span = grid.Interval(datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=1), time(0), tz))
    booked: dict[uuid.UUID, list[tuple[grid.Interval, int]]] = {}
    for technician_id, start, end, minutes in (await session.exec(
            select(Booking.technician_id, Order.window_start, Order.window_end, ServiceKind.typical_duration_min)
            .join(Order, Order.id == Booking.order_id).join(ServiceKind, ServiceKind.code == Order.kind)
            .where(col(Booking.technician_id).in_(ids), col(Order.status).in_(OPEN_STATES),
                   col(Order.window_start) < span.end, col(Order.window_end) > span.start,
                   *([Booking.order_id != skip_order] if skip_order else [])))).all():
        booked.setdefault(technician_id, []).append((grid.Interval(start, end), grid.load_minutes(minutes)))
    return [grid.TechnicianDay(
        technician_id=str(technician_id), shift=grid.local_interval(day, shift.starts, shift.ends, tz),
        breaks=tuple(grid.local_interval(day, time.fromisoformat(a), time.fromisoformat(b), tz) for a, b in shift.breaks),
        certified=tuple(certified.get(technician_id, ())), booked=tuple(booked.get(technician_id, ())))
        for technician_id, shift in rows]


async def _plan(session: AsyncSession, *, address: Address, kind: str, day: date, now: datetime,
                field: str, skip_order: uuid.UUID | None = None) -> DayPlan:
    service_kind = await _bookable_kind(session, kind)
    city_id = await city_at(session, address.location)
    tz = await city_timezone(session, city_id)
    today = _today(now, tz)
    if not today <= day <= today + timedelta(days=grid.HORIZON_DAYS):
        raise BookingInvalid(field, f"book from today up to {grid.HORIZON_DAYS} days ahead")
    technicians = await _technician_days(session, address.id, city_id, service_kind.required_certification, day, tz,
                                         skip_order)
    found = grid.slots(technicians, grid.windows_of(day, tz), grid.load_minutes(service_kind.typical_duration_min),
                       now + grid.TRAVEL_ALLOWANCE)
    return DayPlan(city_id, tz, day, kind, found)


async def day_windows(session: AsyncSession, *, address: Address, kind: str, day: date, now: datetime,
                      skip_order: uuid.UUID | None = None) -> DayPlan:
    """The windows with room at an address on a local day (`skip_order`'s own visit not counted)."""
    return await _plan(session, address=address, kind=kind, day=day, now=now, field="date", skip_order=skip_order)


async def available_slots(session: AsyncSession, *, customer_id: uuid.UUID, address_id: uuid.UUID, kind: str,
                          day: date | None, now: datetime) -> DayPlan:
    """`day` None: today on the city's calendar (a phone abroad does not know which day that is)."""
    address = await _own_address(session, address_id, customer_id)
    if day is None:
        day = _today(now, await city_timezone(session, await city_at(session, address.location)))
    return await _plan(session, address=address, kind=kind, day=day, now=now, field="date")


# -- bookings ----------------------------------------------------------------------------------


async def _lock_day(session: AsyncSession, city_id: str, day: date) -> None:
    """Bookings of one city's day one at a time (held to the commit): two customers never both
    take a window's last room."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"scheduling:day:{city_id}:{day.isoformat()}"})


async def _take(session: AsyncSession, *, address: Address, kind: str, window_start: datetime, now: datetime,
                skip_order: uuid.UUID | None = None) -> tuple[grid.Interval, uuid.UUID]:
    """The window starting at `window_start` and the technician with the most room in it."""
    if window_start < now + grid.TRAVEL_ALLOWANCE:
        raise BookingInvalid("window_start", "the window has begun or is too close to reach")
    if window_start > now + timedelta(days=grid.HORIZON_DAYS + 1):  # before any calendar arithmetic on it
        raise BookingInvalid("window_start", f"book up to {grid.HORIZON_DAYS} days ahead")
    city_id = await city_at(session, address.location)
    day = window_start.astimezone(await city_timezone(session, city_id)).date()
    await _lock_day(session, city_id, day)
    plan = await _plan(session, address=address, kind=kind, day=day, now=now, field="window_start",
                       skip_order=skip_order)
    if not any(w.start == window_start for w in grid.windows_of(day, plan.tz)):
        raise BookingInvalid("window_start", "not the start of an offered window")
    slot = next((s for s in plan.slots if s.window.start == window_start), None)
    if slot is None:
        raise SlotUnavailable()
    utc = grid.Interval(slot.window.start.astimezone(timezone.utc), slot.window.end.astimezone(timezone.utc))
    return utc, uuid.UUID(slot.technician_ids[0])


async def book(session: AsyncSession, *, customer_id: uuid.UUID, address_id: uuid.UUID, kind: str,
               window_start: datetime, actor: dispatch.Actor, description: str = "", now: datetime,
               source: str = "customer") -> Order:
    address = await _own_address(session, address_id, customer_id)
    window, technician_id = await _take(session, address=address, kind=kind, window_start=window_start, now=now)
    order = await dispatch.create_order(session, customer_id=customer_id, address_id=address_id, kind=kind,
                                        actor=actor, description=description, window=(window.start, window.end),
                                        now=now, source=source)
    session.add(Booking(order_id=order.id, technician_id=technician_id, created_at=now))
    await session.flush()
    return order


# A campaign's time of day -> the local hours its windows start in.
TIME_OF_DAY_HOURS = {"morning": (8, 12), "afternoon": (12, 18), "evening": (18, 22)}
CAMPAIGN = dispatch.Actor.system("field.campaign")


async def book_campaign_visit(session: AsyncSession, *, customer_id: uuid.UUID, address_id: uuid.UUID, kind: str,
                              day: date, time_of_day: str, description: str, now: datetime) -> Order | None:
    """A periodic inspection booked like a customer's visit: the first window with room in its
    time of day, else the first of the day; the household is told and may move it. None: no
    window of the day has room (or the day is past)."""
    address = await _own_address(session, address_id, customer_id)
    try:
        plan = await day_windows(session, address=address, kind=kind, day=day, now=now)
    except BookingInvalid:
        return None
    first, last = TIME_OF_DAY_HOURS[time_of_day]
    for slot in sorted(plan.slots, key=lambda s: (not first <= s.window.start.hour < last, s.window.start)):
        try:
            order = await book(session, customer_id=customer_id, address_id=address_id, kind=kind,
                               window_start=slot.window.start, actor=CAMPAIGN, description=description, now=now,
                               source="campaign")
        except SlotUnavailable:
            continue
        await tell_customer(session, order, "inspection_booked", "安检预约 / Safety inspection booked",
                            dedupe_key=f"booking:{order.id}:booked")
        return order
    return None


async def tell_customer(session: AsyncSession, order: Order, kind: str, title: str, *, dedupe_key: str,
                        **extra: str) -> bool:
    """A notice about a booked visit's window: to the customer's account (his list, his channels)
    and on the order's socket, which his open order page listens to. False: told already."""
    assert order.window_start is not None and order.window_end is not None
    customer = await queries.find_customer(session, order.customer_id)
    if customer is None:
        return False
    window = {"window_start": order.window_start.isoformat(), "window_end": order.window_end.isoformat(),
              "timezone": await timezone_of(session, order.city_id)}
    sent = await notify(session, customer.account_id, kind, title,
                        f"Visit window {window['window_start']} to {window['window_end']}",
                        {"order_id": str(order.id), **window, **extra}, dedupe_key=dedupe_key)
    if sent is None:
        return False
    push_after_commit(session, order_channel(order.id), "notification", notification=pushed(sent))
    return True


async def move(session: AsyncSession, order_id: uuid.UUID, *, window_start: datetime, actor: dispatch.Actor,
               now: datetime) -> Order:
    """Another available window for a booked order not yet released; its own visit does not
    count against the new window."""
    order = await dispatch.get_order(session, order_id)
    booking = await session.get(Booking, order_id, with_for_update=True)
    if booking is None:
        raise NotFound("no such booking")
    address = await session.get(Address, order.address_id)
    assert address is not None, "an order's address outlives it"
    window, technician_id = await _take(session, address=address, kind=order.kind, window_start=window_start,
                                        now=now, skip_order=order_id)
    moved = await dispatch.move_window(session, order_id, actor, (window.start, window.end), now=now)
    booking.technician_id = technician_id
    session.add(booking)
    await session.flush()
    return moved


async def release_due(session: AsyncSession, now: datetime) -> int:
    """Booked orders whose window is within the travel allowance enter matching, offered first
    to the technician who holds their capacity. Orders another transaction holds (a cancel)
    wait for the next run."""
    due = (await session.exec(
        select(Order.id, Booking.technician_id).join(Booking, Booking.order_id == Order.id)
        .where(Order.status == "scheduled", col(Order.window_start) <= now + grid.TRAVEL_ALLOWANCE)
        .with_for_update(of=Order, skip_locked=True))).all()
    for order_id, technician_id in due:
        await dispatch.transition(session, order_id, "release", RELEASER, expected_status="scheduled",
                                  set_values={"preferred_technician_id": technician_id}, now=now)
    return len(due)
