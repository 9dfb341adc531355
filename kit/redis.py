"""The shared Redis client (live index, offers, fan-out, throttles)."""

from functools import lru_cache

from redis.asyncio import BlockingConnectionPool, Redis

from kit.config import get_settings


@lru_cache
def get_redis() -> Redis:
    """A bounded pool that makes callers wait for a connection: a burst of socket messages
    queues for a moment instead of failing."""
    settings = get_settings()
    pool = BlockingConnectionPool.from_url(settings.redis_url, decode_responses=True,
                                           max_connections=settings.redis_max_connections, timeout=10)
    return Redis(connection_pool=pool)
