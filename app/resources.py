"""The per-process connection pools: one SQLAlchemy engine (writes), one asyncpg pool (hot reads), one Redis pool."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.settings import Settings


def create_redis(settings: Settings, url: str) -> Redis:
    """One bounded pool per process; a short timeout so a slow Redis degrades a request instead of stalling it."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        # One immediate retry (a pooled connection may be stale after a Redis restart), no backoff: the cache
        # falls back to PostgreSQL instead of waiting.
        retry=Retry(NoBackoff(), 1),
    )
    return Redis(connection_pool=pool)
