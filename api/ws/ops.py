"""WS /v1/ws/ops: the operations console's live feed, admins only. It forwards everything on the
city's operations channel: alerts raised and acknowledged, and every order's status change
(`{"v":1,"type":"order_status","order_id":…,"status":…}`). Authenticated and screened like the
other sockets; a client may only ping. After a reconnect, or a `resync` message (the server's Redis
subscription was restored), the console reloads its lists, so a push lost meanwhile costs nothing."""

import asyncio
import uuid

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from api.ws.common import WS_CONNECTIONS, Inbox, Sender, authenticate, forward, hub, load_json
from dispatch.alerts import ops_channel
from kit.config import get_settings
from kit.redis import get_redis

router = APIRouter()


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
    sender = Sender(websocket)
    inbox = Inbox(websocket, sender, claims.expires_at)
    redis = get_redis()
    channel = ops_channel(get_settings().city)
    queue = await hub(redis).join(channel)
    # Pushes lost while the hub resubscribed: the console reloads its lists.
    relay = asyncio.create_task(forward(queue, sender, resync=lambda: sender.send(
        {"v": 1, "type": "resync", "id": uuid.uuid4().hex})))
    WS_CONNECTIONS.labels("ops").inc()
    try:
        await sender.send({"v": 1, "type": "ready", "id": uuid.uuid4().hex, "channel": channel})
        while (text := await inbox.next_text()) is not None:
            await sender.send(_answer(text))
    except WebSocketDisconnect:
        pass
    finally:
        WS_CONNECTIONS.labels("ops").dec()
        relay.cancel()
        await hub(redis).leave(channel, queue)
