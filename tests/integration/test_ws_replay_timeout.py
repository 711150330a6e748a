"""A subscription's replay read is bounded: a stalled Redis makes it fail in time, never hang the socket."""

from __future__ import annotations

import asyncio
import time

import pytest

from domain.events.bus import EventKeys
from domain.events.history import History
from domain.events.ws import REPLAY_TIMEOUT_S
from infra.redis import REDIS_FAILURES, create_bounded_redis
from tests.integration.redis_support import OwnRedis


async def test_a_replay_from_a_stalled_redis_fails_within_its_timeout(own_redis: OwnRedis) -> None:
    redis = create_bounded_redis(own_redis.url, max_connections=2, timeout_s=0.3)
    history = History(redis, EventKeys("replay-timeout"))
    try:
        assert (await history.after("workflow:1", 0)).current == 0
        own_redis.freeze()
        started = time.monotonic()
        with pytest.raises(REDIS_FAILURES):
            await asyncio.wait_for(history.after("workflow:1", 0), REPLAY_TIMEOUT_S * 5)
        assert time.monotonic() - started < 2 * 0.3 + 0.5, "gave up after its own timeout and one retry"
    finally:
        own_redis.thaw()
        await redis.aclose()
