"""WS /v1/ws/technician: the technician's phone — positions in; offers and job updates out.

Phones retry on flaky networks, so a message id seen before is answered again with the
reply it got the first time, without acting twice. Malformed, oversized or too frequent
messages get an `error` and are counted; they never close the socket or touch others. The
socket closes with 4401 when its token expires; the phone refreshes it and reconnects.
"""

import asyncio
import contextlib
import json
import uuid
from datetime import timezone
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from api.errors import RETRY_AFTER_S, unavailable_service
from api.ws import protocol
from api.ws.common import (
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL_ERROR,
    WS_CONNECTIONS,
    WS_MESSAGES,
    WS_REJECTED,
    Inbox,
    Sender,
    authenticate,
    forward,
    hub,
    load_json,
)
from dispatch.accounts import technician_for_account
from dispatch.field import reports, visits
from dispatch.handlers import offer_summary
from dispatch.models import Order, OrderEvent
from dispatch.states import ACTIVE_JOB_STATES
from dispatch.technicians import PositionCopy, record_last_positions
from kit.coalesce import Coalesced
from kit.config import get_settings
from kit.db import database_now, session_scope
from kit.errors import DomainError, NotFound
from kit.fanout import (
    account_channel,
    active_orders_key,
    presence_key,
    publish_position,
)
from kit.redis import get_redis
from matching import eta
from matching import service as matching
from matching.index import technician_city_key
from matching.models import Offer

router = APIRouter()
log = structlog.get_logger(__name__)
REPLAY_TTL_S = 600
# A message still being acted on holds its id this long: a retry after a crash mid-way acts again.
IN_FLIGHT_TTL_S = 30


async def _resume(sender: Sender, technician_id: uuid.UUID, after: int = 0) -> None:
    """After a (re)connect, a `resume` or the hub's resubscription: every offer still open, and
    the state of every current job changed after `after` (its `seq`: the order's latest event)."""
    async with session_scope() as session:
        offers = (await session.exec(select(Offer).where(
            Offer.technician_id == technician_id, Offer.status == "offered", Offer.expires_at > func.now()))).all()
        jobs = (await session.exec(select(Order, func.max(OrderEvent.id)).join(
            OrderEvent, col(OrderEvent.order_id) == Order.id).where(
            Order.technician_id == technician_id, col(Order.status).in_(ACTIVE_JOB_STATES)).group_by(Order.id))).all()
        for offer in offers:
            order = await session.get(Order, offer.order_id)
            summary = offer_summary(order, str(offer.id), offer.distance_m, offer.eta_s, offer.expires_at.isoformat())
            await sender.send({"v": 1, "type": "offer", "id": uuid.uuid4().hex, "offer": summary})
        for job, seq in jobs:
            if seq > after:
                await sender.send({"v": 1, "type": "job_updated", "id": uuid.uuid4().hex, "order_id": str(job.id),
                                   "status": job.status, "seq": seq})


async def _locate(message: protocol.Location, technician_id: uuid.UUID, city: str | None,
                  order_ids: set[str]) -> dict[str, Any]:
    """The hot path (a fix every few seconds per phone): Redis only, and PostgreSQL only when
    its lower-rate copy is due. `city` and `order_ids` were read with the presence write."""
    redis = get_redis()
    index = matching.geo_index(redis)
    at = message.ts if message.ts.tzinfo else message.ts.replace(tzinfo=timezone.utc)
    city = city or await matching.city_of_technician(index, technician_id)
    fix = await matching.record_fix(index, technician_id, lon=message.lon, lat=message.lat, at=at, city=city)
    if fix.persist:
        await _persist(PositionCopy(technician_id, message.lon, message.lat, at))
    if fix.outcome == "accepted" and order_ids:
        await publish_position(redis, technician_id, message.lon, message.lat, at.isoformat(), order_ids)
        await eta.refresh_after_fix(redis, index, technician_id, order_ids=order_ids)
    return {"outcome": fix.outcome}


async def _act(message: Any, account_id: uuid.UUID, technician_id: uuid.UUID) -> dict[str, Any]:
    """Run one message in its own unit of work; returns the ack's extra fields."""
    redis = get_redis()
    index = matching.geo_index(redis)
    async with session_scope() as session:
        technician = await technician_for_account(session, account_id)
        if isinstance(message, protocol.GoOnline):
            return {"status": (await matching.go_online(session, index, technician)).status}
        if isinstance(message, protocol.GoOffline):
            return {"status": (await matching.go_offline(session, index, technician)).status}
        if isinstance(message, protocol.AcceptOffer):
            order = await matching.accept_offer(session, uuid.UUID(message.offer_id), technician.id)
            return {"order_id": str(order.id), "status": order.status}
        if isinstance(message, protocol.DeclineOffer):
            await matching.decline_offer(session, index, uuid.UUID(message.offer_id), technician.id, message.reason)
            return {}
        if isinstance(message, protocol.JobStatus):
            return await _job_status(session, redis, technician.id, uuid.UUID(message.order_id), message)
    raise AssertionError(f"unhandled message {type(message).__name__}")


