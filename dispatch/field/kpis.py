"""Station KPIs over a period. An order belongs to the station whose service area covers its
address; the figures are computed from the rows, so a test can check them by hand."""

import statistics
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from geoalchemy2 import functions as geo
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import NotFound
from dispatch.field.models import Hazard, Visit
from dispatch.models import Order, ServiceStation

DONE = ("completed", "reviewed", "settled")
AGE_BUCKETS = ((7, "0-7d"), (30, "8-30d"), (90, "31-90d"))
OLDEST = "over-90d"


@dataclass
class StationKpis:
    orders_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    # Inspections done ÷ inspections attempted (done + no access); None when none were attempted.
    home_entry_rate: float | None = None
    # Minutes from the order's creation to the technician's check-in.
    median_arrival_min: float | None = None
    # Completed repairs (not follow-ups) that left no hazard to come back for ÷ completed repairs;
    # a hazard fixed on site leaves nothing to come back for.
    first_visit_fix_rate: float | None = None
    open_hazards_by_age: dict[str, int] = field(default_factory=dict)


def outcome(order: Order, visit: Visit | None) -> str:
    if visit is not None and visit.outcome == "no_access":
        return "no_access"
    if order.status in DONE:
        return "completed"
    if order.status in ("cancelled", "unfulfilled"):
        return order.status
    return "open"


def age_bucket(days: int) -> str:
    return next((name for limit, name in AGE_BUCKETS if days <= limit), OLDEST)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def station_kpis(session: AsyncSession, station_id: uuid.UUID, start: datetime, end: datetime) -> StationKpis:
    station = await session.get(ServiceStation, station_id)
    if station is None:
        raise NotFound("no such station")
    rows = (await session.exec(
        select(Order, Visit).join(Visit, col(Visit.order_id) == Order.id, isouter=True).where(
            geo.ST_Covers(station.service_area, Order.location),
            col(Order.created_at) >= start, col(Order.created_at) < end))).all()
    left_hazards = set((await session.exec(select(Hazard.order_id).where(
        col(Hazard.order_id).in_([o.id for o, _ in rows]), Hazard.resolution == "needs_followup")))
        .all()) if rows else set()
    kpis = StationKpis()
    inspections = {"completed": 0, "no_access": 0}
    arrivals: list[float] = []
    repairs = fixed_first = 0
    for order, visit in rows:
        result = outcome(order, visit)
        by_outcome = kpis.orders_by_kind.setdefault(order.kind, {})
        by_outcome[result] = by_outcome.get(result, 0) + 1
        if order.required_certification == "inspection" and result in inspections:
            inspections[result] += 1
        if visit is not None and visit.checked_in_at is not None:
            arrivals.append((visit.checked_in_at - order.created_at).total_seconds() / 60)
        if result == "completed" and order.required_certification != "inspection" and order.source != "followup":
            repairs += 1
            fixed_first += order.id not in left_hazards
    kpis.home_entry_rate = _ratio(inspections["completed"], sum(inspections.values()))
    kpis.median_arrival_min = round(statistics.median(arrivals), 1) if arrivals else None
    kpis.first_visit_fix_rate = _ratio(fixed_first, repairs)
    # Hazards open at the end of the period, however old.
    hazards = (await session.exec(select(Hazard).where(
        Hazard.station_id == station_id, col(Hazard.found_at) < end,
        or_(Hazard.status == "open", col(Hazard.fixed_at) >= end)))).all()
    kpis.open_hazards_by_age = {name: 0 for _, name in AGE_BUCKETS} | {OLDEST: 0}
    for hazard in hazards:
        kpis.open_hazards_by_age[age_bucket((end - hazard.found_at).days)] += 1
    return kpis
