"""redis-py clients as roi uses them, and the errors that mean "Redis is not answering"."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

REDIS_FAILURES = (TimeoutError, RedisError, OSError)
"""What a call to Redis raises when Redis is down, slow or gone: callers that can do without Redis catch these."""


def create_bounded_redis(url: str, max_connections: int, timeout_s: float, health_check_interval: int = 0) -> Redis:
    """A pool of at most `max_connections` whose every wait is bounded: for a connection, connecting and each reply
    by `timeout_s`, with one immediate retry (not redis-py's default three with backoff), so a call gives up within
    twice `timeout_s`. Closing the client closes its pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)


def create_cache_redis(url: str, max_connections: int, timeout_s: float) -> Redis:
    """The cache's: a short timeout, so a slow Redis degrades a request instead of stalling it; the retry takes a
    pooled connection left stale by a Redis restart; idle connections are checked every 30 s."""
    return create_bounded_redis(url, max_connections, timeout_s, health_check_interval=30)
