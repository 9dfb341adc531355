"""Structured JSON logs with a request id, Prometheus metrics, and a request body size limit."""

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import unexpected

REQUEST_LATENCY = Histogram(
    "gasdispatch_http_request_duration_seconds", "HTTP request latency by route", ["method", "route", "status"]
)
ORDERS_BY_STATE = Gauge("gasdispatch_orders", "Orders by city and state", ["city", "status"])
OFFERS_BY_STATE = Gauge("gasdispatch_offers", "Offers by city and state", ["city", "status"])
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
    try:
        response = await call_next(request)
    except Exception as exc:  # answered here so that failures are timed, counted and logged like the rest
        response = unexpected(request, exc)
    elapsed = time.perf_counter() - started
    route = _route_template(request)
    REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(elapsed)
    response.headers["x-request-id"] = request_id
    # Paths carry only opaque ids; query strings and headers (tokens) are never logged.
    structlog.get_logger("api.access").info(
        "request", method=request.method, route=route, status=response.status_code, ms=round(elapsed * 1000, 2)
    )
    return response


async def refresh_marketplace_gauges(session: AsyncSession) -> None:
    """Orders and offers by city and state, counted at scrape time."""
    for gauge, table in ((ORDERS_BY_STATE, "dispatch_order"), (OFFERS_BY_STATE, "matching_offer")):
        rows = (await session.exec(text(f"SELECT city_id, status, count(*) FROM {table} GROUP BY city_id, status"))).all()
        gauge.clear()
        for city, status, count in rows:
            gauge.labels(city, status).set(count)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class BodySizeLimit:
    """Guards request bodies before any route reads them: over the limit is 413 (declared or,
    when chunked, counted), and a JSON body holding a NUL character is 422, because PostgreSQL
    cannot store one in text or jsonb; refusing it here covers every route at once."""

    # The escape for NUL after an even run of backslashes (an odd run makes it plain text).
    _NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_refusal(send, _BodyRefused(*_TOO_LARGE))
            return
        content_type = headers.get(b"content-type", b"").lower()
        scan = not content_type or b"json" in content_type
        received, carry = 0, b""
        refused: _BodyRefused | None = None

        async def guarded_receive() -> Message:
            nonlocal received, carry, refused
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    refused = _BodyRefused(*_TOO_LARGE)
                elif scan:
                    text = carry + chunk
                    if self._NUL_ESCAPE.search(text):
                        refused = _BodyRefused(*_NUL)
                    carry = _unfinished_escape(text)
                if refused is not None:
                    raise refused  # an HTTPException, so FastAPI's body parsing does not turn it into a 400
            return message

        started = answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal started, answered
            if refused is not None and not started:
                # Whatever the app made of the refusal, the client gets the refusal itself.
                started = answered = True
                await _send_refusal(send, refused)
            elif not answered:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _BodyRefused as exc:
            if not started:
                await _send_refusal(send, exc)


def _unfinished_escape(text: bytes) -> bytes:
    """The tail that could begin an escape finished by the next chunk: the last run of
    backslashes and what follows it, when fewer than the 5 bytes of `u0000` follow."""
    last = text.rfind(b"\\")
    if last == -1 or len(text) - last - 1 >= 5:
        return b""
    head = text[:last + 1]
    return text[len(head.rstrip(b"\\")):]


class _BodyRefused(HTTPException):
    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(status, detail)
        self.slug, self.title = slug, title


_TOO_LARGE = (413, "payload-too-large", "Payload too large", "request body too large")
_NUL = (422, "nul-character", "Unprocessable content", "text may not contain the NUL character (\\u0000)")


async def _send_refusal(send: Send, refusal: _BodyRefused) -> None:
    body = json.dumps({"type": f"/problems/{refusal.slug}", "title": refusal.title, "status": refusal.status_code,
                       "detail": refusal.detail}).encode()
    await send({"type": "http.response.start", "status": refusal.status_code,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