async def _job_status(session: AsyncSession, redis: Redis, technician_id: uuid.UUID, order_id: uuid.UUID,
                      message: protocol.JobStatus) -> dict[str, Any]:
    """The same field services as POST /v1/jobs/{order_id}/..., one per status."""
    now = await database_now(session)
    if message.status == "en_route":
        order = await visits.depart(session, redis, order_id, technician_id, now)
    elif message.status == "arrived":
        order = await visits.arrive(session, redis, order_id, technician_id, now)
    elif message.status == "started":
        order = await visits.start(session, order_id, technician_id, now)
    else:
        done = await reports.complete(session, order_id, technician_id, reports.WorkReportIn.model_validate(message.data), now)
        if done.price_change is not None:
            return {"order_id": str(order_id), "status": done.order.status, "price_change": "awaiting_customer"}
        order = done.order
    return {"order_id": str(order.id), "status": order.status}


def _unavailable(message_id: str | None, service: str) -> dict[str, Any]:
    return {"v": 1, "type": "error", "id": message_id, "code": "service-unavailable",
            "detail": f"{service} unavailable; try again shortly", "retry_after_s": RETRY_AFTER_S}


async def _handle(raw: str, account_id: uuid.UUID, technician_id: uuid.UUID, sender: Sender) -> dict[str, Any] | None:
    """The reply to one message (None when already sent); an unreachable Redis or database is an
    `error` the phone retries, never a closed socket."""
    try:
        data = load_json(raw)
    except ValueError:
        WS_REJECTED.labels("malformed").inc()
        return {"v": 1, "type": "error", "id": None, "code": "invalid-input", "detail": "malformed JSON"}
    message_id = data.get("id") if isinstance(data, dict) else None
    try:
        message = protocol.technician_message.validate_python(data)
    except ValidationError as exc:
        WS_REJECTED.labels("invalid").inc()
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return {"v": 1, "type": "error", "id": message_id if isinstance(message_id, str) else None,
                "code": "invalid-input", "detail": problems}
    WS_MESSAGES.labels(message.type).inc()
    if isinstance(message, protocol.Location):
        return await _handle_fix(message, technician_id)
    redis = get_redis()
    replay_key = f"realtime:reply:{account_id}:{message.id}"
    idempotent = isinstance(message, (protocol.Ping, protocol.Resume))
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(presence_key(technician_id), "1", ex=get_settings().stale_after_s)
            if not idempotent:
                pipe.set(replay_key, "", nx=True, ex=IN_FLIGHT_TTL_S)
            first_delivery = (await pipe.execute())[-1]
    except (RedisError, OSError):
        if not idempotent:  # nothing to act on without the replay guard; ping and resume carry on
            WS_REJECTED.labels("unavailable").inc()
            return _unavailable(message.id, "redis")
        first_delivery = True
    if isinstance(message, protocol.Ping):
        return {"v": 1, "type": "pong", "id": message.id}
    if isinstance(message, protocol.Resume):
        try:
            await sender.send({"v": 1, "type": "ack", "id": message.id})
            await _resume(sender, technician_id, message.after)
        except (WebSocketDisconnect, RuntimeError):
            raise
        except Exception as exc:
            service = unavailable_service(exc)
            if service is None:
                raise
            return _unavailable(message.id, service)
        return None
    if not first_delivery:
        try:
            stored = await redis.get(replay_key)
        except (RedisError, OSError):
            return _unavailable(message.id, "redis")
        if stored:
            return json.loads(stored)
        return {"v": 1, "type": "ack", "id": message.id, "duplicate": True}  # first delivery still running
    try:
        reply: dict[str, Any] = {"v": 1, "type": "ack", "id": message.id, **await _act(message, account_id, technician_id)}
    except (DomainError, ValueError, ValidationError) as exc:
        reply = _refusal(message, exc)  # stored below: a retry gets the same answer
    except Exception as exc:
        with contextlib.suppress(RedisError, OSError):  # let the phone's retry act
            await redis.delete(replay_key)
        return _failure(message, exc)
    with contextlib.suppress(RedisError, OSError):  # the acted-on reply stands; a retry may act again
        await redis.set(replay_key, json.dumps(reply, default=str), ex=REPLAY_TTL_S)
    return reply


