"""Moving-window rate limits in Redis (the `limits` library): one limiter per Redis pool, so the
app's connections are reused and the tests' flushes clear it."""

import math
import time

from limits import RateLimitItem
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from kit.config import get_settings
from kit.errors import TooManyAttempts
from kit.redis import cluster_nodes

_limiters: dict[int, MovingWindowRateLimiter] = {}


def limiter(redis: Redis) -> MovingWindowRateLimiter:
    found = _limiters.get(id(redis))
    if found is None:
        settings = get_settings()
        nodes = cluster_nodes(settings)
        storage = (RedisClusterStorage("async+redis+cluster://" + ",".join(f"{h}:{p}" for h, p in nodes),
                                       implementation="redispy", key_prefix="ratelimit") if nodes else
                   RedisStorage("async+" + settings.redis_url, implementation="redispy",
                                connection_pool=redis.connection_pool, key_prefix="ratelimit"))
        found = _limiters[id(redis)] = MovingWindowRateLimiter(storage)
    return found


async def refuse_when_spent(redis: Redis, item: RateLimitItem, *keys: str, detail: str) -> None:
    """TooManyAttempts, with the seconds until the window frees a slot, when ITEM is spent for KEYS."""
    window = limiter(redis)
    if not await window.test(item, *keys):
        reset_at = (await window.get_window_stats(item, *keys)).reset_time
        raise TooManyAttempts(detail, retry_after_s=max(1, math.ceil(reset_at - time.time())))


async def take(redis: Redis, items: list[RateLimitItem], *keys: str, detail: str) -> None:
    """Counts one hit under every item; TooManyAttempts (nothing counted further) once one is spent."""
    for item in items:
        await refuse_when_spent(redis, item, *keys, detail=detail)
        await limiter(redis).hit(item, *keys)
