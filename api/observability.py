"""Structured JSON logs with a request id, Prometheus metrics, and a request body size limit."""

import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_LATENCY = Histogram(
    "gasdispatch_http_request_duration_seconds", "HTTP request latency by route", ["method", "route", "status"]
)
ORDERS_BY_STATE = Gauge("gasdispatch_orders", "Orders by state", ["status"])
REJECTED_INPUT = Counter("gasdispatch_rejected_input_total", "Rejected inputs by channel and reason", ["channel", "reason"])


def _route_template(request: Request) -> str:
    """The matched route's template (`/v1/orders/{order_id}`): bounded label cardinality."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    if len(request_id) > 100 or not request_id.isascii():
        request_id = uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response = await call_next(request)
    elapsed = time.perf_counter() - started
    route = _route_template(request)
    REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(elapsed)
    response.headers["x-request-id"] = request_id
    # Paths carry only opaque ids; query strings and headers (tokens) are never logged.
    structlog.get_logger("api.access").info(
        "request", method=request.method, route=route, status=response.status_code, ms=round(elapsed * 1000, 2)
    )
    return response


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class BodySizeLimit:
    """Refuses bodies over the limit with 413 before the route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b'{"type":"/problems/payload-too-large","title":"Payload too large","status":413,"detail":"request body too large"}'
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
