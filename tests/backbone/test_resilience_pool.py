"""Pooled PostgreSQL connections the server closed are replaced at checkout, without a ping."""

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from kit.db import session_scope


async def _backend_pid() -> int:
    async with session_scope() as session:
        return (await session.exec(text("SELECT pg_backend_pid()"))).one()[0]


async def test_a_pooled_connection_whose_backend_was_terminated_is_replaced(engine: AsyncEngine) -> None:
    await engine.dispose()  # an empty pool: the next two scopes take turns on one connection
    first = await _backend_pid()
    assert await _backend_pid() == first
    outside = create_async_engine(engine.url, poolclass=NullPool)  # not the pool's own connection
    async with outside.connect() as other:
        assert (await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})).scalar()
    await outside.dispose()
    await asyncio.sleep(0.2)  # the server's close reaches the idle connection's socket
    assert await _backend_pid() != first  # no error: the pool swapped the dead connection out
