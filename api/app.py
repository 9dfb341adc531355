"""The composition root: settings, logging, middleware, routers, error mapping."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors, openapi, worker
from api.observability import BodySizeLimit, request_context
from api.routers import (
    auth, customers, field, health, matching, notifications, orders, ratings, settlement, stations, technicians,
    telemetry, web,
)
from api.routers import safety
from api.routers import ops
from api.routers import alerts
from api.ws import customer as customer_ws
from api.wiring import register_handlers
from api.ws import technician as technician_ws
from dispatch.config import get_settings
from dispatch.db import get_engine
from dispatch.logs import configure_logging
from dispatch.redis import get_redis


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    stop = asyncio.Event()
    periodic = asyncio.create_task(worker.run_forever(stop)) if get_settings().embedded_worker else None
    yield
    stop.set()
    if periodic is not None:
        await periodic
    await get_redis().aclose()
    await get_engine().dispose()


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging()
    app = FastAPI(
        title="gasdispatch",
        version="0.1.0",
        description="A dispatch marketplace for city gas utilities: certified technicians, repairs, "
        "inspections, meter alarms and settlement. Errors are application/problem+json.",
        lifespan=lifespan,
    )
    register_handlers()
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
    return app
