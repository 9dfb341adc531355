"""The HTTP application: settings, logging, middleware, routers, error mapping. `app.asgi` composes it
with the event handlers and the embedded worker."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors, openapi
from api.observability import BodySizeLimit, request_context
from api.routers import (
    auth, customers, field, health, matching, notifications, orders, ratings, settlement, stations, technicians,
    telemetry, web,
)
from api.routers import safety
from api.routers import ops
from api.routers import alerts
from api.routers import jobs
from api.routers import scheduling
from api.routers import push
from api.routers import job_address
from api.ws import customer as customer_ws
from api.ws import technician as technician_ws
from kit.config import get_settings
from kit import heap
from kit.db import get_engine
from kit.logs import configure_logging
from kit.preflight import check_connections
from kit.redis import get_redis


Background = Callable[[], AbstractAsyncContextManager[None]]


def build_app(background: Background | None = None) -> FastAPI:
    """The API; `background` runs beside it for the application's lifetime (the embedded worker)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_connections()  # a process that cannot reach them never reports itself live
        heap.settle()
        if background is None:
            yield
        else:
            async with background():
                yield
        await get_redis().aclose()
        await get_engine().dispose()

    settings = get_settings()
    configure_logging()
    app = FastAPI(
        title="gasdispatch",
        version="0.1.0",
        description="A dispatch marketplace for city gas utilities: certified technicians, repairs, "
        "inspections, meter alarms and settlement. Errors are application/problem+json.",
        lifespan=lifespan,
    )
    errors.install(app)
    openapi.install(app)
    app.middleware("http")(request_context)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    # matching before technicians: /v1/technicians/nearby must win over /v1/technicians/{id}.
    for module in (health, auth, customers, orders, matching, ratings, field, technicians, stations, telemetry, settlement,
                   notifications, safety, technician_ws, customer_ws, web):
        app.include_router(module.router)
    app.include_router(ops.router)  # the operations console's routes and its socket
    app.include_router(alerts.router)  # operations alerts (escalation)
    app.include_router(jobs.router)  # dead letters of the event backbone
    app.include_router(scheduling.router)  # appointments and shifts
    app.include_router(push.router)  # Web Push subscriptions (offer alerts)
    app.include_router(job_address.router)  # a job's address for its technician, calls through the relay
    return app
