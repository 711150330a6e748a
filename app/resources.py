"""The per-process connection pools: one SQLAlchemy engine (writes), one asyncpg pool (hot reads), one Redis pool."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

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
    )
    return Redis(connection_pool=pool)
