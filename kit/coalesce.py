"""Requests made in the same event-loop iteration, served by one batched call: a hot path (a
position fix every few seconds from every phone) then pays one Redis round trip per batch
instead of one per request."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Reply = TypeVar("Reply")


class Coalesced(Generic[Request, Reply]):
    """`await coalesced(request)`: queued, and once per loop iteration every queued request goes
    to `serve` in one call, whose replies come back in order (`max_batch` at most per call). If
    `serve` fails, every request of that call sees the error."""

    def __init__(self, serve: Callable[[Sequence[Request]], Awaitable[Sequence[Reply]]], max_batch: int = 500) -> None:
        self._serve, self._max_batch = serve, max_batch
        self._pending: list[tuple[Request, asyncio.Future[Reply]]] = []
        self._scheduled = False

    async def __call__(self, request: Request) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        for start in range(0, len(batch), self._max_batch):
            asyncio.ensure_future(self._run(batch[start:start + self._max_batch]))

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Reply]]]) -> None:
        try:
            replies = await self._serve([request for request, _ in batch])
        except Exception as exc:  # each caller answers for its own request
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)
