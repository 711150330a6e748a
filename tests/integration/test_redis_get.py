"""The pipelined GET client of the cache's hit path, against a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.redis_batch import PipelinedGet
from infra.settings import Settings
from tests.integration.redis_support import OwnRedis


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


async def test_identical_reads_asked_together_reach_redis_once(own_redis: OwnRedis) -> None:
    admin = Redis.from_url(own_redis.url)
    client = PipelinedGet(own_redis.url, timeout_s=1.0)
    try:
        await admin.mset({"hot": b"popular", "other": b"rare"})
        await client.get("warm-up")  # the connection is opened by the first read
        await admin.config_resetstat()
        answers = await asyncio.gather(*(client.get("hot") for _ in range(50)), client.get("other"))
        assert answers == [b"popular"] * 50 + [b"rare"]
        assert (await admin.info("commandstats"))["cmdstat_get"]["calls"] == 2, "one GET per distinct key"

        await admin.set("hot", b"changed")
        assert await client.get("hot") == b"changed", "a read asked after a write is sent after it"
    finally:
        client.close()
        await admin.aclose()


async def test_a_frozen_redis_fails_every_waiting_read_within_the_timeout(own_redis: OwnRedis) -> None:
    client = PipelinedGet(own_redis.url, timeout_s=0.2)
    try:
        await client.get("warm-up")
        own_redis.freeze()
        started = time.monotonic()
        outcomes = await asyncio.gather(*(client.get(f"key:{n % 3}") for n in range(20)), return_exceptions=True)
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
        assert time.monotonic() - started < 2.0, "the reads were failed by the timeout, not left waiting"

        own_redis.thaw()
        assert await client.get("warm-up") is None, "the next read reconnects"
    finally:
        client.close()
