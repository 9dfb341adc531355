"""Completion: the work report, a final price above the authorised amount, hazards and their
follow-up orders. Completion reaches settlement through the `complete` transition's payload."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Discriminator, Field, StringConstraints, Tag
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.errors import Conflict, InvalidInput, NotFound
from kit.events import publish_event
from kit.fanout import push_after_commit
from dispatch.alerts import ops_channel
from dispatch.field import campaigns
from dispatch.field import events
from dispatch.field import photos
from dispatch.field.identity import ensure_visit
from dispatch.field.models import HAZARD_CATEGORIES, HAZARD_SEVERITIES, Hazard, PriceChange, WorkReport
from dispatch.field.visits import held_order
from dispatch.models import Address, Order
from kit.schemas import Currency, Input
from dispatch.service import Actor, create_order, transition
from dispatch.stations import get_service_kind

FOLLOWUP_KIND = "repair"
Ref = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class PriceChangeNotPending(Conflict):
    """This price change is no longer the one waiting for your decision; reload and decide again."""

    slug = "price-change-not-pending"


class PartIn(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    quantity: int = Field(ge=1, le=1000)
    unit_price_minor: int = Field(ge=0, le=10_000_000)


class HazardFound(Input):
    category: Annotated[str, StringConstraints(pattern="^(" + "|".join(HAZARD_CATEGORIES) + ")$")]
    severity: Annotated[str, StringConstraints(pattern="^(" + "|".join(HAZARD_SEVERITIES) + ")$")]
    description: str = Field(default="", max_length=1000)
    photo_refs: list[Ref] = Field(default_factory=list, max_length=20)


class HazardFixIn(Input):
    """What the technician did to remove the hazard during this visit."""

    work_done: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    parts: list[PartIn] = Field(default_factory=list, max_length=50)
    photo_refs: list[Ref] = Field(default_factory=list, max_length=20)


class HazardFixedOnSite(HazardFound):
    resolution: Literal["fixed_on_site"]
    fix: HazardFixIn


class HazardNeedsFollowup(HazardFound):
    resolution: Literal["needs_followup"] = "needs_followup"
    # By severity from the settings when not given; with a time zone, at most the severity's limit.
    deadline_at: AwareDatetime | None = None


def _resolution(value: Any) -> str:
    """Without a choice a hazard stays open and gets its follow-up: the safe reading."""
    if isinstance(value, dict):
        return value.get("resolution", "needs_followup")
    return getattr(value, "resolution", "needs_followup")


HazardIn = Annotated[
    Annotated[HazardFixedOnSite, Tag("fixed_on_site")] | Annotated[HazardNeedsFollowup, Tag("needs_followup")],
    Discriminator(_resolution, custom_error_type="hazard_resolution",
                  custom_error_message="resolution must be fixed_on_site or needs_followup"),
]


class WorkReportIn(Input):
    work_done: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    parts: list[PartIn] = Field(default_factory=list, max_length=100)
    final_price_minor: int = Field(ge=0, le=100_000_000)
    currency: Currency
    photo_refs: list[Ref] = Field(default_factory=list, max_length=20)
    hazards: list[HazardIn] = Field(default_factory=list, max_length=10)
    fixed_hazard_ids: list[uuid.UUID] = Field(default_factory=list, max_length=30)
    valve_closed: bool = False


@dataclass(frozen=True)
class Completion:
    """Either the completed order, or the price change the customer must approve first."""

    order: Order
    report: WorkReport | None = None
    price_change: PriceChange | None = None


def followup_priority(deadline_at: datetime, now: datetime) -> str:
    """The least urgent priority whose SLA still meets the hazard's deadline."""
    settings = get_settings()
    for priority in ("routine", "urgent"):
        if now + timedelta(minutes=settings.sla_minutes(priority)) <= deadline_at:
            return priority
    return "emergency"


async def _price_allowed(session: AsyncSession, order: Order, body: WorkReportIn, now: datetime) -> PriceChange | None:
    """None when the price may be charged; otherwise the pending request to the customer."""
    if body.final_price_minor <= order.price_estimate_minor:
        return None
    changes = (await session.exec(select(PriceChange).where(
        PriceChange.order_id == order.id, col(PriceChange.status).in_(("pending", "approved")))
        .with_for_update())).all()
    if any(c.status == "approved" and c.amount_minor >= body.final_price_minor for c in changes):
        return None
    pending = next((c for c in changes if c.status == "pending"), None)
    if pending is not None and pending.amount_minor == body.final_price_minor:
        return pending
    if pending is not None:
        pending.status, pending.decided_at = "superseded", now
        session.add(pending)
        await session.flush()
    change = PriceChange(order_id=order.id, amount_minor=body.final_price_minor,
                         authorised_minor=order.price_estimate_minor, currency=order.currency, requested_at=now)
    session.add(change)
    await session.flush()
    await publish_event(session, events.PriceChangeRequested(
        order_id=order.id, customer_id=order.customer_id, amount_minor=change.amount_minor, currency=change.currency))
    return change


