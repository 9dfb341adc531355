"""kit.coalesce: requests of one loop iteration served by one call, replies in order, a failure
reaching every request of its call and no other."""

import asyncio

import pytest

from kit.coalesce import Coalesced


async def test_concurrent_requests_share_calls_of_bounded_size_and_get_their_own_replies() -> None:
    calls: list[list[int]] = []

    async def double(requests: list[int]) -> list[int]:
        calls.append(list(requests))
        await asyncio.sleep(0)
        return [2 * r for r in requests]

    coalesced = Coalesced(double, max_batch=3)
    assert await asyncio.gather(*(coalesced(i) for i in range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
    assert await coalesced(9) == 18 and calls[-1] == [9]  # a later request: a call of its own


async def test_a_failed_call_fails_its_own_requests_only() -> None:
    async def fragile(requests: list[int]) -> list[int]:
        if 13 in requests:
            raise ConnectionError("redis went away")
        return requests

    coalesced = Coalesced(fragile, max_batch=2)
    outcomes = await asyncio.gather(*(coalesced(i) for i in (12, 13, 14, 15)), return_exceptions=True)
    assert [type(o).__name__ if isinstance(o, Exception) else o for o in outcomes] == [
        "ConnectionError", "ConnectionError", 14, 15]
    with pytest.raises(ConnectionError):
        await coalesced(13)
