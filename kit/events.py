"""Events: written to the outbox in the caller's transaction, one delivery per subscriber.

`publish` writes the outbox row (the record of the event), a delivery for each subscribing
package and a job for each delivery, all in the caller's transaction. A worker runs each
delivery in its own transaction: a failure is retried with exponential backoff (capped) and
becomes a dead letter after `events_max_attempts` tries, logged and counted; other subscribers
of the same event are not held up. A handler whose precondition is not met yet raises
`kit.errors.NotReady` and is tried again later. The deliveries of one order (payload
`order_id`) reach a subscriber in the order of the events: a later one waits while an earlier
one is pending. Delivery is at-least-once, so handlers must be idempotent.

Each package declares the events it publishes as `Event` types (its `events` module), the
topic beside the type; `publish_event` writes one, and a handler wrapped by `handles` gets its
payload parsed into the type. The wire form stays a JSON object, so rows written before the
types existed still parse.
"""

import functools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, TypeVar

import structlog
from pgqueuer.errors import RetryRequested
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, PlainSerializer
from sqlalchemy import bindparam, exists, func, insert
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import jobs
from kit.config import get_settings
from kit.db import database_now, session_scope
from kit.errors import NotReady
from kit.models import Delivery, OutboxMessage, utcnow

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
# topic -> subscriber -> handlers (run in order, in one transaction, for one delivery)
_subscriptions: dict[str, dict[str, list[Handler]]] = defaultdict(dict)
_wired = False

DELIVERIES = Counter("gasdispatch_event_deliveries_total", "Event deliveries by topic, subscriber and outcome",
                     ["topic", "subscriber", "outcome"])
DEAD_LETTERS = Counter("gasdispatch_event_dead_letters_total", "Event deliveries that became dead letters",
                       ["topic", "subscriber"])
# A later delivery of one order polls this often while an earlier one is pending.
ORDER_WAIT = timedelta(seconds=0.5)

# A time on the wire as `datetime.isoformat()` writes it ("+00:00", not pydantic's "Z").
IsoDatetime = Annotated[datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str, when_used="json")]


