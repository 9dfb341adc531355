"""The ASGI entry point: the API with every package's event handlers and, when configured,
the embedded worker."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.app import build_app
from app import worker
from app.wiring import register_handlers
from kit.config import get_settings


@asynccontextmanager
async def embedded_worker() -> AsyncIterator[None]:
    stop = asyncio.Event()
    periodic = asyncio.create_task(worker.run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await periodic


def create_app() -> FastAPI:
    register_handlers()
    return build_app(embedded_worker if get_settings().embedded_worker else None)
