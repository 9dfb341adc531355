"""Shared websocket plumbing: authentication (header or first message), frame screening
(throttle, size, binary, nesting), expiry, a send lock, metrics."""

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.ws import protocol
from dispatch.accounts import authenticate as authenticate_token
from dispatch.errors import AuthenticationFailed
from dispatch.security import AccessClaims
from kit.config import get_settings
from kit.db import session_scope
from kit.redis import pubsub_client

log = structlog.get_logger(__name__)
WS_CONNECTIONS = Gauge("gasdispatch_ws_connections", "Open websockets by kind", ["kind"])
WS_MESSAGES = Counter("gasdispatch_ws_messages_total", "Websocket client messages by type", ["type"])
WS_REJECTED = Counter("gasdispatch_ws_rejected_total", "Websocket client messages rejected, by reason", ["reason"])

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INTERNAL_ERROR = 1011
AUTH_TIMEOUT_S = 10.0
# Real messages are two or three levels deep; deeper ones are refused before validation.
MAX_JSON_DEPTH = 16


def load_json(raw: str) -> Any:
    """json.loads, with too-deep nesting as a ValueError: a RecursionError would escape every
    handler and drop the socket without a close frame."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise ValueError("nested too deeply")
                stack.append((child, depth + 1))
    return value


async def authenticate(websocket: WebSocket, *roles: str) -> AccessClaims | None:
    """The bearer token comes in the Authorization header (native clients) or, as browsers cannot
    set headers on a websocket, in the first message, {"v": 1, "type": "auth", "id": ..., "token": ...},
    answered with an ack. Never in the URL, where logs and proxies would keep it. The account is
    checked as on every REST call. Closes with 4401 / 4403 and returns None when refused."""
    await websocket.accept()
    header = websocket.headers.get("authorization", "")
    message_id = None
    try:
        if header.lower().startswith("bearer "):
            token = header[7:]
        else:
            message_id, token = await _first_message_token(websocket)
        async with session_scope() as session:
            claims = await authenticate_token(session, token)
    except WebSocketDisconnect:
        return None
    except AuthenticationFailed:
        await websocket.close(CLOSE_UNAUTHENTICATED, "authentication required")
        return None
    if claims.principal.role not in roles:
        await websocket.close(CLOSE_FORBIDDEN, "forbidden")
        return None
    if message_id is not None:
        await websocket.send_text(json.dumps({"v": 1, "type": "ack", "id": message_id, "expires_at": claims.expires_at.isoformat()}))
    return claims


async def _first_message_token(websocket: WebSocket) -> tuple[str, str]:
    try:
        frame = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT_S)
    except TimeoutError as exc:
        raise AuthenticationFailed("no auth message") from exc
    if frame["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(frame.get("code", 1000))
    raw = frame.get("text") or ""
    try:
        if len(raw.encode()) > get_settings().ws_max_message_bytes:
            raise ValueError("message too large")
        message = protocol.Auth.model_validate(load_json(raw))
    except ValueError as exc:  # pydantic's ValidationError is one too
        raise AuthenticationFailed("the first message must be auth") from exc
    return message.id, message.token


class Sender:
    """Serialises sends (and the close) from the receive loop and the fan-out task on one socket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, payload: dict | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str, ensure_ascii=False)
        async with self._lock:
            await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        async with self._lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client left first
                    await self.websocket.close(code, reason)


