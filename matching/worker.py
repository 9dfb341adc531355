"""The matching loop: relay events, lapse expired offers, run a batch, sweep overdue orders.

One matcher per city holds a lease in Redis; a crashed matcher's lease runs out within a few
seconds and another process takes over. Nothing lives only in this process's memory.
"""

import asyncio
import os
import socket
from datetime import datetime, timezone

import structlog

from dispatch.config import get_settings
from dispatch.db import session_scope
from dispatch.events import relay_once
from dispatch.redis import get_redis
from matching.service import expire_offers, geo_index, run_batch, sweep_unfulfilled

log = structlog.get_logger(__name__)
LEASE_MS = 5000


async def _hold_lease(city: str, holder: str) -> bool:
    redis = get_redis()
    key = f"matching:lease:{city}"
    if await redis.set(key, holder, nx=True, px=LEASE_MS):
        return True
    if await redis.get(key) == holder:
        await redis.pexpire(key, LEASE_MS)
        return True
    return False


async def tick(now: datetime | None = None) -> dict[str, int]:
    """One round, each step in its own transaction so one failure does not block the others."""
    now = now or datetime.now(timezone.utc)
    index = geo_index(get_redis())
    counts = {}
    async with session_scope() as session:
        counts["events"] = await relay_once(session)
    async with session_scope() as session:
        counts["expired"] = await expire_offers(session, index, now)
    async with session_scope() as session:
        counts["offers"] = len(await run_batch(session, index, now))
    async with session_scope() as session:
        counts["unfulfilled"] = await sweep_unfulfilled(session, now)
    async with session_scope() as session:
        counts["events"] += await relay_once(session)
    return counts


async def run_forever(stop: asyncio.Event | None = None) -> None:
    settings = get_settings()
    holder = f"{socket.gethostname()}:{os.getpid()}"
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            if await _hold_lease(settings.city, holder):
                counts = await tick()
                if any(counts.values()):
                    log.info("matching.tick", **counts)
        except Exception:  # the loop must survive a bad round; the next one retries
            log.exception("matching.tick_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.batch_window_s)
        except TimeoutError:
            pass
