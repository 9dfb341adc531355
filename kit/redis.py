"""The shared Redis client (live index, offers, fan-out, throttles): one node, or a Redis Cluster
when `redis_cluster_nodes` is set (every key the code touches carries a `{city}` hash tag)."""

import random
from functools import lru_cache

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from kit.config import Settings, get_settings


def cluster_nodes(settings: Settings) -> list[tuple[str, int]]:
    """The configured cluster's seed nodes, `host:port` separated by commas; empty for one node."""
    nodes = []
    for node in filter(None, (part.strip() for part in settings.redis_cluster_nodes.split(","))):
        host, _, port = node.rpartition(":")
        nodes.append((host, int(port)))
    return nodes


@lru_cache
def get_redis() -> Redis:
    """A bounded pool that makes callers wait for a connection: a burst of socket messages
    queues for a moment instead of failing."""
    settings = get_settings()
    nodes = cluster_nodes(settings)
    if nodes:
        cluster = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], decode_responses=True,
                               max_connections=settings.redis_max_connections)
        return cluster  # type: ignore[return-value]  # the same command surface for our use
    pool = BlockingConnectionPool.from_url(settings.redis_url, decode_responses=True,
                                           max_connections=settings.redis_max_connections, timeout=10)
    return Redis(connection_pool=pool)


def pubsub_client(redis: Redis) -> Redis:
    """A client for classic pub/sub: a cluster forwards every PUBLISH to all its nodes, so one
    node's connection hears every channel (each subscriber picks a node by the process)."""
    if not isinstance(redis, RedisCluster):
        return redis
    return _node_client(*random.choice(cluster_nodes(get_settings())))


@lru_cache
def _node_client(host: str, port: int) -> Redis:
    pool = BlockingConnectionPool(host=host, port=port, decode_responses=True,
                                  max_connections=get_settings().redis_max_connections, timeout=10)
    return Redis(connection_pool=pool)
