"""Test infrastructure: real PostgreSQL/PostGIS and Redis started by scripts/test.sh.

The schema is built by `alembic upgrade head` once per run; each test runs inside a
transaction rolled back at the end (the API's commits become savepoints); Redis is flushed
between tests.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

ROOT = Path(__file__).resolve().parent.parent

if "GASDISPATCH_DATABASE_URL" not in os.environ:
    pytest.exit("run the suite with scripts/test.sh (it starts PostgreSQL, Redis and the Stripe server)", 2)
os.environ.setdefault("GASDISPATCH_ENVIRONMENT", "test")


@pytest.fixture(scope="session")
def migrated_database() -> str:
    from alembic import command

    from app.cli import alembic_config

    command.upgrade(alembic_config(), "heads")
    return os.environ["GASDISPATCH_DATABASE_URL"]


@pytest.fixture(scope="session", autouse=True)
def event_handlers() -> None:
    """The same event subscriptions the app makes, for tests that drain the outbox directly."""
    from app.wiring import register_handlers

    register_handlers()


@pytest.fixture(scope="session")
async def engine(migrated_database: str):  # noqa: ANN201
    from kit.db import get_engine

    yield get_engine()
    await get_engine().dispose()


@pytest.fixture
async def connection(engine) -> AsyncIterator[AsyncConnection]:  # noqa: ANN001
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        if outer.is_active:
            await outer.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False) as s:
        yield s


@pytest.fixture
async def redis():  # noqa: ANN201
    from kit.redis import get_redis

    client = get_redis()
    await client.flushdb()
    yield client
    await client.flushdb()


@pytest.fixture
async def app(session: AsyncSession, redis):  # noqa: ANN001, ANN201
    from app.asgi import create_app
    from api.deps import get_session

    application = create_app()

    # Each request runs in a savepoint: an error rolls back only that request's changes and
    # leaves the test's own objects loaded.
    async def test_session() -> AsyncIterator[AsyncSession]:
        nested = await session.begin_nested()
        try:
            yield session
            await nested.commit()
        except BaseException:
            # A failed flush leaves this savepoint inactive but current: roll it back. A route with
            # two sessions (a CSV stream) may have closed it through the other one already.
            if nested.is_active or session.sync_session.get_nested_transaction() is nested.sync_transaction:
                await nested.rollback()
            raise

    application.dependency_overrides[get_session] = test_session
    return application


@pytest.fixture
async def client(app) -> AsyncIterator[AsyncClient]:  # noqa: ANN001
    async with AsyncClient(transport=ASGITransport(app=app, raise_app_exceptions=False),
                           base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def committed_sessions(engine):  # noqa: ANN001, ANN201
    """For tests that need real commits (races, several connections, worker processes):
    a session factory on the test database, emptied of marketplace rows afterwards."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from sqlalchemy.exc import DBAPIError

    factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    yield factory
    # API workers started by the test may still be running (their fixture ends after this one)
    # and can deadlock the TRUNCATE: try again, a bounded number of times.
    for attempt in range(10):
        try:
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                await conn.execute(text(
                    "TRUNCATE dispatch_account, dispatch_service_station, dispatch_outbox, settlement_settlement,"
                    " settlement_clawback, settlement_payment, settlement_payment_attempt RESTART IDENTITY CASCADE"))
            return
        except DBAPIError:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_worker(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """start(**env) -> base URL of a fresh API worker process (uvicorn) on loopback, sharing the
    test database and Redis; all are stopped at the end."""
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        from kit.config import get_settings

        port = _free_port()
        environment = {**os.environ, "GASDISPATCH_EMBEDDED_WORKER": "false", **env}
        log = open(tmp_path / f"worker-{port}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.asgi:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--ws-max-size", str(get_settings().ws_max_message_bytes),
             "--ws-per-message-deflate", "false"],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # a loaded 2-core machine takes ~20 s to import the app
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"worker on {port} did not start: {(tmp_path / f'worker-{port}.log').read_text()}")

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
