"""WS /v1/ws/orders/{order_id}: the customer follows his order — status changes, and the
technician's position only from acceptance until completion. Frames are screened as on the
technician's socket (rate, size, nesting), and the socket closes when its token expires. Status
changes carry `seq`; `{"type":"resume","after":N}` resends those after N (see protocol.py)."""

import asyncio
import json
import uuid

import structlog
from fastapi import APIRouter, WebSocket
from redis.asyncio import Redis
from redis.exceptions import RedisError
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import select
from starlette.websockets import WebSocketDisconnect

from api.ws import protocol
from api.ws.common import (
    CLOSE_FORBIDDEN, CLOSE_INTERNAL_ERROR, WS_CONNECTIONS, Inbox, Sender, authenticate, forward, hub, load_json,
)
from dispatch.models import Order, OrderEvent
from dispatch.accounts import customer_for_account
from kit.db import session_scope
from kit.errors import NotFound
from kit.fanout import message, order_channel
from kit.redis import get_redis
from dispatch.service import get_order_for, shared_event_reason
from dispatch.states import ACTIVE_JOB_STATES
from matching import service as matching

router = APIRouter()
log = structlog.get_logger(__name__)


def _parse(text: str) -> tuple[dict | None, str | None]:
    try:
        message = load_json(text)
    except ValueError:
        return None, None
    if not isinstance(message, dict):
        return None, None
    message_id = message.get("id")
    return message, message_id if isinstance(message_id, str) and len(message_id) <= 64 else None


class OrderFeed:
    """One customer's view of one order. Status changes are sent from the order's events in the
    database, each with `seq` (the event's id, increasing along the order's history), so that a
    client that missed some — a dropped socket, a Redis blip — asks for those after the last
    `seq` it saw and gets exactly them. A pub/sub push is the wake-up, not the record."""

    def __init__(self, sender: Sender, order: Order, seq: int) -> None:
        self.sender, self.order_id = sender, order.id
        self.status, self.seq = order.status, seq
        self._lock = asyncio.Lock()

    def message(self, event: OrderEvent, technician_id: uuid.UUID | None) -> dict:
        return {"v": 1, "type": "status", "id": uuid.uuid4().hex, "order_id": str(self.order_id), "seq": event.id,
                "status": event.to_status, "action": event.action,
                "technician_id": str(technician_id) if technician_id else None,
                "reason": shared_event_reason(event.action, event.reason)}

    async def send_after(self, after: int) -> int:
        """Send every status change after `after`; the number sent."""
        async with self._lock:
            async with session_scope() as session:
                order = await session.get(Order, self.order_id)
                events = (await session.exec(select(OrderEvent).where(
                    OrderEvent.order_id == self.order_id, OrderEvent.id > after).order_by(OrderEvent.id))).all()
            for event in events:
                await self.sender.send(self.message(event, order.technician_id if order else None))
                self.status = event.to_status
                self.seq = max(self.seq, event.id)
            return len(events)

    async def catch_up(self) -> None:
        """After the hub resubscribed: whatever changed while pushes were lost."""
        try:
            await self.send_after(self.seq)
        except Exception as exc:  # the client's own resume recovers it later
            log.warning("ws.order_catch_up_failed", error=type(exc).__name__)

    async def relay(self, data: str) -> None:
        message = json.loads(data)
        if message.get("type") == "status":
            try:
                if await self.send_after(self.seq):
                    return
            except Exception as exc:  # no database now: the push itself, without seq
                log.warning("ws.order_catch_up_failed", error=type(exc).__name__)
            if message.get("status") != self.status:
                self.status = message.get("status")
                await self.sender.send(data)
            return
        # Positions only from acceptance until completion, by the status this socket last sent.
        if message.get("type") != "position" or self.status in ACTIVE_JOB_STATES:
            await self.sender.send(data)


async def _answer(text: str, feed: OrderFeed) -> dict | None:
    """This socket only listens; a client may ping it, or ask for what it missed (`resume`)."""
    message, message_id = _parse(text)
    if message is None:
        return {"v": 1, "type": "error", "id": None, "code": "invalid-input", "detail": "malformed JSON"}
    if message.get("type") == "ping":
        return {"v": 1, "type": "pong", "id": message_id}
    if message.get("type") == "resume":
        try:
            resume = protocol.Resume.model_validate(message)
        except ValidationError:
            return {"v": 1, "type": "error", "id": message_id, "code": "invalid-input",
                    "detail": "resume needs an integer `after` (the last seq received)"}
        await feed.sender.send({"v": 1, "type": "ack", "id": resume.id, "seq": feed.seq})
        await feed.send_after(resume.after)
        return None
    return {"v": 1, "type": "error", "id": message_id, "code": "invalid-input",
            "detail": "this socket only accepts ping and resume"}


async def _last_position(sender: Sender, redis: Redis, order: Order) -> None:
    """The technician's latest fix at once, so the map shows him before his next one arrives."""
    try:
        live = await matching.geo_index(redis).get(str(order.technician_id), order.city_id)
    except (RedisError, OSError):  # his next fix will show him
        return
    if live is not None:
        await sender.send(message("position", order_id=str(order.id), technician_id=live.id,
                                  position={"type": "Point", "coordinates": [live.lon, live.lat]},
                                  ts=live.seen_at.isoformat()))


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
            seq = (await session.exec(select(func.max(OrderEvent.id)).where(OrderEvent.order_id == order.id))).one() or 0
    except (NotFound, ValueError):
        await websocket.close(CLOSE_FORBIDDEN, "not your order")
        return
    sender = Sender(websocket)
    inbox = Inbox(websocket, sender, claims.expires_at)
    feed = OrderFeed(sender, order, seq)
    redis = get_redis()
    channel = order_channel(order.id)
    queue = await hub(redis).join(channel)
    relay = asyncio.create_task(forward(queue, sender, feed.relay, feed.catch_up))
    WS_CONNECTIONS.labels("order").inc()
    try:
        await sender.send({"v": 1, "type": "status", "id": uuid.uuid4().hex, "order_id": str(order.id), "seq": seq,
                           "status": order.status, "technician_id": str(order.technician_id) if order.technician_id else None})
        if order.status in ACTIVE_JOB_STATES and order.technician_id is not None:
            await _last_position(sender, redis, order)
        while (text := await inbox.next_text()) is not None:
            reply = await _answer(text, feed)
            if reply is not None:
                await sender.send(reply)
    except WebSocketDisconnect:
        pass
    except Exception:  # never a silent drop: the client sees a close frame and reconnects
        log.exception("ws.order_failed")
        await sender.close(CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        WS_CONNECTIONS.labels("order").dec()
        relay.cancel()
        await hub(redis).leave(channel, queue)
