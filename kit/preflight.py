"""Start-up checks: a process that cannot reach its database or Redis says so and stops, instead
of serving errors (or reporting itself live) until someone reads its logs."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from kit.config import get_settings
from kit.redis import cluster_nodes

FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 2.0


class UnreachableService(Exception):
    """`service` ("database" or "redis") could not be reached within the start-up timeout."""

    def __init__(self, service: str, address: str, reason: str) -> None:
        super().__init__(f"cannot reach the {service} at {address}: {reason}")
        self.service = service


def _database_address(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: show none of it, it may hold a password
        return "GASDISPATCH_DATABASE_URL"


def _redis_address(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


async def _database(url: str) -> None:
    # A private engine: the check may run on an event loop other than the one that serves.
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _redis(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return "no answer in time"
    return f"{type(error).__name__}: {error}"


async def _until_reachable(service: str, address: str, probe: Callable[[], Awaitable[None]], deadline: float) -> None:
    """Try `probe` with a growing pause (a service starting beside us gets a few seconds) until
    it answers or the deadline passes."""
    pause = FIRST_PAUSE_S
    while True:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                await probe()
            return
        except Exception as exc:  # any failure is retried until the deadline; the last one is reported
            error = exc
        if time.monotonic() + pause >= deadline:
            raise UnreachableService(service, address, _reason(error))
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE_S)


async def check_connections(timeout_s: float | None = None) -> None:
    """Raise UnreachableService naming the first of PostgreSQL and Redis not answering within
    `timeout_s` (default: settings.startup_timeout_s)."""
    settings = get_settings()
    deadline = time.monotonic() + (settings.startup_timeout_s if timeout_s is None else timeout_s)
    database_address = _database_address(settings.database_url)
    try:
        make_url(settings.database_url)
    except Exception:  # its text is not repeated: it may hold a password
        raise UnreachableService("database", database_address, "not a valid database URL") from None
    await _until_reachable("database", database_address, lambda: _database(settings.database_url), deadline)
    nodes = cluster_nodes(settings)
    redis_url = f"redis://{nodes[0][0]}:{nodes[0][1]}" if nodes else settings.redis_url
    await _until_reachable("redis", _redis_address(redis_url), lambda: _redis(redis_url), deadline)
