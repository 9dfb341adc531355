"""Orders: creation, the state machine applied with an event row and an outbox row, queries.

Services flush, never commit: the request or worker boundary commits.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from limits import parse_many
from redis.asyncio import Redis
from sqlalchemy import Select, func, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit, ratelimit
from kit.config import get_settings
from kit.fanout import active_orders_key, order_channel, push_after_commit
from kit.redis import get_redis
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from dispatch.cities import city_at
from dispatch.errors import IllegalTransition
from dispatch.events import OrderCreated, OrderStatusChanged
from kit.events import publish_event
from dispatch.models import Address, Customer, Order, OrderEvent, Technician
from kit.pagination import page_of, paginate
from dispatch.states import ACTIVE_JOB_STATES, OPEN_STATES, next_state
from dispatch.stations import get_service_kind


class TooManyOpenOrders(Conflict):
    """You have as many open orders as allowed; wait for one to finish or cancel one."""

    slug = "too-many-open-orders"


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a role and, for people, their account id."""

    role: str
    id: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> "Actor":
        return cls("system", name)


async def create_order(
    session: AsyncSession, *, customer_id: uuid.UUID, address_id: uuid.UUID, kind: str,
    actor: Actor, description: str = "", priority: str | None = None,
    preferred_technician_id: uuid.UUID | None = None, source: str = "customer",
    sla_deadline: datetime | None = None, needs_consent: bool = False,
    window: tuple[datetime, datetime] | None = None, now: datetime | None = None,
) -> Order:
    """sla_deadline overrides the catalogue's SLA (a hazard's rectification deadline).
    priority overrides the catalogue's: for staff and meter alarms, never from a customer's input.
    needs_consent: the order waits in awaiting_consent, unmatched and uncharged, until the
    customer (or operations) agrees.
    window: a booked appointment (scheduling): the order waits in `scheduled`, outside matching,
    until its window nears, and is due by the window's end."""
    now = now or datetime.now(timezone.utc)
    service_kind = await get_service_kind(session, kind)
    address = await session.get(Address, address_id)
    if address is None or address.customer_id != customer_id:
        raise NotFound("no such address")
    # A gas-leak report is never refused for other open orders (the rate limit still holds).
    if source == "customer" and service_kind.default_priority != "emergency":
        await _check_open_orders(session, customer_id)
    if preferred_technician_id is not None:
        technician = await session.get(Technician, preferred_technician_id)
        if technician is None or technician.status == "suspended" or technician.onboarding != "active":
            raise InvalidInput("the chosen technician cannot take orders")
    priority = priority or service_kind.default_priority
    sla_min = service_kind.sla_minutes.get(priority) or get_settings().sla_minutes(priority)
    if window is not None:
        sla_deadline = window[1]
    status = "awaiting_consent" if needs_consent else "scheduled" if window is not None else "created"
    order = Order(
        customer_id=customer_id, address_id=address_id, location=address.location,
        city_id=await city_at(session, address.location), kind=kind,
        required_certification=service_kind.required_certification, priority=priority, source=source,
        description=description, sla_deadline=sla_deadline or now + timedelta(minutes=sla_min),
        preferred_technician_id=preferred_technician_id,
        price_estimate_minor=service_kind.base_price_minor, currency=service_kind.currency,
        status=status, window_start=window[0] if window else None, window_end=window[1] if window else None,
        created_at=now, updated_at=now,
    )
    session.add(order)
    await session.flush()
    session.add(OrderEvent(
        order_id=order.id, action="create", from_status=None, to_status=order.status,
        actor_role=actor.role, actor_id=actor.id, payload={"source": source, "priority": priority},
        created_at=now,
    ))
    await publish_event(session, OrderCreated(order_id=order.id, priority=priority, kind=kind, source=source,
                                              required_certification=order.required_certification))
    return order


HOME_EMERGENCY_KIND = "emergency_leak"


