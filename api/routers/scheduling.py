"""Appointments and shifts: technicians' working time, bookable windows, bookings.

Cancelling a booking is the orders' own route (POST /v1/orders/{id}/cancel)."""

import uuid
from datetime import date, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from api import presenters
from api.deps import (
    Admin,
    CurrentTechnician,
    CustomerOrAdmin,
    CustomerPrincipal,
    IdempotencyKey,
    RedisDep,
    SessionDep,
    Staff,
    remember_idempotent,
    replay_idempotent,
)
from dispatch import service as dispatch
from dispatch.accounts import customer_for_account
from dispatch.schemas import OrderPublic
from kit.db import database_now
from kit.geo import to_geojson
from scheduling import planner, service
from scheduling.schemas import (
    BookingCreate,
    BookingMove,
    DayPlanPublic,
    PlannedStopPublic,
    ScheduleIn,
    SchedulePublic,
    SlotPublic,
    SlotsPublic,
)

router = APIRouter(tags=["scheduling"])


@router.get("/v1/technicians/me/shifts")
async def my_shifts(technician: CurrentTechnician, session: SessionDep) -> SchedulePublic:
    """Weekly shifts with breaks (times local to `timezone`), start and end places, days off not yet over."""
    return await service.get_schedule(session, technician.id, await database_now(session))


@router.put("/v1/technicians/me/shifts", responses={
    422: {"description": "`schedule-invalid` naming the `field` (a shift ending before it starts, a break "
                         "outside its shift, overlapping or past days off)"}})
async def put_my_shifts(body: ScheduleIn, technician: CurrentTechnician, session: SessionDep) -> SchedulePublic:
    return await service.put_schedule(session, technician.id, body, await database_now(session))


@router.get("/v1/ops/technicians/{technician_id}/shifts")
async def technician_shifts(technician_id: uuid.UUID, principal: Staff, session: SessionDep) -> SchedulePublic:
    return await service.get_schedule(session, technician_id, await database_now(session))


@router.put("/v1/ops/technicians/{technician_id}/shifts", responses={
    422: {"description": "`schedule-invalid` naming the `field`"}})
async def put_technician_shifts(technician_id: uuid.UUID, body: ScheduleIn, principal: Admin,
                                session: SessionDep) -> SchedulePublic:
    return await service.put_schedule(session, technician_id, body, await database_now(session))


@router.get("/v1/slots", responses={
    422: {"description": "`on-demand-only` for emergency and urgent work; `booking-invalid` for a date "
                         "outside today .. 30 days ahead"}})
async def slots(principal: CustomerPrincipal, session: SessionDep, address_id: uuid.UUID,
                kind: Annotated[str, Query(min_length=1, max_length=40)],
                day: Annotated[date | None, Query(alias="date")] = None) -> SlotsPublic:
    """The 2-hour arrival windows of a local day (without `date`: the city's today, named in the
    answer's `date`) that some certified technician covering the address can still serve, with
    how many visits each can still take."""
    customer = await customer_for_account(session, principal.account_id)
    plan = await service.available_slots(session, customer_id=customer.id, address_id=address_id, kind=kind,
                                         day=day, now=await database_now(session))
    return SlotsPublic(date=plan.day, timezone=plan.tz.key, kind=plan.kind, data=[
        SlotPublic(window_start=s.window.start.astimezone(timezone.utc), window_end=s.window.end.astimezone(timezone.utc),
                   capacity=s.capacity) for s in plan.slots])


@router.post("/v1/bookings", status_code=status.HTTP_201_CREATED, response_model=OrderPublic, responses={
    409: {"description": "`slot-unavailable`: the window filled meanwhile; or too many open orders"},
    422: {"description": "`on-demand-only`, or `booking-invalid` naming the `field`"}})
async def book(body: BookingCreate, principal: CustomerPrincipal, session: SessionDep, redis: RedisDep,
               idempotency_key: IdempotencyKey = None) -> Any:
    """An order confirmed for an arrival window (`status` scheduled, `window_start`/`window_end`)."""
    request_hash, replay = await replay_idempotent(session, principal, idempotency_key, "POST /v1/bookings", body)
    if replay is not None:
        return replay
    customer = await customer_for_account(session, principal.account_id)
    await dispatch.throttle_order_creation(redis, customer.id)
    order = await service.book(session, customer_id=customer.id, address_id=body.address_id, kind=body.kind,
                               window_start=body.window_start, description=body.description,
                               actor=dispatch.Actor("customer", str(principal.account_id)),
                               now=await database_now(session))
    public = await presenters.order(session, order)
    await remember_idempotent(session, principal, idempotency_key, "POST /v1/bookings", request_hash, 201, public)
    return public


@router.post("/v1/bookings/{order_id}/reschedule", responses={
    409: {"description": "`slot-unavailable`, or the order is no longer scheduled (`current_state`)"},
    422: {"description": "`booking-invalid` naming the `field`"}})
async def move_booking(order_id: uuid.UUID, body: BookingMove, principal: CustomerOrAdmin,
                       session: SessionDep) -> OrderPublic:
    """Move a booked order, not yet released to matching, to another available window."""
    if principal.role == "customer":
        customer = await customer_for_account(session, principal.account_id)
        await dispatch.get_order_for(session, order_id, role="customer", customer_id=customer.id)
    moved = await service.move(session, order_id, window_start=body.window_start,
                               actor=dispatch.Actor(principal.role, str(principal.account_id)),
                               now=await database_now(session))
    return await presenters.order(session, moved)


def _day_plan(city_id: str, day: date, tz: str, visits: list[planner.PlannedVisit]) -> DayPlanPublic:
    return DayPlanPublic(
        city_id=city_id, date=day, timezone=tz, planned_at=max((v.stop.planned_at for v in visits), default=None),
        data=[PlannedStopPublic(
            sequence=v.stop.sequence, technician_id=v.stop.technician_id, order_id=v.stop.order_id, kind=v.visit.kind,
            address=v.visit.address_line, location=to_geojson(v.visit.location),
            window_start=v.visit.window_start.astimezone(timezone.utc),
            window_end=v.visit.window_end.astimezone(timezone.utc),
            planned_arrival_at=v.stop.planned_arrival_at.astimezone(timezone.utc),
            planned_departure_at=v.stop.planned_departure_at.astimezone(timezone.utc)) for v in visits])


@router.get("/v1/technicians/me/day")
async def my_day(technician: CurrentTechnician, session: SessionDep,
                 day: Annotated[date | None, Query(alias="date")] = None) -> DayPlanPublic:
    """His own planned stops of a local day (without `date`: his city's today, named in the
    answer's `date`), in order (empty until the day is planned)."""
    tz, day, visits = await planner.technician_day(session, technician.id, day, await database_now(session))
    return _day_plan(technician.city_id, day, tz, visits)


@router.get("/v1/ops/plans", responses={404: {"description": "no such city"}})
async def day_plans(principal: Staff, session: SessionDep, city: Annotated[str, Query(min_length=1, max_length=60)],
                    day: Annotated[date, Query(alias="date")]) -> DayPlanPublic:
    """A city's stored day plan: every technician's stops, by technician, then sequence."""
    tz, visits = await planner.city_day(session, city, day)
    return _day_plan(city, day, tz, visits)
