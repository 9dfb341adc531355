"""Events: written to the outbox in the caller's transaction, delivered after commit by a relay.

Handlers subscribe by dotted topic (`dispatch.order_created`); delivery is at-least-once, so
handlers must be idempotent.
"""

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import OutboxMessage

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(topic: str, handler: Handler) -> None:
    if handler not in _handlers[topic]:
        _handlers[topic].append(handler)


def unsubscribe(topic: str, handler: Handler) -> None:
    if handler in _handlers[topic]:
        _handlers[topic].remove(handler)


async def publish(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Queue an event in the current transaction; nothing leaves before commit."""
    session.add(OutboxMessage(topic=topic, payload=payload))
    await session.flush()


async def relay_once(session: AsyncSession, batch: int = 100) -> int:
    """Deliver pending outbox messages to in-process handlers; returns how many were handled.

    Rows are locked with SKIP LOCKED so several relays can run; each message is handled in a
    savepoint so one failing handler does not undo the others.
    """
    rows = (
        await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for message in rows:
        try:
            async with session.begin_nested():
                for handler in list(_handlers.get(message.topic, ())):
                    await handler(session, message.payload)
            message.delivered_at = datetime.now(timezone.utc)
        except Exception as exc:  # a failing handler is retried later, never lost
            log.warning("outbox.handler_failed", topic=message.topic, id=message.id, error=str(exc))
            message.attempts += 1
            message.last_error = str(exc)[:1000]
        session.add(message)
    await session.flush()
    return len(rows)


async def drain(session: AsyncSession, max_rounds: int = 50) -> int:
    """Relay until nothing new is pending (handlers may publish more)."""
    total = 0
    for _ in range(max_rounds):
        before = total
        total += await relay_once(session)
        pending = (
            await session.exec(
                select(OutboxMessage.id)
                .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.attempts == 0)
                .limit(1)
            )
        ).first()
        if pending is None or total == before:
            break
    return total