async def open_home_emergency(session: AsyncSession, address_id: uuid.UUID) -> Order | None:
    """The home's open gas-leak order, if any, under a transaction lock on the address (held to
    the commit, across processes): meter alarms and the customer's own report join one order."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"dispatch:home-emergency:{address_id}"})
    return (await session.exec(select(Order).where(
        Order.address_id == address_id, Order.kind == HOME_EMERGENCY_KIND, col(Order.status).in_(OPEN_STATES),
    ).order_by(Order.created_at).limit(1))).first()


async def _check_open_orders(session: AsyncSession, customer_id: uuid.UUID) -> None:
    """The customer's row is locked first, so concurrent orders of one customer count one by one."""
    await session.exec(select(Customer.id).where(Customer.id == customer_id).with_for_update())
    open_orders = (await session.exec(select(func.count()).select_from(Order).where(
        Order.customer_id == customer_id, Order.source == "customer", col(Order.status).in_(OPEN_STATES)))).one()
    if open_orders >= get_settings().customer_max_open_orders:
        raise TooManyOpenOrders()


async def throttle_order_creation(redis: Redis, customer_id: uuid.UUID) -> None:
    """Counts one order the customer places; TooManyAttempts once a window is full."""
    await ratelimit.take(redis, parse_many(get_settings().customer_order_rate), "orders", str(customer_id),
                         detail="too many orders placed; try again later")


async def move_window(session: AsyncSession, order_id: uuid.UUID, actor: Actor, window: tuple[datetime, datetime],
                      now: datetime | None = None) -> Order:
    """A booked appointment moved to another window: one conditional UPDATE while it is still
    scheduled (a release into matching racing it wins or loses whole), and a row in its log."""
    now = now or datetime.now(timezone.utc)
    before = await get_order(session, order_id)
    old = [before.window_start, before.window_end]
    result = await session.exec(update(Order).where(Order.id == order_id, Order.status == "scheduled").values(
        window_start=window[0], window_end=window[1], sla_deadline=window[1], updated_at=now))
    if result.rowcount != 1:
        raise OrderStateConflict("only a booked appointment not yet released can move", before.status)
    session.add(OrderEvent(
        order_id=order_id, action="move_window", from_status="scheduled", to_status="scheduled",
        actor_role=actor.role, actor_id=actor.id, created_at=now,
        payload={"from": [t.isoformat() if t else None for t in old], "to": [t.isoformat() for t in window]}))
    await session.flush()
    # The customer's open order page redraws with the new window.
    push_after_commit(session, order_channel(order_id), "status", order_id=str(order_id), status="scheduled",
                      action="move_window")
    order = await session.get(Order, order_id, populate_existing=True)
    assert order is not None
    return order


async def consent_order(session: AsyncSession, order_id: uuid.UUID, actor: Actor) -> Order:
    """The customer (or operations) agrees to a priced follow-up: it enters matching."""
    return await transition(session, order_id, "consent", actor, expected_status="awaiting_consent")


async def transition(
    session: AsyncSession, order_id: uuid.UUID, action: str, actor: Actor, *,
    reason: str | None = None, payload: dict[str, Any] | None = None,
    expected_status: str | None = None, set_values: dict[str, Any] | None = None,
    now: datetime | None = None, locked: Order | None = None,
) -> Order:
    """Apply one state-machine action as a single conditional UPDATE.

    The UPDATE only matches while the order is still in the state we read, so of two
    concurrent actors exactly one wins; the loser gets Conflict. `locked`: the order as this
    transaction holds it (row locked), so it need not be read again.
    """
    now = now or datetime.now(timezone.utc)
    current = locked or await session.get(Order, order_id, populate_existing=True)
    if current is None:
        raise NotFound("no such order")
    from_status, held_by = current.status, current.technician_id  # the UPDATE below refreshes `current`
    if expected_status is not None and from_status != expected_status:
        raise Conflict(f"order is {from_status}, not {expected_status}")
    step = next_state(from_status, action, actor.role, reason)
    if action == "complete" and not (payload or {}).get("report_id"):
        raise IllegalTransition("completion needs a work report")
    values: dict[str, Any] = {"status": step.to_status, "updated_at": now, **(set_values or {})}
    if reason is not None:
        values["status_reason"] = reason
    # RETURNING refreshes the order in the same round trip (no read after the write).
    order = (await session.exec(
        update(Order).where(Order.id == order_id, Order.status == from_status).values(**values).returning(Order)
        .execution_options(populate_existing=True, synchronize_session=False)
    )).scalars().first()
    if order is None:
        raise Conflict("the order changed meanwhile; reload and retry")
    session.add(OrderEvent(
        order_id=order_id, action=action, from_status=from_status, to_status=step.to_status,
        actor_role=actor.role, actor_id=actor.id, reason=reason, payload=payload or {}, created_at=now,
    ))
    technician_id = values.get("technician_id") or held_by
    await publish_event(session, OrderStatusChanged(
        order_id=order_id, action=action, from_=from_status, to=step.to_status,
        technician_id=technician_id, reason=reason, payload=payload or {}))
    track_active_order(session, order_id, technician_id, from_status, step.to_status)
    await session.flush()
    return order


