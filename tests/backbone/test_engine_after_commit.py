"""Pushes deferred inside a savepoint that rolled back never go out; the rest do."""

import uuid

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.events import drain, publish, subscribe, unsubscribe


async def test_a_rolled_back_savepoint_drops_its_pushes_and_those_of_savepoints_inside_it(session: AsyncSession) -> None:
    sent: list[str] = []

    def push(name: str):  # noqa: ANN202
        async def send() -> None:
            sent.append(name)
        return send

    after_commit.defer(session, push("outer"))
    with pytest.raises(RuntimeError):
        async with session.begin_nested():
            after_commit.defer(session, push("inner"))
            async with session.begin_nested():
                after_commit.defer(session, push("innermost, released"))
            raise RuntimeError("handler failed")
    async with session.begin_nested():
        after_commit.defer(session, push("kept"))
    await after_commit.run(session)
    assert sent == ["outer", "kept"]


async def test_a_failing_delivery_sends_none_of_its_pushes(session: AsyncSession) -> None:
    sent: list[str] = []

    async def announces_then_fails(s: AsyncSession, payload: dict) -> None:
        async def send() -> None:
            sent.append("failing")
        after_commit.defer(s, send)
        raise RuntimeError("card declined")

    async def announces(s: AsyncSession, payload: dict) -> None:
        async def send() -> None:
            sent.append("ok")
        after_commit.defer(s, send)

    subscribe("test.engine_push", announces_then_fails, subscriber="failing")
    subscribe("test.engine_push", announces, subscriber="ok")
    try:
        await publish(session, "test.engine_push", {"order_id": str(uuid.uuid4())})
        for _ in range(3):
            await drain(session)
        await after_commit.run(session)
        assert sent == ["ok"]
    finally:
        unsubscribe("test.engine_push", announces_then_fails)
        unsubscribe("test.engine_push", announces)
