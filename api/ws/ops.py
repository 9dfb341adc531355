"""WS /v1/ws/ops[?city=<id>]: the operations console's live feed, admins only. It forwards
everything on the operations channel of one city, or of every city without `city` (an operator
who watches them all; a city created later is heard after the next reconnect): alerts raised and
acknowledged, and every order's status change (`{"v":1,"type":"order_status","order_id":…,
"status":…}`). An unknown city is closed with 4404. Authenticated and screened like the other
sockets; a client may only ping. After a reconnect, or a `resync` message (the server's Redis
subscription was restored), the console reloads its lists, so a push lost meanwhile costs nothing."""

import asyncio
import re
import uuid
from collections.abc import Awaitable

from fastapi import APIRouter, WebSocket
from sqlmodel import select
from starlette.websockets import WebSocketDisconnect

from api.ws.common import WS_CONNECTIONS, Inbox, Sender, authenticate, forward, hub, load_json
from dispatch.alerts import ops_channel
from dispatch.models import City
from kit.db import session_scope
from kit.redis import get_redis

router = APIRouter()
CLOSE_NO_SUCH_CITY = 4404
_CITY_ID = re.compile("[a-z0-9_-]{1,60}")


async def _cities(city: str | None) -> list[str]:
    """The cities this socket hears: the one asked for if it exists, else every city."""
    if city is not None and not _CITY_ID.fullmatch(city):
        return []
    async with session_scope() as session:
        statement = select(City.id).order_by(City.id)
        return list((await session.exec(statement.where(City.id == city) if city else statement)).all())


def _answer(text: str) -> dict:
    try:
        message = load_json(text)
    except ValueError:
        return {"v": 1, "type": "error", "id": None, "code": "invalid-input", "detail": "malformed JSON"}
    message_id = message.get("id") if isinstance(message, dict) else None
    message_id = message_id if isinstance(message_id, str) and len(message_id) <= 64 else None
    if isinstance(message, dict) and message.get("type") == "ping":
        return {"v": 1, "type": "pong", "id": message_id}
    return {"v": 1, "type": "error", "id": message_id, "code": "invalid-input", "detail": "this socket only accepts ping"}


@router.websocket("/v1/ws/ops")
async def ops_socket(websocket: WebSocket) -> None:
    claims = await authenticate(websocket, "admin")
    if claims is None:
        return
    cities = await _cities(websocket.query_params.get("city"))
    if not cities:
        await websocket.close(CLOSE_NO_SUCH_CITY, "no such city")
        return
    sender = Sender(websocket)
    inbox = Inbox(websocket, sender, claims.expires_at)
    redis = get_redis()
    channels = [ops_channel(city) for city in cities]
    queues = [await hub(redis).join(channel) for channel in channels]

    def resync() -> Awaitable[None]:
        return sender.send({"v": 1, "type": "resync", "id": uuid.uuid4().hex})

    # Pushes lost while the hub resubscribed: the console reloads its lists (told once, not per city).
    relays = [asyncio.create_task(forward(queue, sender, resync=resync if i == 0 else None))
              for i, queue in enumerate(queues)]
    WS_CONNECTIONS.labels("ops").inc()
    try:
        await sender.send({"v": 1, "type": "ready", "id": uuid.uuid4().hex, "cities": cities})
        while (text := await inbox.next_text()) is not None:
            await sender.send(_answer(text))
    except WebSocketDisconnect:
        pass
    finally:
        WS_CONNECTIONS.labels("ops").dec()
        for relay in relays:
            relay.cancel()
        for channel, queue in zip(channels, queues):
            await hub(redis).leave(channel, queue)
