"""redis-py clients as roi uses them, and the errors that mean "Redis is not answering"."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

REDIS_FAILURES = (TimeoutError, RedisError, OSError)
"""What a call to Redis raises when Redis is down, slow or gone: callers that can do without Redis catch these."""


def create_cache_redis(url: str, max_connections: int, timeout_s: float) -> Redis:
    """One bounded pool per process, with a short timeout so a slow Redis degrades a request instead of stalling
    it, and one immediate retry (a pooled connection may be stale after a Redis restart) without backoff.
    Closing the client closes its pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)


def create_bounded_redis(url: str, max_connections: int, timeout_s: float) -> Redis:
    """A pool of at most `max_connections` for reads that may take longer than the cache's but must never hang:
    waiting for a connection, connecting and each reply are bounded by `timeout_s`, with one immediate retry (not
    redis-py's default three with backoff), so a call gives up within twice `timeout_s`. Closing the client closes
    its pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)