async def _withdraw_pending(session: AsyncSession, order_id: uuid.UUID, now: datetime) -> None:
    """The job is finished without them: no pending price can be approved afterwards."""
    await session.exec(update(PriceChange).where(PriceChange.order_id == order_id, PriceChange.status == "pending")
                       .values(status="withdrawn", decided_at=now))


def _check_deadlines(hazards: list[HazardNeedsFollowup], now: datetime) -> None:
    limits = get_settings().field_hazard_max_deadline_days
    for hazard in hazards:
        if hazard.deadline_at is None:
            continue
        if hazard.deadline_at <= now:
            raise InvalidInput("a hazard deadline must be in the future")
        if hazard.deadline_at > now + timedelta(days=limits[hazard.severity]):
            raise InvalidInput(f"a {hazard.severity} hazard must be fixed within {limits[hazard.severity]} days")


async def _open_hazards_at(session: AsyncSession, address_id: uuid.UUID, ids: list[uuid.UUID]) -> list[Hazard]:
    if not ids:
        return []
    found = (await session.exec(select(Hazard).where(
        col(Hazard.id).in_(ids), Hazard.address_id == address_id, Hazard.status == "open").with_for_update())).all()
    if len(found) != len(set(ids)):
        raise InvalidInput("fixed_hazard_ids must name open hazards at this address")
    return list(found)


def _fixed_on_site(order: Order, station_id: uuid.UUID | None, item: HazardFixedOnSite, now: datetime) -> Hazard:
    """Removed during this visit: kept as evidence, with nothing to come back for."""
    return Hazard(order_id=order.id, customer_id=order.customer_id, address_id=order.address_id,
                  station_id=station_id, category=item.category, severity=item.severity,
                  description=item.description, photo_refs=list(item.photo_refs), resolution="fixed_on_site",
                  status="fixed", fix_work_done=item.fix.work_done, fix_parts=[p.model_dump() for p in item.fix.parts],
                  fix_photo_refs=list(item.fix.photo_refs), found_at=now, fixed_at=now, fixed_order_id=order.id)


async def _needs_followup(session: AsyncSession, order: Order, station_id: uuid.UUID | None,
                          item: HazardNeedsFollowup, now: datetime) -> Hazard:
    deadline = item.deadline_at or now + timedelta(days=get_settings().field_hazard_deadline_days[item.severity])
    # The customer pays for the follow-up, so it waits for his consent unless the catalogue makes it free.
    # No description: the apps tell the customer which hazard it rectifies from the hazard's own fields.
    priced = (await get_service_kind(session, FOLLOWUP_KIND)).base_price_minor > 0
    followup = await create_order(
        session, customer_id=order.customer_id, address_id=order.address_id, kind=FOLLOWUP_KIND,
        actor=Actor.system("field"), source="followup", priority=followup_priority(deadline, now), now=now,
        sla_deadline=deadline, needs_consent=priced)
    hazard = Hazard(order_id=order.id, customer_id=order.customer_id, address_id=order.address_id,
                    station_id=station_id, category=item.category, severity=item.severity,
                    description=item.description, photo_refs=list(item.photo_refs), deadline_at=deadline,
                    followup_order_id=followup.id, found_at=now)
    session.add(hazard)
    await session.flush()
    await publish_event(session, events.HazardFound(
        order_id=order.id, hazard_id=hazard.id, customer_id=order.customer_id, category=hazard.category,
        severity=hazard.severity, deadline_at=deadline, followup_order_id=followup.id))
    return hazard


async def _record_hazard(session: AsyncSession, order: Order, station_id: uuid.UUID | None,
                         item: HazardFixedOnSite | HazardNeedsFollowup, now: datetime) -> Hazard:
    if isinstance(item, HazardNeedsFollowup):
        return await _needs_followup(session, order, station_id, item, now)
    hazard = _fixed_on_site(order, station_id, item, now)
    session.add(hazard)
    await session.flush()
    return hazard