async def record_step(session: AsyncSession, order: Order, action: str, actor: Actor, payload: dict[str, Any],
                      now: datetime) -> None:
    """A step on the order's timeline that leaves its status as it is (an escalation round, an
    alert). The order's socket is woken as for a status change, so the customer's page shows the
    step (the socket sends the order's events from the database, this one included)."""
    session.add(OrderEvent(order_id=order.id, action=action, from_status=order.status, to_status=order.status,
                           actor_role=actor.role, actor_id=actor.id, payload=payload, created_at=now))
    await session.flush()
    push_after_commit(session, order_channel(order.id), "status", order_id=str(order.id), status=order.status,
                      action=action)


def track_active_order(session: AsyncSession, order_id: uuid.UUID, technician_id: uuid.UUID | None,
                       from_status: str, to_status: str) -> None:
    """The technician's fixes reach the customer only between acceptance and completion. Set
    right after the change's commit, not by its event's delivery: a customer who reads the new
    status (his socket catches up from the order's log) is already following."""
    if technician_id is None:
        return
    key = active_orders_key(technician_id)
    if to_status in ACTIVE_JOB_STATES:
        async def add() -> None:
            await get_redis().sadd(key, str(order_id))
        after_commit.defer(session, add)
    elif from_status in ACTIVE_JOB_STATES:
        async def remove() -> None:
            await get_redis().srem(key, str(order_id))
        after_commit.defer(session, remove)


async def get_order(session: AsyncSession, order_id: uuid.UUID) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound("no such order")
    return order


async def completed_at(session: AsyncSession, order_id: uuid.UUID) -> datetime | None:
    """When the order reached `completed`, from its append-only event log."""
    return (await session.exec(
        select(func.max(OrderEvent.created_at))
        .where(OrderEvent.order_id == order_id, OrderEvent.to_status == "completed")
    )).first()


def completed_orders(completed_by: datetime) -> Select[tuple[uuid.UUID, datetime]]:
    """A query of the orders still `completed` that got there by `completed_by`, columns
    `order_id` and `completed_at`, for another package to narrow down in SQL (ratings: those
    without a review)."""
    completed = func.max(OrderEvent.created_at)
    return (
        select(col(Order.id).label("order_id"), completed.label("completed_at"))
        .join(OrderEvent, (OrderEvent.order_id == Order.id) & (OrderEvent.to_status == "completed"))
        .where(Order.status == "completed")
        .group_by(Order.id)
        .having(completed <= completed_by)
    )