class Throttle:
    """Token bucket: `rate` messages a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Inbox:
    """A socket's incoming frames, screened: at most `ws_rate_per_s` a second, text only, no larger
    than `ws_max_message_bytes` (uvicorn's ws_max_size is the same, so larger frames never reach
    here when served by `gasdispatch serve`); refusals are answered and counted, the socket stays.
    It ends when the client leaves or the token expires (closed with 4401: refresh, reconnect)."""

    def __init__(self, websocket: WebSocket, sender: Sender, expires_at: datetime) -> None:
        settings = get_settings()
        self.websocket, self.sender, self.expires_at = websocket, sender, expires_at
        self.max_bytes = settings.ws_max_message_bytes
        self.rate = settings.ws_rate_per_s
        self.throttle = Throttle(settings.ws_rate_per_s, settings.ws_burst)

    async def next_text(self) -> str | None:
        while True:
            remaining = (self.expires_at - datetime.now(timezone.utc)).total_seconds()
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    frame = await self.websocket.receive()
            except TimeoutError:
                await self.sender.close(CLOSE_UNAUTHENTICATED, "token expired")
                return None
            if frame["type"] == "websocket.disconnect":
                return None
            refusal = self._refusal(frame)
            if refusal is None:
                return frame["text"]
            await self.sender.send(refusal)

    def _refusal(self, frame: dict) -> dict | None:
        if not self.throttle.allow():
            WS_REJECTED.labels("throttled").inc()
            return {"v": 1, "type": "error", "id": None, "code": "throttled",
                    "detail": f"more than {self.rate:g} messages a second"}
        raw = frame.get("text")
        if raw is None:
            WS_REJECTED.labels("binary").inc()
            return {"v": 1, "type": "error", "id": None, "code": "invalid-input", "detail": "text frames only"}
        if len(raw.encode()) > self.max_bytes:
            WS_REJECTED.labels("too_large").inc()
            return {"v": 1, "type": "error", "id": None, "code": "invalid-input", "detail": "message too large"}
        return None


# Put in every socket's queue after the hub lost its subscription and got it back: pushes
# published meanwhile are gone, so each socket resends what its client may have missed.
RESYNC = "resync"
HUB_FIRST_PAUSE_S = 0.25
HUB_MAX_PAUSE_S = 10.0
HUB_RECONNECTS = Counter("gasdispatch_ws_hub_resubscribes_total", "Times the socket hub lost Redis pub/sub and resubscribed")


class _TrackedPubSub(PubSub):
    """Counts redis-py's own reconnects (it resubscribes by itself inside a read), which the hub
    must hear about: messages published while the connection was down were lost."""

    reconnects = 0

    async def on_connect(self, connection) -> None:  # noqa: ANN001
        self.reconnects += 1
        await super().on_connect(connection)


class Hub:
    """One Redis pub/sub connection per process, shared by every socket it serves.

    A connection per socket would exhaust the Redis pool (and Redis) at a few hundred
    phones; here each channel is subscribed once, with a count of local listeners, and one
    reader task hands messages to the sockets' queues. When Redis goes away the reader keeps
    trying (backoff doubling to HUB_MAX_PAUSE_S), resubscribes every channel on a fresh
    connection and tells each socket (RESYNC); sockets never see the error.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pubsub: _TrackedPubSub | None = None
        self._seen_reconnects = 0
        self._reader: asyncio.Task | None = None
        self._listeners: dict[str, set[asyncio.Queue[str]]] = {}
        self._lock = asyncio.Lock()

    async def join(self, channel: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
        async with self._lock:
            fresh = channel not in self._listeners
            self._listeners.setdefault(channel, set()).add(queue)
            # Subscribed before the socket is told anything, so no later push can slip by.
            try:
                if self._reader is None or self._reader.done():
                    if self._pubsub is None:
                        await self._open()
                    self._reader = asyncio.create_task(self._read())
                elif fresh and self._pubsub is not None:
                    await self._pubsub.subscribe(channel)
            except (RedisError, OSError) as exc:  # the reader reconnects and subscribes it
                log.warning("ws.hub_subscribe_failed", error=str(exc))
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read())
        return queue

    async def leave(self, channel: str, queue: asyncio.Queue[str]) -> None:
        async with self._lock:
            listeners = self._listeners.get(channel)
            if listeners is None:
                return
            listeners.discard(queue)
            if not listeners:
                del self._listeners[channel]
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):  # a lost connection forgets it anyway
                        await self._pubsub.unsubscribe(channel)

    async def _open(self) -> None:
        """A fresh pub/sub connection subscribed to every channel (called under the lock)."""
        pubsub = _TrackedPubSub(self.redis.connection_pool)
        try:
            await pubsub.subscribe(*self._listeners)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        self._pubsub, self._seen_reconnects = pubsub, 0

    async def _connect(self) -> None:
        async with self._lock:
            if self._listeners:
                await self._open()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # the connection is broken already
                await pubsub.aclose()

    def _broadcast(self, data: str) -> None:
        for listeners in list(self._listeners.values()):
            for queue in list(listeners):
                self._offer(queue, data)

    @staticmethod
    def _offer(queue: asyncio.Queue[str], data: str) -> None:
        if queue.full():  # a stuck socket loses pushes, never the others; reconnect resends state
            WS_REJECTED.labels("slow_consumer").inc()
            return
        queue.put_nowait(data)

    async def _read(self) -> None:
        pause, lost = HUB_FIRST_PAUSE_S, self._pubsub is None
        while True:
            if not self._listeners:
                await self._drop()
                if not self._listeners:  # nobody joined while the connection closed
                    return
            try:
                if self._pubsub is None:
                    await self._connect()
                    if self._pubsub is None:
                        continue
                item = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                log.warning("ws.hub_lost", error=str(exc), retry_in_s=round(pause, 2))
                await self._drop()
                lost = True
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, HUB_MAX_PAUSE_S)
                continue
            if lost or self._pubsub.reconnects != self._seen_reconnects:
                self._seen_reconnects = self._pubsub.reconnects
                lost, pause = False, HUB_FIRST_PAUSE_S
                HUB_RECONNECTS.inc()
                log.info("ws.hub_resubscribed", channels=len(self._listeners))
                self._broadcast(RESYNC)
            if item is None or item.get("type") not in ("message", "pmessage"):
                continue
            for queue in list(self._listeners.get(item["channel"], ())):
                self._offer(queue, item["data"])


_hubs: dict[int, Hub] = {}


def hub(redis: Redis) -> Hub:
    return _hubs.setdefault(id(redis), Hub(pubsub_client(redis)))


async def forward(queue: asyncio.Queue[str], sender: Sender, relay: Callable[[str], Awaitable[None]] | None = None,
                  resync: Callable[[], Awaitable[None]] | None = None) -> None:
    """Relay a socket's share of the hub's messages until the socket ends: each through `relay`
    (default: sent as is), and `resync` after the hub resubscribed. A failure closes the socket
    with 1011, so that the client reconnects instead of silently hearing nothing."""
    try:
        while True:
            data = await queue.get()
            if data == RESYNC:
                if resync is not None:
                    await resync()
            elif relay is not None:
                await relay(data)
            else:
                await sender.send(data)
    except (WebSocketDisconnect, ConnectionError):
        return
    except RuntimeError:  # sending on a socket that closed meanwhile
        return
    except Exception:
        log.exception("ws.relay_failed")
        await sender.close(CLOSE_INTERNAL_ERROR, "internal error")
