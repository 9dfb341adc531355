"""Realtime fan-out across API workers through Redis pub/sub.

A socket on any worker subscribes to its user's channel (and, for order watchers, the
order's channel); whoever publishes needs no idea which worker holds the socket.
"""

import json
import uuid
from typing import Any

from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.redis import get_redis

PROTOCOL_VERSION = 1


def account_channel(account_id: uuid.UUID | str) -> str:
    return f"realtime:account:{account_id}"


def order_channel(order_id: uuid.UUID | str) -> str:
    return f"realtime:order:{order_id}"


def active_orders_key(technician_id: uuid.UUID | str) -> str:
    """Orders whose customer may see this technician's position (accepted until completed)."""
    return f"realtime:active_orders:{technician_id}"


def presence_key(technician_id: uuid.UUID | str) -> str:
    """Set while the technician's socket is open (refreshed by every message)."""
    return f"realtime:presence:{technician_id}"


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, "id": uuid.uuid4().hex, **fields}, default=str,
                      ensure_ascii=False)


def push_after_commit(session: AsyncSession, channel: str, kind: str, **fields: Any) -> None:
    payload = message(kind, **fields)

    async def send() -> None:
        await get_redis().publish(channel, payload)

    after_commit.defer(session, send)


async def push_now(redis: Redis, channel: str, kind: str, **fields: Any) -> None:
    """For state that is not in the database (positions): nothing to wait for."""
    await redis.publish(channel, message(kind, **fields))


async def publish_position(redis: Redis, technician_id: uuid.UUID | str, lon: float, lat: float, at: str,
                           order_ids: set[str] | None = None) -> int:
    """Relay a technician's fix to the orders whose customers may follow him right now
    (`order_ids`: his active orders when the caller has read them already)."""
    if order_ids is None:
        order_ids = await redis.smembers(active_orders_key(technician_id))
    for order_id in order_ids:
        await push_now(redis, order_channel(order_id), "position", order_id=order_id,
                       technician_id=str(technician_id), position={"type": "Point", "coordinates": [lon, lat]}, ts=at)
    return len(order_ids)
