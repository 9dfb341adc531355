"""What other packages read of dispatch's tables: orders, technicians, stations, addresses, blocks.

Matching and settlement ask here instead of building SQL against dispatch's tables, so a column
or an index changes in one package. A function returning a query (not rows) is for a caller
that runs it inside one statement of its own (one round trip on the emergency path). Writes go
through dispatch.service and dispatch.technicians.
"""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import (
    Account,
    Address,
    Certification,
    City,
    Customer,
    CustomerBlock,
    Order,
    OrderEvent,
    ServiceKind,
    ServiceStation,
    Technician,
)
from dispatch.states import ACTIVE_JOB_STATES

# Orders ------------------------------------------------------------------------------------


async def find_order(session: AsyncSession, order_id: uuid.UUID, *, refresh: bool = False) -> Order | None:
    """`refresh`: read the row again even if this session holds it."""
    return await session.get(Order, order_id, populate_existing=refresh)


async def order_for_update(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """The order as the database has it, its row locked by this transaction."""
    return await session.get(Order, order_id, populate_existing=True, with_for_update=True)


async def lock_orders(session: AsyncSession, order_ids: Collection[uuid.UUID] | Select[Any]) -> None:
    """Locks the orders (ids, or a query of ids) in id order: every path that locks several
    orders takes them so, and none waits on another crosswise."""
    await session.exec(select(Order.id).where(col(Order.id).in_(order_ids)).order_by(Order.id).with_for_update())


async def waiting_orders(session: AsyncSession, city: str) -> Sequence[Order]:
    """The city's orders in matching, oldest first, locked; an order another transaction holds
    (a cancel, an assign) is skipped, not waited for."""
    return (await session.exec(
        select(Order).where(Order.city_id == city, Order.status == "matching").order_by(Order.created_at)
        .with_for_update(skip_locked=True))).all()


async def orders_past_deadline(session: AsyncSession, now: datetime, city_id: str | None = None) -> Sequence[uuid.UUID]:
    """Orders not yet offered whose SLA deadline passed (of one city, or of all)."""
    return (await session.exec(select(Order.id).where(
        col(Order.status).in_(("created", "matching")), Order.sla_deadline <= now,
        *([Order.city_id == city_id] if city_id else [])))).all()


async def orders_past_alert_threshold(session: AsyncSession, now: datetime, first_alert_s: Mapping[str, float],
                                      city_id: str | None = None) -> Sequence[Order]:
    """Orders in matching or offered that have waited past their priority's first alert
    threshold (`first_alert_s`: seconds per priority)."""
    # A booked appointment waits from its window's start, not from the day it was booked.
    since = func.coalesce(Order.window_start, Order.created_at)
    return (await session.exec(select(Order).where(
        col(Order.status).in_(("matching", "offered")), *([Order.city_id == city_id] if city_id else []),
        or_(*(and_(Order.priority == p, since <= now - timedelta(seconds=s)) for p, s in first_alert_s.items())),
    ))).all()


async def orders_in(session: AsyncSession, order_ids: Collection[uuid.UUID], statuses: Collection[str]) -> Sequence[Order]:
    """Those of the orders whose status is one of `statuses`."""
    return (await session.exec(select(Order).where(
        col(Order.id).in_(order_ids), col(Order.status).in_(statuses)))).all()


async def routine_job_to_preempt(session: AsyncSession, technician_id: uuid.UUID) -> Order | None:
    """The technician's latest routine job he accepted and has not set out for."""
    return (await session.exec(select(Order).where(
        Order.technician_id == technician_id, Order.status == "accepted", Order.priority == "routine",
    ).order_by(col(Order.created_at).desc()).limit(1))).first()


async def jobs_in_hand(session: AsyncSession, technician_ids: Collection[uuid.UUID], *,
                       other_than: uuid.UUID | None = None) -> dict[uuid.UUID, int]:
    """Active jobs per technician (those with none are absent); `other_than`: an order not counted."""
    rows = await session.exec(select(Order.technician_id, func.count()).where(
        col(Order.technician_id).in_(technician_ids), col(Order.status).in_(ACTIVE_JOB_STATES),
        *([Order.id != other_than] if other_than is not None else []),
    ).group_by(Order.technician_id))
    return {tid: n for tid, n in rows.all() if tid is not None}


async def jobs_held(session: AsyncSession, technician_id: uuid.UUID) -> int:
    """One technician's active jobs."""
    return (await session.exec(select(func.count()).select_from(Order).where(
        Order.technician_id == technician_id, col(Order.status).in_(ACTIVE_JOB_STATES)))).one()


async def typical_durations(session: AsyncSession) -> dict[str, int]:
    """Service kind -> its typical duration in minutes."""
    return dict((await session.exec(select(ServiceKind.code, ServiceKind.typical_duration_min))).all())


@dataclass(frozen=True, slots=True)
class JobUnderway:
    technician_id: uuid.UUID
    order_id: uuid.UUID
    status: str
    location: Any  # geography(Point): kit.geo.lonlat
    duration_min: int
    updated_at: datetime

    def ends_at(self, now: datetime, drive_s: float = 0.0) -> datetime:
        """When it should be done: its kind's typical duration from its last step once he is
        there, else from now plus the drive (`drive_s`, where the caller knows it)."""
        duration = timedelta(minutes=self.duration_min)
        if self.status in ("arrived", "in_service"):
            return max(now, self.updated_at + duration)
        return now + timedelta(seconds=drive_s) + duration


async def jobs_underway(session: AsyncSession, technician_ids: Collection[uuid.UUID]) -> list[JobUnderway]:
    """The technicians' active jobs, oldest first."""
    rows = (await session.exec(
        select(Order.technician_id, Order.id, Order.status, Order.location, ServiceKind.typical_duration_min,
               Order.updated_at)
        .join(ServiceKind, ServiceKind.code == Order.kind)
        .where(col(Order.technician_id).in_(technician_ids), col(Order.status).in_(ACTIVE_JOB_STATES))
        .order_by(Order.created_at))).all()
    return [JobUnderway(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class CompletedOrder:
    location: Any  # geography(Point): kit.geo.lonlat
    created_at: datetime
    started_at: datetime | None  # service began (None: the log has no start_service)
    completed_at: datetime


async def completed_in(session: AsyncSession, city_id: str, start: datetime, end: datetime) -> list[CompletedOrder]:
    """The city's orders that reached `completed` in [start, end) (whatever came after), by
    completion time: what matching learns cell values from."""
    def reached(status: str) -> Any:
        return (select(OrderEvent.order_id, func.max(OrderEvent.created_at).label("at"))
                .where(OrderEvent.to_status == status).group_by(OrderEvent.order_id).subquery())

    done, begun = reached("completed"), reached("in_service")
    rows = (await session.exec(
        select(Order.location, Order.created_at, begun.c.at, done.c.at)
        .join(done, done.c.order_id == Order.id).outerjoin(begun, begun.c.order_id == Order.id)
        .where(Order.city_id == city_id, done.c.at >= start, done.c.at < end)
        .order_by(done.c.at, Order.id))).all()
    return [CompletedOrder(*row) for row in rows]


def with_order_kind(entity: Any, order_id: Any) -> Select[Any]:
    """A query of `entity`'s rows, each with the kind of the order its column `order_id` names,
    joined in one statement; the caller adds its own filters."""
    return select(entity, Order.kind).join(Order, col(Order.id) == order_id)


async def emergencies_in_area(session: AsyncSession, station_id: uuid.UUID, since: datetime) -> int:
    """Emergency orders placed inside the station's service area since then."""
    return (await session.exec(select(func.count()).select_from(Order).join(
        ServiceStation, func.ST_Covers(ServiceStation.service_area, Order.location)).where(
        Order.priority == "emergency", Order.created_at >= since, ServiceStation.id == station_id))).one()


# An order's timeline -----------------------------------------------------------------------


def step_count_query(order_id: uuid.UUID, action: str) -> Any:
    """A scalar subquery: how often the action is on the order's timeline."""
    return select(func.count()).select_from(OrderEvent).where(
        OrderEvent.order_id == order_id, OrderEvent.action == action).scalar_subquery()


async def step_payloads(session: AsyncSession, order_ids: Collection[uuid.UUID],
                        action: str) -> Sequence[tuple[uuid.UUID, dict[str, Any]]]:
    """(order id, payload) of each time the action is on these orders' timelines."""
    return (await session.exec(select(OrderEvent.order_id, OrderEvent.payload).where(
        col(OrderEvent.order_id).in_(order_ids), OrderEvent.action == action))).all()


async def last_step_at(session: AsyncSession, order_id: uuid.UUID, action: str) -> datetime | None:
    return (await session.exec(select(func.max(OrderEvent.created_at)).where(
        OrderEvent.order_id == order_id, OrderEvent.action == action))).one()


# Cities ------------------------------------------------------------------------------------


async def find_city(session: AsyncSession, city_id: str) -> City | None:
    return await session.get(City, city_id)


async def city_ids(session: AsyncSession) -> list[str]:
    return list((await session.exec(select(City.id))).all())


async def cities_with_work(session: AsyncSession) -> list[str]:
    """Cities with orders waiting or offered, or technicians on duty, by id."""
    waiting = select(Order.city_id).where(col(Order.status).in_(("created", "matching", "offered")))
    on_duty = select(Technician.city_id).where(col(Technician.status).in_(("online", "busy")))
    rows = await session.exec(select(City.id).where(or_(col(City.id).in_(waiting), col(City.id).in_(on_duty)))
                              .order_by(City.id))
    return list(rows.all())


# Technicians -------------------------------------------------------------------------------


async def find_technician(session: AsyncSession, technician_id: uuid.UUID) -> Technician | None:
    return await session.get(Technician, technician_id)


async def technician_for_update(session: AsyncSession, technician_id: uuid.UUID) -> Technician | None:
    """The technician's row, locked by this transaction."""
    return (await session.exec(
        select(Technician).where(Technician.id == technician_id).with_for_update())).first()


async def technician_city(session: AsyncSession, technician_id: uuid.UUID) -> str | None:
    return (await session.exec(select(Technician.city_id).where(Technician.id == technician_id))).first()


async def technician_accounts(session: AsyncSession, technician_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each technician's account id."""
    return dict((await session.exec(select(Technician.id, Technician.account_id).where(
        col(Technician.id).in_(technician_ids)))).all())


async def technicians_on_duty(session: AsyncSession, cities: Collection[str]) -> Sequence[Technician]:
    """The cities' technicians online or busy."""
    return (await session.exec(select(Technician).where(
        col(Technician.city_id).in_(cities), col(Technician.status).in_(("online", "busy"))))).all()


async def online_technicians(session: AsyncSession, technician_ids: Collection[uuid.UUID]) -> Sequence[Technician]:
    """Those of the technicians who are online (not busy, not offline)."""
    return (await session.exec(select(Technician).where(
        col(Technician.id).in_(technician_ids), Technician.status == "online"))).all()


async def certifications_by_technician(session: AsyncSession,
                                       technician_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Certification]]:
    """Every certification of the technicians, whatever its status."""
    certs: dict[uuid.UUID, list[Certification]] = {}
    for cert in (await session.exec(select(Certification).where(
            col(Certification.technician_id).in_(technician_ids)))).all():
        certs.setdefault(cert.technician_id, []).append(cert)
    return certs


def blocked_technicians_query(customer_id: uuid.UUID) -> Select[Any]:
    """A query of the ids of the technicians the customer blocked: the caller may run it alone
    or unite it with its own (add_columns, union_all) in one statement."""
    return select(CustomerBlock.technician_id).where(CustomerBlock.customer_id == customer_id)


def blocks_of_query(customer_ids: Sequence[uuid.UUID]) -> Select[Any]:
    """(customer id, technician id) of every block these customers made, to unite likewise."""
    return select(CustomerBlock.customer_id, CustomerBlock.technician_id).where(
        col(CustomerBlock.customer_id).in_(customer_ids))


# Stations ----------------------------------------------------------------------------------


async def stations_in(session: AsyncSession, city_id: str) -> Sequence[ServiceStation]:
    return (await session.exec(select(ServiceStation).where(ServiceStation.city_id == city_id))).all()


async def station_names(session: AsyncSession) -> dict[uuid.UUID, str]:
    return {s.id: s.name for s in (await session.exec(select(ServiceStation))).all()}


# Customers and accounts --------------------------------------------------------------------


async def find_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    return await session.get(Customer, customer_id)


async def find_address(session: AsyncSession, address_id: uuid.UUID) -> Address | None:
    return await session.get(Address, address_id)


async def find_account(session: AsyncSession, account_id: uuid.UUID) -> Account | None:
    return await session.get(Account, account_id)


# Booked visits (the day planner, scheduling/planner.py) ---------------------------------------


@dataclass(frozen=True, slots=True)
class BookedVisit:
    order_id: uuid.UUID
    status: str
    address_line: str
    location: Any  # geography(Point): kit.geo.lonlat
    window_start: datetime
    window_end: datetime
    kind: str
    certification: str  # the certification kind the work needs
    duration_min: int  # the service kind's typical duration


def _visits() -> Select[Any]:
    return (select(Order.id, Order.status, Address.line, Address.location, Order.window_start, Order.window_end,
                   Order.kind, ServiceKind.required_certification, ServiceKind.typical_duration_min)
            .join(Address, Address.id == Order.address_id).join(ServiceKind, ServiceKind.code == Order.kind)
            .where(col(Order.window_start).is_not(None)))


async def scheduled_visits(session: AsyncSession, city_id: str, start: datetime, end: datetime) -> list[BookedVisit]:
    """The city's orders still `scheduled` whose window starts in [start, end), earliest first."""
    rows = (await session.exec(_visits().where(  # type: ignore[call-overload]
        Order.city_id == city_id, Order.status == "scheduled", col(Order.window_start) >= start,
        col(Order.window_start) < end).order_by(Order.window_start, Order.id))).all()
    return [BookedVisit(*row) for row in rows]


async def scheduled_starting(session: AsyncSession, after: datetime, until: datetime) -> Sequence[Order]:
    """Orders still `scheduled` whose window starts in (after, until], earliest first."""
    return (await session.exec(select(Order).where(
        Order.status == "scheduled", col(Order.window_start) > after, col(Order.window_start) <= until)
        .order_by(Order.window_start))).all()


async def visits_of(session: AsyncSession, order_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, BookedVisit]:
    rows = (await session.exec(_visits().where(col(Order.id).in_(order_ids)))).all()  # type: ignore[call-overload]
    return {row[0]: BookedVisit(*row) for row in rows}


async def bookable_technicians(session: AsyncSession, city_id: str,
                               technician_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Those of the technicians who are active, not suspended and of the city -> their station's
    location (None without a station)."""
    rows = (await session.exec(
        select(Technician.id, ServiceStation.location)
        .outerjoin(ServiceStation, ServiceStation.id == Technician.station_id)
        .where(col(Technician.id).in_(technician_ids), Technician.city_id == city_id,
               Technician.onboarding == "active", Technician.status != "suspended"))).all()
    return dict(rows)


async def covering(session: AsyncSession, technician_ids: Collection[uuid.UUID],
                   order_ids: Collection[uuid.UUID]) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """(technician, order) pairs where the technician covers the order's address: his station's
    service area covers it, or he has no station and the order is in his city."""
    rows = (await session.exec(
        select(Technician.id, Order.id)
        .join(Address, Address.id == Order.address_id)
        .join(Technician, col(Technician.id).in_(technician_ids))
        .outerjoin(ServiceStation, ServiceStation.id == Technician.station_id)
        .where(col(Order.id).in_(order_ids),
               or_(and_(col(Technician.station_id).is_not(None),
                        func.ST_Covers(ServiceStation.service_area, Address.location)),
                   and_(col(Technician.station_id).is_(None), Technician.city_id == Order.city_id))))).all()
    return {(technician_id, order_id) for technician_id, order_id in rows}