async def customers_since(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each customer signed up."""
    rows = await session.exec(select(Customer.id, Customer.created_at).where(col(Customer.id).in_(set(customer_ids))))
    return dict(rows.all())


async def get_order_for(
    session: AsyncSession, order_id: uuid.UUID, *, role: str,
    customer_id: uuid.UUID | None = None, technician_id: uuid.UUID | None = None,
) -> Order:
    """An order as the caller may see it; another user's order is 'not found', never leaked."""
    order = await get_order(session, order_id)
    if role in ("admin", "auditor"):
        return order
    if role == "customer" and order.customer_id == customer_id:
        return order
    if role == "technician" and technician_id is not None and order.technician_id == technician_id:
        return order
    raise NotFound("no such order")


async def list_orders(
    session: AsyncSession, *, limit: int, cursor: str | None, customer_id: uuid.UUID | None = None,
    technician_id: uuid.UUID | None = None, status: str | None = None,
) -> tuple[list[Order], str | None]:
    statement = select(Order)
    if customer_id is not None:
        statement = statement.where(Order.customer_id == customer_id)
    if technician_id is not None:
        statement = statement.where(Order.technician_id == technician_id)
    if status is not None:
        statement = statement.where(Order.status == status)
    rows = list((await session.exec(paginate(statement, Order, limit, cursor))).all())
    return page_of(rows, limit)


# What customers and technicians see of an order's history. Reasons only where they explain the
# order's end (a cancellation, no technician found): a decline reason is the technician's private
# note and a pre-emption names another customer's order. Payload keys by allow-list: the
# matching steps share their round, how many were asked and how far, never whom.
_SHARED_REASON_ACTIONS = frozenset({"cancel", "mark_unfulfilled"})
_SHARED_REASON_STATUSES = frozenset({"cancelled", "unfulfilled"})
_SHARED_PAYLOAD_KEYS = frozenset({
    "source", "priority", "final_price_minor", "currency", "report_id", "valve_closed", "hazard_ids",
    "round", "offers", "radius_m"})


def shared_event_reason(action: str, reason: str | None) -> str | None:
    return reason if action in _SHARED_REASON_ACTIONS else None


def shared_event_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k in _SHARED_PAYLOAD_KEYS}


def shared_status_reason(status: str, reason: str | None) -> str | None:
    """An order's status_reason outlives the transition that set it: shown only once it ended."""
    return reason if status in _SHARED_REASON_STATUSES else None


async def order_events(session: AsyncSession, order_id: uuid.UUID) -> list[OrderEvent]:
    return list((await session.exec(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
    )).all())


class OrderStateConflict(IllegalTransition):
    """The order's current state does not allow this; the problem names the state."""

    slug = "illegal-transition"
    fields = ("current_state",)

    def __init__(self, detail: str, current_state: str) -> None:
        super().__init__(detail)
        self.current_state = current_state
        self.extra = {"current_state": current_state}


async def _checked_transition(session: AsyncSession, order_id: uuid.UUID, action: str, actor: Actor, *,
                              reason: str, expected_status: str | None, payload: dict[str, Any],
                              set_values: dict[str, Any] | None = None) -> Order:
    """A transition whose refusal names the order's current state (409 with `current_state`)."""
    order = await get_order(session, order_id)
    status = order.status
    if expected_status is not None and status != expected_status:
        raise OrderStateConflict(f"order is {status} now, not {expected_status}", status)
    try:
        next_state(status, action, actor.role, reason)
    except IllegalTransition as exc:
        raise OrderStateConflict(exc.detail, status) from exc
    return await transition(session, order_id, action, actor, reason=reason, payload=payload,
                            expected_status=status, set_values=set_values)


async def cancel_order(session: AsyncSession, order_id: uuid.UUID, actor: Actor, reason: str, *,
                       reason_code: str | None = None, expected_status: str | None = None,
                       cancellation_fee: dict[str, Any] | None = None) -> Order:
    """``cancellation_fee`` is what settlement quoted (fee, share, rule version) for
    ``expected_status``: the event carries it, so the customer pays exactly that."""
    if actor.role not in ("customer", "admin", "system"):
        raise Forbidden("only the customer or operations can cancel an order")
    payload: dict[str, Any] = {"reason_code": reason_code} if reason_code else {}
    if cancellation_fee:
        payload["cancellation_fee"] = cancellation_fee
    return await _checked_transition(session, order_id, "cancel", actor, reason=reason,
                                     expected_status=expected_status, payload=payload)


async def reschedule_order(session: AsyncSession, order_id: uuid.UUID, actor: Actor, *, reason_code: str,
                           reason: str = "", expected_status: str | None = None) -> Order:
    """The order goes back to matching and its technician is released (he is told why)."""
    return await _checked_transition(
        session, order_id, "reschedule", actor, reason=reason or reason_code, expected_status=expected_status,
        payload={"reason_code": reason_code}, set_values={"technician_id": None})
