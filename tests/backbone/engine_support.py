"""Shared by the engine tests: an empty job queue, so that jobs left by other tests' committed
data do not run in these tests' workers."""

import pytest
from sqlalchemy import text


@pytest.fixture
async def empty_queue(engine):  # noqa: ANN001, ANN201
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE pgqueuer, pgqueuer_log"))
    yield
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE pgqueuer, pgqueuer_log"))