class Event(BaseModel):
    """An event's payload, typed; `topic` is its wire name. Fields named like a Python keyword
    carry their wire name as an alias (`from_` is "from")."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    topic: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "topic" not in cls.__dict__:  # a shared base of several events
            return
        if EVENT_TYPES.setdefault(cls.topic, cls) is not cls:
            raise TypeError(f"topic {cls.topic} is declared twice")

    def wire(self) -> dict[str, Any]:
        """The payload as JSON, as subscribers and the outbox row see it."""
        return self.model_dump(mode="json", by_alias=True)


# topic -> its declared type, filled as the packages' events modules are imported
EVENT_TYPES: dict[str, type[Event]] = {}
E = TypeVar("E", bound=Event)
# handler (dict form) -> the event type it parses
_handler_types: dict[Handler, type[Event]] = {}


def handles(event_type: type[E]) -> Callable[[Callable[[AsyncSession, E], Awaitable[None]]], Handler]:
    """A handler written for `event_type`, in the form the engine delivers to: the payload is
    parsed at the edge, so a malformed one fails the delivery (retried, then a dead letter)."""
    def wrap(handler: Callable[[AsyncSession, E], Awaitable[None]]) -> Handler:
        @functools.wraps(handler)
        async def parse_then_handle(session: AsyncSession, payload: dict[str, Any]) -> None:
            await handler(session, event_type.model_validate(payload))
        _handler_types[parse_then_handle] = event_type
        return parse_then_handle
    return wrap


def event_type_of(handler: Handler) -> type[Event] | None:
    """The type a handler parses its payload into, if it was declared with `handles`."""
    return _handler_types.get(handler)


def subscribe(topic: str, handler: Handler, subscriber: str | None = None) -> None:
    """`subscriber` names the package (default: the handler's top-level package); each
    subscriber gets its own delivery of every event of the topic."""
    if any(handler in handlers for handlers in _subscriptions[topic].values()):
        return
    name = subscriber or handler.__module__.split(".")[0]
    _subscriptions[topic].setdefault(name, []).append(handler)


def unsubscribe(topic: str, handler: Handler) -> None:
    for name, handlers in list(_subscriptions[topic].items()):
        if handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del _subscriptions[topic][name]


def subscriptions() -> dict[str, dict[str, list[Handler]]]:
    return {topic: {name: list(handlers) for name, handlers in subs.items()}
            for topic, subs in _subscriptions.items() if subs}


def mark_wired() -> None:
    """This process knows every subscription (app.wiring ran): publish fans out at once.
    Elsewhere (a CLI command) the worker fans out, so no subscriber is missed."""
    global _wired
    _wired = True


async def publish(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Queue an event in the current transaction; nothing leaves before commit."""
    together = session.info.get(_TOGETHER)
    if together is not None:
        together.append((topic, payload))
    elif _wired:  # handed over to its subscribers in this same INSERT
        await _write(session, [(topic, payload)])
    else:
        message = OutboxMessage(topic=topic, payload=payload)
        session.add(message)
        await session.flush()
        await jobs.enqueue(session, jobs.FAN_OUT, {"event_id": message.id}, dedupe_key=f"fanout:{message.id}")


def _check_declared(event: Event) -> None:
    if EVENT_TYPES.get(event.topic) is not type(event):
        raise TypeError(f"{type(event).__name__} is not the declared type of a topic")


async def publish_event(session: AsyncSession, event: Event) -> None:
    """`publish` of a typed event under its own topic."""
    _check_declared(event)
    await publish(session, event.topic, event.wire())


_TOGETHER = "kit.events.together"


@asynccontextmanager
async def published_together(session: AsyncSession) -> AsyncIterator[None]:
    """Events published inside the block are written when it ends, with one INSERT of their
    outbox rows, one of their deliveries and one enqueue per lane: an emergency's round
    publishes several, and its offers wait on each round trip. Nested blocks join the outer one."""
    if session.info.get(_TOGETHER) is not None:
        yield
        return
    pending: list[tuple[str, dict[str, Any]]] = []
    session.info[_TOGETHER] = pending
    try:
        yield
    finally:
        del session.info[_TOGETHER]
    if not _wired:
        for topic, payload in pending:
            await publish(session, topic, payload)
    elif pending:
        await _write(session, pending)


async def _write(session: AsyncSession, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """The outbox rows, already handed over to their subscribers: a delivery and a job each."""
    now = utcnow()
    # Parameters apart from the statement, so it is compiled once; ids come back in their order.
    ids = (await session.execute(
        insert(OutboxMessage).values(delivered_at=func.clock_timestamp())
        .returning(col(OutboxMessage.id), sort_by_parameter_order=True),
        [{"topic": topic, "payload": payload, "created_at": now, "attempts": 0} for topic, payload in messages],
    )).scalars().all()
    batches = [(_deliveries_of(event_id, topic, payload), payload.get("priority") == "emergency")
               for event_id, (topic, payload) in zip(ids, messages)]
    session.add_all([d for batch, _ in batches for d in batch])
    await session.flush()
    await _enqueue_deliveries(session, [d for batch, urgent in batches if urgent for d in batch], urgent=True)
    await _enqueue_deliveries(session, [d for batch, urgent in batches if not urgent for d in batch])


_unordered: set[str] = set()


def mark_unordered(subscriber: str) -> None:
    """This subscriber's deliveries of one order need not wait for each other (each stands
    alone: an offer's push to one technician must not wait behind another's retries)."""
    _unordered.add(subscriber)


def _deliveries_of(event_id: int, topic: str, payload: dict[str, Any]) -> list[Delivery]:
    order_key = payload.get("order_id")
    return [Delivery(event_id=event_id, topic=topic, subscriber=name,
                     order_key=str(order_key)[:80] if order_key is not None and name not in _unordered else None)
            for name in sorted(_subscriptions.get(topic, {}))]


async def _fan_out(session: AsyncSession, message: OutboxMessage) -> list[Delivery]:
    """An event published where the subscriptions were not known, handed over now."""
    assert message.id is not None
    deliveries = _deliveries_of(message.id, message.topic, message.payload)
    session.add_all(deliveries)
    message.delivered_at = await database_now(session)
    session.add(message)
    await session.flush()
    await _enqueue_deliveries(session, deliveries, urgent=message.payload.get("priority") == "emergency")
    return deliveries


async def _enqueue_deliveries(session: AsyncSession, deliveries: Sequence[Delivery], urgent: bool = False) -> None:
    by_lane: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_lane[jobs.delivery_entrypoint(delivery.subscriber, urgent)].append(delivery)
    for entrypoint, batch in by_lane.items():
        await jobs.enqueue_many(session, entrypoint, [{"delivery_id": d.id} for d in batch],
                                dedupe_keys=[jobs.delivery_job_key(d) for d in batch])


def backoff(attempts: int) -> timedelta:
    """After the `attempts`-th failure: base * 2^(attempts-1), capped, with a little jitter so
    that many failures at once do not retry in step."""
    settings = get_settings()
    delay = min(settings.events_backoff_base_s * 2 ** (attempts - 1), settings.events_backoff_cap_s)
    return timedelta(seconds=delay * random.uniform(0.9, 1.0))


def _earlier_pending_of(subscriber: Any, order_key: Any, event_id: Any) -> Any:
    """Whether an earlier event's delivery of the same order to the same subscriber is still
    pending (then this one waits: order per order). Columns or values; a NULL key is unordered."""
    earlier = aliased(Delivery)
    return exists(select(earlier.id).where(
        earlier.subscriber == subscriber, earlier.order_key == order_key,
        earlier.state == "pending", earlier.event_id < event_id))


async def _earlier_pending(session: AsyncSession, delivery: Delivery) -> bool:
    if delivery.order_key is None:
        return False
    return bool((await session.exec(select(
        _earlier_pending_of(delivery.subscriber, delivery.order_key, delivery.event_id)))).one())


async def _attempt(session: AsyncSession, delivery: Delivery, now: datetime,
                   payload: dict[str, Any] | None = None) -> timedelta | None:
    """Run the subscriber's handlers in a savepoint and record the outcome on the delivery;
    returns the delay before the next try, or None when the delivery is finished. `payload`:
    the event's, when the caller read it already."""
    settings = get_settings()
    if payload is None:
        message = await session.get(OutboxMessage, delivery.event_id)
        payload = message.payload if message else {}
    handlers = _subscriptions.get(delivery.topic, {}).get(delivery.subscriber, [])
    topic, subscriber, delivery_id = delivery.topic, delivery.subscriber, delivery.id
    retry: timedelta | None = None
    try:
        async with session.begin_nested():
            for handler in handlers:
                await handler(session, dict(payload))
    except NotReady as exc:
        await session.refresh(delivery)  # a savepoint rollback may have expired it
        delivery.deferrals += 1
        delivery.last_error = f"not ready: {exc.detail}"[:1000]
        DELIVERIES.labels(topic, subscriber, "not_ready").inc()
        if delivery.deferrals >= settings.events_max_deferrals:
            _dead(delivery, now)
        else:
            retry = timedelta(seconds=exc.retry_after_s)
        log.info("events.not_ready", topic=topic, subscriber=subscriber, delivery_id=delivery_id,
                 deferrals=delivery.deferrals, detail=exc.detail)
    except Exception as exc:  # retried with backoff, then a dead letter; never lost, never looping
        await session.refresh(delivery)
        delivery.attempts += 1
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:1000]
        DELIVERIES.labels(topic, subscriber, "failed").inc()
        log.warning("events.delivery_failed", topic=topic, subscriber=subscriber, delivery_id=delivery_id,
                    attempts=delivery.attempts, error=delivery.last_error)
        if delivery.attempts >= settings.events_max_attempts:
            _dead(delivery, now)
        else:
            retry = backoff(delivery.attempts)
    else:
        delivery.state, delivery.finished_at = "done", now
        DELIVERIES.labels(topic, subscriber, "done").inc()
    if retry is not None:
        delivery.next_attempt_at = now + retry
    session.add(delivery)
    await session.flush()
    return retry


def _dead(delivery: Delivery, now: datetime) -> None:
    delivery.state, delivery.finished_at = "dead", now
    DEAD_LETTERS.labels(delivery.topic, delivery.subscriber).inc()
    log.error("events.dead_letter", topic=delivery.topic, subscriber=delivery.subscriber, delivery_id=delivery.id,
              event_id=delivery.event_id, attempts=delivery.attempts, deferrals=delivery.deferrals,
              error=delivery.last_error)


# Worker side --------------------------------------------------------------------------------

@functools.cache
def _delivery_row() -> Any:
    """The delivery, its event, the clock and its order's earlier deliveries in one round trip
    (an emergency's offer round waits behind it), built once: building the aliased subquery
    cost a sixth of a busy worker's CPU."""
    return (select(Delivery, OutboxMessage.payload, func.clock_timestamp(),
                   _earlier_pending_of(Delivery.subscriber, Delivery.order_key, Delivery.event_id))
            .outerjoin(OutboxMessage, col(OutboxMessage.id) == Delivery.event_id)
            .where(Delivery.id == bindparam("delivery_id")).with_for_update(of=Delivery))


async def deliver(delivery_id: int) -> None:
    """The `events.deliver` job: one delivery in its own transaction. A retry is asked of the
    engine after the commit, so the recorded attempt stands."""
    retry: timedelta | None = None
    async with session_scope() as session:
        row = (await session.exec(_delivery_row(), params={"delivery_id": delivery_id})).first()
        if row is None or row[0].state != "pending":
            return
        delivery, payload, now, waits = row
        if delivery.next_attempt_at > now:
            retry = delivery.next_attempt_at - now
        elif waits:
            retry = ORDER_WAIT
        else:
            retry = await _attempt(session, delivery, now, payload or {})
    if retry is not None:
        raise RetryRequested(delay=retry, reason="delivery retried later")


async def fan_out(event_id: int) -> None:
    """The `events.fanout` job, for events published where the subscriptions are not known."""
    async with session_scope() as session:
        message = (await session.exec(select(OutboxMessage).where(OutboxMessage.id == event_id)
                                      .with_for_update())).first()
        if message is not None and message.delivered_at is None:
            await _fan_out(session, message)


async def requeue_stalled(session: AsyncSession, older_than: timedelta = timedelta(seconds=60)) -> int:
    """Safety net: pending deliveries whose job was lost (a worker killed between attempts, the
    engine down while retrying) get a job again; events never fanned out are fanned out; failed
    jobs of deliveries done since are dropped."""
    now = await database_now(session)
    unfanned = (await session.exec(select(OutboxMessage).where(
        col(OutboxMessage.delivered_at).is_(None), OutboxMessage.created_at < now - older_than)
        .order_by(OutboxMessage.id).limit(500).with_for_update(skip_locked=True))).all()
    for message in unfanned:
        await _fan_out(session, message)
    stalled = (await session.exec(select(Delivery).where(
        Delivery.state == "pending", Delivery.next_attempt_at < now - older_than).limit(1000))).all()
    await _enqueue_deliveries(session, stalled)
    return len(unfanned) + len(stalled) + await jobs.drop_obsolete_failures(session)


# Tests -------------------------------------------------------------------------------------

async def drain(session: AsyncSession, max_rounds: int = 50) -> int:
    """Deliver pending deliveries in-process on this session (tests), each in a savepoint,
    repeating while handlers publish more; each delivery is tried at most once per call."""
    tried: set[int] = set()
    for _ in range(max_rounds):
        for message in (await session.exec(select(OutboxMessage).where(
                col(OutboxMessage.delivered_at).is_(None)).order_by(OutboxMessage.id))).all():
            await _fan_out(session, message)
        pending = (await session.exec(
            select(Delivery).where(Delivery.state == "pending", col(Delivery.id).not_in(tried) if tried else True)
            .order_by(Delivery.event_id, Delivery.id).with_for_update(skip_locked=True))).all()
        if not pending:
            break
        now = await database_now(session)
        for delivery in pending:
            tried.add(delivery.id)
            if await _earlier_pending(session, delivery):
                continue
            await _attempt(session, delivery, now)
    return len(tried)
