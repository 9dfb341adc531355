"""Periodic home inspections (入户安检): plan due households within each station's daily
capacity, book each a window the day before (routed by the day planner with the other booked
visits), and re-plan visits where nobody opened the door: the household is booked another
window, on another day and time of day, and told."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from geoalchemy2 import functions as geo
from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.events import publish_event
from dispatch.field.events import CampaignRetriesExhausted
from dispatch.field.models import TIME_SLOTS, InspectionPlan, Visit
from dispatch.models import Address, Order, ServiceStation
from dispatch.service import Actor, create_order

CAMPAIGN = Actor.system("field.campaign")
INSPECTION_KIND = "inspection"
# Plans still holding the household's place in the campaign.
ACTIVE = ("planned", "ordered", "no_access")


@dataclass
class CampaignRun:
    planned: int = 0
    ordered: int = 0  # orders made, booked windows among them
    booked: int = 0
    replanned: int = 0
    exhausted: int = 0


# Books a planned inspection a window on its day in its time of day (else another with room):
# the scheduling package plugs its bookings in here. None: no window with room.
Booker = Callable[..., Awaitable[Order | None]]


async def no_bookings(session: AsyncSession, **visit: Any) -> Order | None:
    return None


_booker: Booker = no_bookings


def use_booker(booker: Booker) -> None:
    global _booker
    _booker = booker


async def station_covering(session: AsyncSession, location: Any) -> uuid.UUID | None:
    return (await session.exec(select(ServiceStation.id).where(
        geo.ST_Covers(ServiceStation.service_area, location)).order_by(ServiceStation.created_at).limit(1))).first()


async def record_outcome(session: AsyncSession, order_id: uuid.UUID, status: str, now: datetime) -> None:
    """An inspection order finished (`done`) or found nobody home (`no_access`)."""
    await session.exec(update(InspectionPlan).where(
        InspectionPlan.order_id == order_id, InspectionPlan.status == "ordered").values(status=status, updated_at=now))


async def _load(session: AsyncSession, station_id: uuid.UUID, first: date, last: date) -> dict[date, int]:
    rows = (await session.exec(select(InspectionPlan.planned_on, func.count()).where(
        InspectionPlan.station_id == station_id, col(InspectionPlan.planned_on).between(first, last),
        col(InspectionPlan.status).notin_(("replanned", "exhausted"))).group_by(InspectionPlan.planned_on))).all()
    return {day: count for day, count in rows}


def _days_with_room(capacity: int, load: dict[date, int], first: date, horizon: int) -> list[date]:
    """One entry per free place, day by day: households are spread over the coming days."""
    slots: list[date] = []
    for offset in range(horizon):
        day = first + timedelta(days=offset)
        slots.extend([day] * max(0, capacity - load.get(day, 0)))
    return slots


async def _replan(session: AsyncSession, now: datetime, run: CampaignRun) -> None:
    settings = get_settings()
    tomorrow = now.date() + timedelta(days=1)
    missed = (await session.exec(select(InspectionPlan).where(InspectionPlan.status == "no_access")
                                 .order_by(InspectionPlan.updated_at).with_for_update())).all()
    for plan in missed:
        plan.status, plan.updated_at = "replanned", now
        session.add(plan)
        await session.flush()  # frees the household's place before its next plan takes it
        if plan.attempt >= settings.field_campaign_max_tries:
            plan.status = "exhausted"
            await publish_event(session, CampaignRetriesExhausted(address_id=plan.address_id,
                                                                  customer_id=plan.customer_id))
            run.exhausted += 1
            continue
        station = await session.get(ServiceStation, plan.station_id)
        assert station is not None
        days = _days_with_room(station.daily_capacity,
                               await _load(session, station.id, tomorrow, tomorrow + timedelta(days=settings.field_campaign_horizon_days)),
                               tomorrow, settings.field_campaign_horizon_days)
        if not days:
            plan.status = "no_access"  # no room yet; tried again tomorrow
            continue
        # Another day (from tomorrow on) and another time of day than the missed visit.
        slot = TIME_SLOTS[(TIME_SLOTS.index(plan.slot) + 1) % len(TIME_SLOTS)]
        session.add(InspectionPlan(address_id=plan.address_id, customer_id=plan.customer_id, station_id=station.id,
                                   planned_on=days[0], slot=slot, attempt=plan.attempt + 1, created_at=now, updated_at=now))
        run.replanned += 1
    await session.flush()


async def _plan_due(session: AsyncSession, now: datetime, run: CampaignRun,
                    on_station: Callable[[str], None] | None) -> None:
    settings = get_settings()
    tomorrow = now.date() + timedelta(days=1)
    horizon = settings.field_campaign_horizon_days
    inspected_since = now - timedelta(days=settings.field_inspection_period_days)
    recently_inspected = (select(Order.address_id).join(Visit, col(Visit.order_id) == Order.id)
                          .where(Order.kind == INSPECTION_KIND, Visit.outcome == "done",
                                 col(Visit.checked_out_at) > inspected_since))
    active = select(InspectionPlan.address_id).where(col(InspectionPlan.status).in_(ACTIVE))
    claimed: set[uuid.UUID] = set()
    for station in (await session.exec(select(ServiceStation).order_by(ServiceStation.created_at))).all():
        days = _days_with_room(station.daily_capacity,
                               await _load(session, station.id, tomorrow, tomorrow + timedelta(days=horizon)),
                               tomorrow, horizon)
        due = (await session.exec(select(Address).where(
            geo.ST_Covers(station.service_area, Address.location),
            col(Address.id).notin_(recently_inspected), col(Address.id).notin_(active),
        ).order_by(Address.created_at, Address.id).limit(len(days) + len(claimed)))).all()
        due = [a for a in due if a.id not in claimed][: len(days)]
        for i, (address, day) in enumerate(zip(due, days, strict=False)):
            session.add(InspectionPlan(address_id=address.id, customer_id=address.customer_id, station_id=station.id,
                                       planned_on=day, slot=TIME_SLOTS[i % len(TIME_SLOTS)], created_at=now,
                                       updated_at=now))
            claimed.add(address.id)
        run.planned += len(due)
        await session.flush()
        if on_station is not None:
            on_station(station.name)


async def _order_upcoming(session: AsyncSession, now: datetime, run: CampaignRun) -> None:
    """Tomorrow's visits (and any left from earlier days) are booked a window; one that finds
    no window with room by its own day becomes an on-demand order on that day, as before."""
    plans = (await session.exec(select(InspectionPlan).where(
        InspectionPlan.status == "planned", col(InspectionPlan.planned_on) <= now.date() + timedelta(days=1))
        .with_for_update())).all()
    for plan in plans:
        description = f"periodic safety inspection, {plan.slot}, try {plan.attempt}"
        order = await _booker(session, customer_id=plan.customer_id, address_id=plan.address_id, kind=INSPECTION_KIND,
                              day=plan.planned_on, time_of_day=plan.slot, description=description, now=now)
        if order is not None:
            run.booked += 1
        elif plan.planned_on > now.date():
            continue  # booked on a later run, or ordered on its day
        else:
            order = await create_order(session, customer_id=plan.customer_id, address_id=plan.address_id,
                                       kind=INSPECTION_KIND, actor=CAMPAIGN, now=now, source="campaign",
                                       description=description)
        plan.order_id, plan.status, plan.updated_at = order.id, "ordered", now
        session.add(plan)
        run.ordered += 1
    await session.flush()


async def stations_count(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(ServiceStation))).one()


async def run_daily(session: AsyncSession, now: datetime,
                    on_station: Callable[[str], None] | None = None) -> CampaignRun:
    """The daily job: re-plan missed visits, plan newly due households, book tomorrow's visits."""
    run = CampaignRun()
    await _replan(session, now, run)
    await _plan_due(session, now, run, on_station)
    await _order_upcoming(session, now, run)
    return run
