"""The operations console's actions and live feed: messages to a customer or technician about an
order, hazards resolved with evidence, the certification queue with who applied, and order
status changes relayed on the city's operations channel (`ops:{city}`, beside the alerts)."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import ops_channel
from dispatch.events import OrderStatusChanged
from kit.errors import Conflict, InvalidInput, NotFound
from kit.events import handles, subscribe
from kit.fanout import order_channel, push_after_commit
from dispatch.field.models import Hazard
from dispatch.field.reports import hazards_changed
from dispatch.models import Certification, Customer, Notification, Order, OrderEvent, Technician, TrainingRecord
from dispatch.notifications import MESSAGE, notify, pushed
from kit.pagination import page_of, paginate
from dispatch.service import Actor, cancel_order

# A follow-up not yet taken by a technician is withdrawn when its hazard is resolved otherwise.
_UNTAKEN = ("awaiting_consent", "created", "matching", "offered")


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """Every order's status change reaches the consoles watching the city."""
    order = await session.get(Order, event.order_id)
    if order is None:
        return
    push_after_commit(session, ops_channel(order.city_id), "order_status", order_id=str(event.order_id),
                      status=event.to, from_status=event.from_, action=event.action,
                      technician_id=str(event.technician_id) if event.technician_id else None,
                      priority=order.priority, service_kind=order.kind)


def register() -> None:
    subscribe("dispatch.order_status_changed", on_order_status_changed)


# Messages ------------------------------------------------------------------------------------

async def send_message(session: AsyncSession, order_id: uuid.UUID, recipient: str, text: str, actor: Actor) -> Notification:
    """A message from operations to the order's customer or its technician."""
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound("no such order")
    if recipient == "customer":
        customer = await session.get(Customer, order.customer_id)
        account_id = customer.account_id if customer else None
    elif order.technician_id is not None:
        technician = await session.get(Technician, order.technician_id)
        account_id = technician.account_id if technician else None
    else:
        raise InvalidInput("the order has no technician to write to")
    if account_id is None:
        raise NotFound("no such recipient")
    notification = await notify(session, account_id, MESSAGE, "运营消息 / Message from operations", text,
                                {"order_id": str(order_id), "recipient": recipient, "sent_by": actor.id})
    assert notification is not None  # no dedupe key: every message is its own
    if recipient == "customer":  # his order page listens on the order's socket, not his account's
        push_after_commit(session, order_channel(order_id), "notification", notification=pushed(notification))
    return notification


async def messages_of(session: AsyncSession, order_id: uuid.UUID) -> list[Notification]:
    return list((await session.exec(select(Notification).where(
        Notification.kind == MESSAGE, Notification.payload["order_id"].astext == str(order_id),
    ).order_by(Notification.created_at))).all())


# Hazards -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resolved:
    hazard: Hazard
    cancelled_followup: Order | None


async def resolve_hazard(session: AsyncSession, hazard_id: uuid.UUID, evidence: str, photo_refs: list[str],
                         actor: Actor, now: datetime | None = None) -> Resolved:
    """Operations mark an open hazard fixed (the customer had it repaired, say), with the evidence
    recorded on the order that found it; a follow-up nobody has taken yet is cancelled."""
    now = now or datetime.now(timezone.utc)
    row = (await session.exec(update(Hazard).where(Hazard.id == hazard_id, Hazard.status == "open")
                              .values(status="fixed", fixed_at=now).returning(Hazard.id))).first()
    if row is None:
        if await session.get(Hazard, hazard_id) is None:
            raise NotFound("no such hazard")
        raise Conflict("the hazard is not open")
    hazard = await session.get(Hazard, hazard_id, populate_existing=True)
    assert hazard is not None
    order = await session.get(Order, hazard.order_id)
    assert order is not None
    session.add(OrderEvent(order_id=order.id, action="hazard_resolved", from_status=order.status, to_status=order.status,
                           actor_role=actor.role, actor_id=actor.id, reason=evidence, created_at=now,
                           payload={"hazard_id": str(hazard_id), "photo_refs": photo_refs}))
    followup = None
    if hazard.followup_order_id is not None:
        pending = await session.get(Order, hazard.followup_order_id)
        if pending is not None and pending.status in _UNTAKEN:
            followup = await cancel_order(session, pending.id, actor, "hazard_resolved")
    await session.flush()
    hazards_changed(session, order.city_id)
    return Resolved(hazard, followup)


# Certification queue -------------------------------------------------------------------------

@dataclass(frozen=True)
class Application:
    certification: Certification
    technician: Technician
    training: list[TrainingRecord]


async def certification_queue(session: AsyncSession, *, status: str, limit: int, cursor: str | None,
                              city_id: str | None = None) -> tuple[list[Application], str | None]:
    query = select(Certification).where(Certification.status == status)
    if city_id is not None:
        query = query.where(col(Certification.technician_id).in_(select(Technician.id).where(Technician.city_id == city_id)))
    rows, next_cursor = page_of(list((await session.exec(paginate(query, Certification, limit, cursor))).all()), limit)
    ids = {c.technician_id for c in rows}
    technicians = {t.id: t for t in (await session.exec(select(Technician).where(col(Technician.id).in_(ids)))).all()}
    training: dict[uuid.UUID, list[TrainingRecord]] = {}
    for record in (await session.exec(select(TrainingRecord).where(col(TrainingRecord.technician_id).in_(ids))
                                      .order_by(TrainingRecord.held_at))).all():
        training.setdefault(record.technician_id, []).append(record)
    return [Application(c, technicians[c.technician_id], training.get(c.technician_id, [])) for c in rows], next_cursor
