"""The pipelined GET client of the cache's hit path, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from app.settings import Settings
from domain.redis_get import PipelinedGet


async def test_concurrent_gets_each_get_their_own_answer(settings: Settings, redis: Redis) -> None:
    keys = {f"{settings.redis_namespace}:fast:{index}": f"value {index}".encode() for index in range(200)}
    await redis.mset(keys)
    await redis.hset(f"{settings.redis_namespace}:fast:hash", mapping={"a": b"1"})
    client = PipelinedGet(settings.redis_url or "", timeout_s=1.0)
    try:
        answers = await asyncio.gather(*(client.get(key) for key in keys))
        assert answers == list(keys.values()), "replies are matched to requests in order"
        assert await client.get(f"{settings.redis_namespace}:fast:missing") is None
        assert await client.hget(f"{settings.redis_namespace}:fast:hash", "a") == b"1"
        assert await client.hget(f"{settings.redis_namespace}:fast:hash", "b") is None
    finally:
        client.close()


async def test_the_database_in_the_url_is_the_one_read(settings: Settings) -> None:
    url = (settings.redis_url or "").rsplit("/", 1)[0] + "/3"
    key = f"{settings.redis_namespace}:db3:{uuid.uuid4().hex}"
    other = Redis.from_url(url)
    client = PipelinedGet(url, timeout_s=1.0)
    try:
        await other.set(key, b"in db 3", ex=60)
        assert await client.get(key) == b"in db 3"
    finally:
        await other.delete(key)
        await other.aclose()
        client.close()
