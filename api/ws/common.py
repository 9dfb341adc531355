"""Shared websocket plumbing: authentication at connect, a send lock, throttling, metrics."""

import asyncio
import json
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from starlette.websockets import WebSocket, WebSocketDisconnect

from dispatch.errors import AuthenticationFailed
from dispatch.security import Principal, decode_token

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


async def forward(pubsub: PubSub, sender: Sender, accept: Callable[[dict], bool] | None = None) -> None:
    """Relay Redis pub/sub messages to the socket until the socket or the subscription ends."""
    try:
        async for item in pubsub.listen():
            if item.get("type") != "message":
                continue
            data = item["data"]
            if accept is not None and not accept(json.loads(data)):
                continue
            await sender.send(data)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        return


async def subscribe(redis: Redis, *channels: str) -> PubSub:
    pubsub = redis.pubsub()
    await pubsub.subscribe(*channels)
    return pubsub
