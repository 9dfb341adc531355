"""Shared websocket plumbing: authentication at connect, a send lock, throttling, metrics."""

import asyncio
import json
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from starlette.websockets import WebSocket, WebSocketDisconnect

from dispatch.errors import AuthenticationFailed
from dispatch.security import Principal, decode_token

log = structlog.get_logger(__name__)
WS_CONNECTIONS = Gauge("gasdispatch_ws_connections", "Open websockets by kind", ["kind"])
WS_MESSAGES = Counter("gasdispatch_ws_messages_total", "Websocket client messages by type", ["type"])
WS_REJECTED = Counter("gasdispatch_ws_rejected_total", "Websocket client messages rejected, by reason", ["reason"])

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def authenticate(websocket: WebSocket, *roles: str) -> Principal | None:
    """Bearer token from the Authorization header or, for browsers, the access_token query
    parameter. Closes with 4401 / 4403 and returns None when refused."""
    header = websocket.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("access_token")
    await websocket.accept()
    try:
        if not token:
            raise AuthenticationFailed("a bearer token is required")
        principal = decode_token(token)
    except AuthenticationFailed:
        await websocket.close(CLOSE_UNAUTHENTICATED, "authentication required")
        return None
    if principal.role not in roles:
        await websocket.close(CLOSE_FORBIDDEN, "forbidden")
        return None
    return principal


class Sender:
    """Serialises sends from the receive loop and the fan-out task on one socket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, payload: dict | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str, ensure_ascii=False)
        async with self._lock:
            await self.websocket.send_text(text)


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


class Hub:
    """One Redis pub/sub connection per process, shared by every socket it serves.

    A connection per socket would exhaust the Redis pool (and Redis) at a few hundred
    phones; here each channel is subscribed once, with a count of local listeners, and one
    reader task hands messages to the sockets' queues.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task | None = None
        self._listeners: dict[str, set[asyncio.Queue[str]]] = {}
        self._lock = asyncio.Lock()

    async def join(self, channel: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
            if channel not in self._listeners:
                self._listeners[channel] = set()
                await self._pubsub.subscribe(channel)
            self._listeners[channel].add(queue)
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
                    await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        assert self._pubsub is not None
        while self._listeners:
            try:
                item = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (ConnectionError, RuntimeError) as exc:  # Redis went away: resubscribe and go on
                log.warning("ws.hub_reconnect", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if item is None:
                continue
            for queue in list(self._listeners.get(item["channel"], ())):
                if queue.full():  # a stuck socket loses pushes, never the others; reconnect resends state
                    WS_REJECTED.labels("slow_consumer").inc()
                    continue
                queue.put_nowait(item["data"])


_hubs: dict[int, Hub] = {}


def hub(redis: Redis) -> Hub:
    return _hubs.setdefault(id(redis), Hub(redis))


async def forward(queue: asyncio.Queue[str], sender: Sender, accept: Callable[[dict], bool] | None = None) -> None:
    """Relay a socket's share of the hub's messages until the socket ends."""
    try:
        while True:
            data = await queue.get()
            if accept is not None and not accept(json.loads(data)):
                continue
            await sender.send(data)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        return
