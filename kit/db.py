"""Async engine and session factory; the naming convention Alembic autogenerate relies on."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache

from sqlalchemy import MetaData, event, func
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.config import get_settings

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


@lru_cache
def get_engine() -> AsyncEngine:
    settings = get_settings()
    engine = create_async_engine(settings.database_url, pool_size=settings.db_pool_size)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection, connection_record, connection_proxy) -> None:  # noqa: ANN001
    """Hand out no pooled connection the server has closed (a restart, a terminated backend):
    asyncpg sees the socket close on its own, so this costs no round trip, where `pool_pre_ping`
    cost three (BEGIN, a ping, ROLLBACK) on every checkout. The pool replaces the connection and
    tries again; a connection that breaks between checks fails its statement, which invalidates
    the pool (SQLAlchemy's disconnect handling) and answers 503 or retries the job."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


@lru_cache
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(), class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """A unit of work for workers and CLI: commit on success, roll back on error."""
    async with get_sessionmaker()() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            after_commit.discard(session)
            raise
        await after_commit.run(session)


async def database_now(session: AsyncSession) -> datetime:
    """The one clock every process agrees on: PostgreSQL's, not this process's."""
    return (await session.exec(select(func.clock_timestamp()))).one()