async def _fix_contexts(technician_ids: Sequence[uuid.UUID]) -> list[tuple[str | None, set[str]]]:
    """Mark each technician present and read his city and active orders: the concurrent fixes of
    one loop iteration in one pipeline."""
    stale_after_s = get_settings().stale_after_s
    async with get_redis().pipeline(transaction=False) as pipe:
        for technician_id in technician_ids:
            pipe.set(presence_key(technician_id), "1", ex=stale_after_s)
            pipe.get(technician_city_key(str(technician_id)))
            pipe.smembers(active_orders_key(technician_id))
        replies = await pipe.execute()
    return [(replies[i + 1], replies[i + 2]) for i in range(0, len(replies), 3)]


_fix_context = Coalesced(_fix_contexts)


async def _persist_positions(copies: Sequence[PositionCopy]) -> list[None]:
    """The PostgreSQL copies due among the fixes of one loop iteration, in one transaction."""
    async with session_scope() as session:
        await record_last_positions(session, copies)
    return [None] * len(copies)


_persist = Coalesced(_persist_positions)


async def _handle_fix(message: protocol.Location, technician_id: uuid.UUID) -> dict[str, Any]:
    """A position fix needs no replay guard (a fix sent twice is judged by its time stamp, the
    second one stale), so it costs two round trips to Redis, each shared with the fixes arriving
    at the same moment: presence, city and active orders in one pipeline, then the index's
    batched script."""
    try:
        city, order_ids = await _fix_context(technician_id)
        return {"v": 1, "type": "ack", "id": message.id, **await _locate(message, technician_id, city, order_ids)}
    except (DomainError, ValueError, ValidationError) as exc:
        return _refusal(message, exc)
    except Exception as exc:
        return _failure(message, exc)


def _refusal(message: Any, exc: DomainError | ValueError | ValidationError) -> dict[str, Any]:
    """The final answer to a message the domain refused or that carried invalid input."""
    if isinstance(exc, DomainError):
        return {"v": 1, "type": "error", "id": message.id, "code": exc.slug, "detail": exc.detail, **exc.extra}
    # a malformed uuid or work report in a well-typed message
    return {"v": 1, "type": "error", "id": message.id, "code": "invalid-input", "detail": str(exc)}


def _failure(message: Any, exc: Exception) -> dict[str, Any]:
    """A message that could not be acted on: a service that is unavailable (the phone retries),
    or anything else, counted and logged."""
    service = unavailable_service(exc)
    if service is None:
        log.error("ws.message_failed", type=message.type, exc_info=exc)
        WS_REJECTED.labels("internal").inc()
        return {"v": 1, "type": "error", "id": message.id, "code": "internal-error", "detail": "try again"}
    log.warning("ws.message_unavailable", type=message.type, service=service)
    WS_REJECTED.labels("unavailable").inc()
    return _unavailable(message.id, service)


async def _resync(sender: Sender, technician_id: uuid.UUID) -> None:
    """The hub lost pushes meanwhile: the open offers and current jobs again."""
    try:
        await _resume(sender, technician_id)
    except (WebSocketDisconnect, RuntimeError):
        raise
    except Exception as exc:  # the phone's own resume after its next reconnect recovers it
        log.warning("ws.technician_resync_failed", error=type(exc).__name__)


@router.websocket("/v1/ws/technician")
async def technician_socket(websocket: WebSocket) -> None:
    claims = await authenticate(websocket, "technician")
    if claims is None:
        return
    principal = claims.principal
    try:
        async with session_scope() as session:
            technician = await technician_for_account(session, principal.account_id)
    except NotFound:
        await websocket.close(CLOSE_FORBIDDEN, "no technician profile")
        return
    sender = Sender(websocket)
    redis = get_redis()
    channel = account_channel(principal.account_id)
    queue = await hub(redis).join(channel)
    relay = asyncio.create_task(forward(queue, sender, resync=lambda: _resync(sender, technician.id)))
    inbox = Inbox(websocket, sender, claims.expires_at)
    WS_CONNECTIONS.labels("technician").inc()
    try:
        await _resume(sender, technician.id)
        while (raw := await inbox.next_text()) is not None:
            reply = await _handle(raw, principal.account_id, technician.id, sender)
            if reply is not None:
                await sender.send(reply)
    except (WebSocketDisconnect, WebSocketDisconnected):  # the phone left, or the socket closed meanwhile
        pass
    except Exception:  # never a silent drop: the phone sees a close frame and reconnects
        log.exception("ws.technician_failed")
        await sender.close(CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        WS_CONNECTIONS.labels("technician").dec()
        relay.cancel()
        await hub(redis).leave(channel, queue)
        with contextlib.suppress(RedisError, OSError):  # the key expires by itself
            await redis.delete(presence_key(technician.id))
