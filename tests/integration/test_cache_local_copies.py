"""Copies of large cached values kept per process: served only while Redis names their generation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from domain.cache import Cache, Entry
from infra.settings import Settings


@pytest.fixture
async def two_processes(settings: Settings) -> AsyncIterator[tuple[Cache, Cache, Redis]]:
    """Two caches on their own connections, as two API processes have."""
    first, second = Redis.from_url(settings.redis_url or ""), Redis.from_url(settings.redis_url or "")
    try:
        yield Cache(first, settings.redis_namespace), Cache(second, settings.redis_namespace), first
    finally:
        await first.aclose()
        await second.aclose()


class Source:
    """Stands for PostgreSQL: what the page is now, and how often it was read."""

    def __init__(self) -> None:
        self.value = b"page v1"
        self.reads = 0

    async def load(self) -> bytes:
        self.reads += 1
        return self.value


async def test_a_copy_is_served_until_another_process_writes_then_never_again(
    two_processes: tuple[Cache, Cache, Redis], settings: Settings
) -> None:
    reader, writer, redis = two_processes
    entry = Entry("workflow_list", f"{settings.redis_namespace}:pages:1", 60, field="*:50:0", local=True)
    source = Source()

    assert await reader.read_through(entry, source.load) == b"page v1"  # miss: filled, no generation yet
    assert await reader.read_through(entry, source.load) == b"page v1"  # from Redis, now kept locally
    await redis.delete(entry.key)  # the copy alone must now answer
    assert await reader.read_through(entry, source.load) == b"page v1"
    assert source.reads == 1

    source.value = b"page v2"
    await writer.invalidate(entry.key)
    assert await reader.read_through(entry, source.load) == b"page v2"
    assert source.reads == 2


async def test_after_redis_loses_its_data_no_old_copy_looks_current(
    two_processes: tuple[Cache, Cache, Redis], settings: Settings
) -> None:
    reader, _, redis = two_processes
    entry = Entry("workflow_list", f"{settings.redis_namespace}:pages:2", 60, field="*:50:0", local=True)
    source = Source()
    await reader.read_through(entry, source.load)
    await reader.read_through(entry, source.load)

    await redis.delete(entry.key, entry.generation_key)  # what a restart without persistence does
    source.value = b"page v2"
    assert await reader.read_through(entry, source.load) == b"page v2"
