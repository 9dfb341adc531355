"""Waiting on a websocket in tests: the next message a predicate accepts."""

import asyncio
import json


async def recv_until(ws, predicate, timeout: float = 10.0) -> dict:  # noqa: ANN001
    """The next message on the socket that `predicate` accepts (others are skipped)."""
    async def loop() -> dict:
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message

    return await asyncio.wait_for(loop(), timeout)
