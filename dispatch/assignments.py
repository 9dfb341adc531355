"""Operations assign an order to a technician they chose, or take it from the one who holds it
and give it to another: one conditional UPDATE (the order still in the state and with the
technician the operator saw), an event row and an outbox row; both technicians are told, the
previous one is released."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from redis.asyncio import Redis
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from dispatch.errors import IllegalTransition
from dispatch.events import OrderStatusChanged
from kit.errors import InvalidInput, NotFound
from kit.events import publish_event
from kit.fanout import account_channel, active_orders_key, push_after_commit
from dispatch.models import Order, OrderEvent, Technician
from dispatch.notifications import notify
from dispatch.queries import jobs_held
from kit.redis import get_redis
from dispatch.service import Actor, track_active_order
from dispatch.states import next_state
from dispatch.technicians import release_job, take_job
from matching.manual import assignability, withdraw_open_offers

ASSIGN = "assign"


class TechnicianNotAssignable(InvalidInput):
    """The chosen technician cannot take this order now."""

    slug = "technician-not-assignable"
    fields = ("reason", "technician_id")

    def __init__(self, reason: str, technician: Technician) -> None:
        super().__init__(f"{technician.name} cannot take this order: {reason.replace('_', ' ')}")
        self.reason = reason
        self.extra = {"reason": reason, "technician_id": str(technician.id)}


class OrderNotAssignable(IllegalTransition):
    """The order's current state does not allow an assignment; the problem names the state."""

    slug = "order-not-assignable"
    fields = ("current_state",)

    def __init__(self, detail: str, current_state: str) -> None:
        super().__init__(detail)
        self.extra = {"current_state": current_state}


@dataclass(frozen=True)
class Assigned:
    order: Order
    previous_technician_id: uuid.UUID | None


async def assign(session: AsyncSession, redis: Redis, order_id: uuid.UUID, technician_id: uuid.UUID, actor: Actor,
                 *, reason: str | None = None, now: datetime | None = None) -> Assigned:
    """OrderNotAssignable (409, naming the current state) when the state does not allow it, the
    order changed meanwhile or already is his; TechnicianNotAssignable (422) naming why he cannot."""
    now = now or datetime.now(timezone.utc)
    order = await session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise NotFound("no such order")
    seen_technician = order.technician_id
    # The order row before the technician, the order every accept and expiry takes. Read again
    # once locked: an expiry or a new offer round that held the lock changed only the escalation
    # state, which the assignment overrides; a technician who took the order meanwhile is a
    # conflict. The conditional UPDATE below still checks what was read.
    await session.exec(select(Order.id).where(Order.id == order_id).with_for_update())
    await session.refresh(order)
    seen_status, previous = order.status, order.technician_id
    if previous != seen_technician:
        raise OrderNotAssignable("the order changed meanwhile; reload and retry", seen_status)
    try:
        step = next_state(seen_status, ASSIGN, actor.role)
    except IllegalTransition as exc:
        raise OrderNotAssignable(exc.detail, seen_status) from exc
    if previous == technician_id:
        raise OrderNotAssignable(f"the order is {seen_status} and already with this technician", seen_status)
    # Locked like an accept, so an assignment and his own accept cannot both fill his last slot.
    technician = (await session.exec(select(Technician).where(Technician.id == technician_id).with_for_update())).first()
    if technician is None:
        raise NotFound("no such technician")
    check = (await assignability(session, redis, order, [technician], now))[0]
    if check.reason is not None:
        raise TechnicianNotAssignable(check.reason, technician)
    withdrawn = await withdraw_open_offers(session, order_id, now, reason="assigned_by_operator")
    result = await session.exec(update(Order).where(
        Order.id == order_id, Order.status == seen_status, col(Order.technician_id).is_not_distinct_from(previous),
    ).values(status=step.to_status, technician_id=technician_id, updated_at=now))
    if result.rowcount != 1:
        current = (await session.exec(select(Order.status).where(Order.id == order_id))).one()
        raise OrderNotAssignable("the order changed meanwhile; reload and retry", current)
    payload = {"technician_id": str(technician_id), "previous_technician_id": str(previous) if previous else None,
               "withdrawn_offers_of": [str(t) for t in withdrawn]}
    event = OrderEvent(order_id=order_id, action=ASSIGN, from_status=seen_status, to_status=step.to_status,
                       actor_role=actor.role, actor_id=actor.id, reason=reason, payload=payload, created_at=now)
    session.add(event)
    await publish_event(session, OrderStatusChanged(
        order_id=order_id, action=ASSIGN, from_=seen_status, to=step.to_status, technician_id=technician_id,
        reason=reason, payload=payload))
    track_active_order(session, order_id, technician_id, seen_status, step.to_status)
    await session.flush()
    await _take_on(session, technician)
    await notify(session, technician.account_id, "job_assigned", "调度指派工单 / Job assigned to you",
                 f"Operations assigned you order {str(order_id)[:8]}." + (f" {reason}" if reason else ""),
                 {"order_id": str(order_id), "reason": reason}, dedupe_key=f"assign:{event.id}:new")
    if previous is not None:
        await _release(session, previous, order_id, reason, now)
    assigned = await session.get(Order, order_id, populate_existing=True)
    assert assigned is not None
    return Assigned(assigned, previous)


async def _take_on(session: AsyncSession, technician: Technician) -> None:
    await take_job(session, technician, await jobs_held(session, technician.id))


async def _release(session: AsyncSession, technician_id: uuid.UUID, order_id: uuid.UUID, reason: str | None,
                   now: datetime) -> None:
    """The previous technician: free again and off the customer's map."""
    technician = await session.get(Technician, technician_id, with_for_update=True)
    if technician is None:
        return
    await release_job(session, technician, await jobs_held(session, technician_id), now)

    async def stop_tracking() -> None:
        await get_redis().srem(active_orders_key(technician_id), str(order_id))

    after_commit.defer(session, stop_tracking)
    # His app reloads its jobs at once; the notification saying why comes from the event's
    # handler (dispatch.handlers, job_reassigned), which names him by previous_technician_id.
    push_after_commit(session, account_channel(technician.account_id), "job_updated", order_id=str(order_id),
                      status="reassigned", reason=reason)