async def complete(session: AsyncSession, order_id: uuid.UUID, technician_id: uuid.UUID, body: WorkReportIn,
                   now: datetime) -> Completion:
    order = await held_order(session, order_id, technician_id)
    if order.status != "in_service":
        raise Conflict(f"order is {order.status}, not in_service")
    if body.currency != order.currency:
        raise InvalidInput(f"the order is priced in {order.currency}")
    await photos.check_refs(session, order.id, [*body.photo_refs, *(ref for h in body.hazards for ref in h.photo_refs),
                                                *(ref for h in body.hazards if isinstance(h, HazardFixedOnSite)
                                                  for ref in h.fix.photo_refs)])
    unresolved = [h for h in body.hazards if isinstance(h, HazardNeedsFollowup)]
    if any(h.severity == "critical" for h in unresolved) and not body.valve_closed:
        raise InvalidInput("a critical hazard left unfixed shuts the supply: close the valve and report valve_closed")
    _check_deadlines(unresolved, now)
    pending = await _price_allowed(session, order, body, now)
    if pending is not None:
        return Completion(order=order, price_change=pending)
    await _withdraw_pending(session, order.id, now)
    fixed = await _open_hazards_at(session, order.address_id, body.fixed_hazard_ids)
    report = WorkReport(order_id=order.id, technician_id=technician_id, work_done=body.work_done,
                        parts=[p.model_dump() for p in body.parts], final_price_minor=body.final_price_minor,
                        currency=body.currency, photo_refs=list(body.photo_refs), valve_closed=body.valve_closed,
                        created_at=now)
    session.add(report)
    for hazard in fixed:
        hazard.status, hazard.fixed_at, hazard.fixed_order_id = "fixed", now, order.id
        session.add(hazard)
    await session.flush()
    address = await session.get(Address, order.address_id)
    assert address is not None
    station_id = await campaigns.station_covering(session, address.location) if body.hazards else None
    hazards = [await _record_hazard(session, order, station_id, item, now) for item in body.hazards]
    visit = await ensure_visit(session, order, now)
    visit.checked_out_at, visit.outcome = now, "done"
    session.add(visit)
    order = await transition(session, order_id, "complete", Actor("technician", str(technician_id)),
                             expected_status="in_service", now=now, payload={
                                 "final_price_minor": body.final_price_minor, "currency": body.currency,
                                 "report_id": str(report.id), "valve_closed": body.valve_closed,
                                 "hazard_ids": [str(h.id) for h in hazards]})
    await campaigns.record_outcome(session, order_id, "done", now)
    if fixed or hazards:
        hazards_changed(session, order.city_id)
    return Completion(order=order, report=report)


def hazards_changed(session: AsyncSession, city_id: str) -> None:
    """Once committed, the operations consoles of the city reload their open hazards."""
    push_after_commit(session, ops_channel(city_id), "hazards")


async def decide_price_change(session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID,
                              price_change_id: uuid.UUID, approve: bool, now: datetime) -> PriceChange:
    """Decides exactly the change the customer saw: one conditional UPDATE that matches only while
    it is still the pending one and the job is still in service."""
    order = await session.get(Order, order_id)
    if order is None or order.customer_id != customer_id:
        raise NotFound("no such order")
    in_service = select(Order.id).where(Order.id == order_id, Order.status == "in_service")
    result = (await session.exec(update(PriceChange).where(
        PriceChange.id == price_change_id, PriceChange.order_id == order_id, PriceChange.status == "pending",
        col(PriceChange.order_id).in_(in_service),
    ).values(status="approved" if approve else "rejected", decided_at=now).returning(PriceChange.id))).first()
    if result is None:
        seen = await session.get(PriceChange, price_change_id)
        if seen is None or seen.order_id != order_id:
            raise NotFound("no such price change on this order")
        raise PriceChangeNotPending()
    change = await session.get(PriceChange, result[0], populate_existing=True)
    assert change is not None
    if approve:  # settlement raises the customer's hold to the approved price
        await publish_event(session, events.PriceChangeApproved(
            order_id=order_id, customer_id=customer_id, amount_minor=change.amount_minor, currency=change.currency,
            price_change_id=change.id))
    else:  # the technician is told (dispatch/handlers.py)
        await publish_event(session, events.PriceChangeRejected(
            order_id=order_id, technician_id=order.technician_id, amount_minor=change.amount_minor,
            currency=change.currency, price_change_id=change.id))
    return change


async def report_of(session: AsyncSession, order_id: uuid.UUID) -> WorkReport | None:
    return (await session.exec(select(WorkReport).where(WorkReport.order_id == order_id))).first()


async def final_prices(session: AsyncSession, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str]]:
    """order id -> (final price, currency) of those with a work report."""
    if not order_ids:
        return {}
    rows = (await session.exec(select(WorkReport.order_id, WorkReport.final_price_minor, WorkReport.currency)
                               .where(col(WorkReport.order_id).in_(order_ids)))).all()
    return {order_id: (price, currency) for order_id, price, currency in rows}


async def hazards_of(session: AsyncSession, order_id: uuid.UUID) -> list[Hazard]:
    return list((await session.exec(select(Hazard).where(Hazard.order_id == order_id).order_by(Hazard.found_at))).all())


async def hazard_followed_up_by(session: AsyncSession, order_id: uuid.UUID) -> Hazard | None:
    """The hazard this follow-up order was created to rectify, if it is one."""
    return (await session.exec(select(Hazard).where(Hazard.followup_order_id == order_id))).first()


async def pending_price_change(session: AsyncSession, order: Order) -> PriceChange | None:
    """Only an order still in service has a price to decide (a cancelled one keeps its row)."""
    if order.status != "in_service":
        return None
    return (await session.exec(select(PriceChange).where(
        PriceChange.order_id == order.id, PriceChange.status == "pending"))).first()


async def open_hazards(session: AsyncSession, *, now: datetime, station_id: uuid.UUID | None = None,
                       min_age_days: int = 0, limit: int = 100) -> list[Hazard]:
    """Open hazards, oldest first: what operations must chase."""
    statement = select(Hazard).where(Hazard.status == "open", col(Hazard.found_at) <= now - timedelta(days=min_age_days))
    if station_id is not None:
        statement = statement.where(Hazard.station_id == station_id)
    return list((await session.exec(statement.order_by(Hazard.found_at, Hazard.id).limit(limit))).all())
