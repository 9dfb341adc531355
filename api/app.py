"""The composition root: settings, logging, middleware, routers, error mapping."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.observability import BodySizeLimit, configure_logging, request_context
from api.routers import auth, customers, health, orders, stations, technicians
from dispatch.config import get_settings
from dispatch.db import get_engine
from dispatch.redis import get_redis


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
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
    errors.install(app)
    app.middleware("http")(request_context)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    for module in (health, auth, customers, orders, technicians, stations):
        app.include_router(module.router)
    return app
