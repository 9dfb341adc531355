"""WS /v1/ws/orders/{order_id}: the customer follows his order — status changes, and the
technician's position only from acceptance until completion. Frames are screened as on the
technician's socket (rate, size, nesting), and the socket closes when its token expires."""

import asyncio
import uuid

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from api.ws.common import CLOSE_FORBIDDEN, WS_CONNECTIONS, Inbox, Sender, authenticate, forward, hub, load_json
from dispatch.accounts import customer_for_account
from dispatch.db import session_scope
from dispatch.errors import NotFound
from dispatch.fanout import order_channel
from dispatch.redis import get_redis
from dispatch.service import get_order_for
from dispatch.states import ACTIVE_JOB_STATES

router = APIRouter()


def _answer(text: str) -> dict:
    """This socket only listens; a client may ping it."""
    try:
        message = load_json(text)
    except ValueError:
        return {"v": 1, "type": "error", "id": None, "detail": "malformed JSON"}
    message_id = message.get("id") if isinstance(message, dict) else None
    message_id = message_id if isinstance(message_id, str) and len(message_id) <= 64 else None
    if isinstance(message, dict) and message.get("type") == "ping":
        return {"v": 1, "type": "pong", "id": message_id}
    return {"v": 1, "type": "error", "id": message_id, "detail": "this socket only accepts ping"}


@router.websocket("/v1/ws/orders/{order_id}")
async def order_socket(websocket: WebSocket, order_id: str) -> None:
    claims = await authenticate(websocket, "customer", "admin")
    if claims is None:
        return
    principal = claims.principal
    try:
        async with session_scope() as session:
            customer_id = (await customer_for_account(session, principal.account_id)).id if principal.role == "customer" else None
            order = await get_order_for(session, uuid.UUID(order_id), role=principal.role, customer_id=customer_id)
    except (NotFound, ValueError):
        await websocket.close(CLOSE_FORBIDDEN, "not your order")
        return
    sender = Sender(websocket)
    inbox = Inbox(websocket, sender, claims.expires_at)
    status = {"current": order.status}

    def visible(message: dict) -> bool:
        # The order's own status stream decides when positions may be shown.
        if message.get("type") == "status":
            status["current"] = message.get("status")
            return True
        return message.get("type") != "position" or status["current"] in ACTIVE_JOB_STATES

    redis = get_redis()
    channel = order_channel(order.id)
    queue = await hub(redis).join(channel)
    relay = asyncio.create_task(forward(queue, sender, visible))
    WS_CONNECTIONS.labels("order").inc()
    try:
        await sender.send({"v": 1, "type": "status", "id": uuid.uuid4().hex, "order_id": str(order.id),
                           "status": order.status, "technician_id": str(order.technician_id) if order.technician_id else None})
        while (text := await inbox.next_text()) is not None:
            await sender.send(_answer(text))
    except WebSocketDisconnect:
        pass
    finally:
        WS_CONNECTIONS.labels("order").dec()
        relay.cancel()
        await hub(redis).leave(channel, queue)
