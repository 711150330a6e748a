"""Redis read-through caching that is never stale and never required.

Never stale: a reader that misses notes the key's *generation*, reads PostgreSQL, and stores its answer only
if the generation is unchanged (one Lua script); a hit is one GET. Writers commit first, then bump the
generation and delete the key. So a reader that raced a writer can never put the older answer back:
read-your-writes holds for every client on every process.

Large values (`Entry.local`, a page of 50 workflows is 58 KB) are also kept in this process, tagged with the
generation they were read under: a hit then fetches only the generation, a few bytes, instead of the value. A
copy serves only while Redis still names its generation and for no longer than the value's own TTL (far shorter
than the generation's), so it is exactly as fresh as the Redis copy.

Never required: every Redis call has a short timeout. A failure opens a breaker for `retry_after_s` during
which reads go straight to PostgreSQL (counted as fallbacks); invalidations that could not be delivered are
kept and retried until Redis answers, and until then this process does not read those keys from Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra.closing import raise_if_cancelled
from infra.redis import REDIS_FAILURES
from infra.redis_batch import PipelinedGet

logger = logging.getLogger("roi.cache")

CacheOutcome = Callable[[str, str], None]
"""Called with (key family, "hit" | "miss" | "fallback") for the metrics."""

GENERATION_TTL_S = 3600
RETRY_INTERVAL_S = 0.2

_FILL_IF_GENERATION_UNCHANGED = """
local generation = redis.call('GET', KEYS[2])
if (generation or '') ~= ARGV[1] then return 0 end
if not generation then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached value: a plain key, or one field of a hash key (a family of pages dropped together)."""

    family: str
    key: str
    ttl_s: int
    field: str = ""
    local: bool = False
    """Keep a copy in this process too (for large values), validated by the generation on every read."""

    @property
    def generation_key(self) -> str:
        return f"{self.key}:gen"


class LocalCopies:
    """Values kept in this process, least recently used dropped first once `max_bytes` is passed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._copies: OrderedDict[tuple[str, str], tuple[bytes, float, bytes]] = OrderedDict()

    def get(self, entry: Entry, generation: bytes) -> bytes | None:
        copy = self._copies.get((entry.key, entry.field))
        if copy is None or copy[0] != generation or copy[1] < time.monotonic():
            return None
        self._copies.move_to_end((entry.key, entry.field))
        return copy[2]

    def put(self, entry: Entry, generation: bytes, value: bytes) -> None:
        self.drop(entry.key, entry.field)
        self._copies[(entry.key, entry.field)] = (generation, time.monotonic() + entry.ttl_s, value)
        self.size += len(value)
        while self.size > self.max_bytes and self._copies:
            _, (_, _, dropped) = self._copies.popitem(last=False)
            self.size -= len(dropped)

    def drop(self, key: str, field: str) -> None:
        copy = self._copies.pop((key, field), None)
        if copy is not None:
            self.size -= len(copy[2])


def new_generation() -> str:
    """Generations are unique, never counters: after Redis loses its data, no old generation can come back and
    make a copy kept in some process look current again."""
    return uuid.uuid4().hex


def ignore_outcome(family: str, outcome: str) -> None:
    """The default outcome recorder, for callers without metrics."""


class Cache:
    """Guarded read-through over one Redis client; one instance per process."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        record: CacheOutcome = ignore_outcome,
        retry_after_s: float = 1.0,
        fast_get: PipelinedGet | None = None,
        local_max_bytes: int = 32 << 20,
    ) -> None:
        """`fast_get`, when given, serves the hit path's GET and HGET; redis-py does everything else."""
        self.redis = redis
        self._get = fast_get.get if fast_get is not None else redis.get
        self._hget = fast_get.hget if fast_get is not None else redis.hget
        self.namespace = namespace
        self.record = record
        self.retry_after_s = retry_after_s
        self._closed_until = 0.0
        self._undelivered: set[str] = set()
        self._retrying: asyncio.Task[None] | None = None
        self._fill = redis.register_script(_FILL_IF_GENERATION_UNCHANGED)
        self.local = LocalCopies(local_max_bytes)

    def key(self, *parts: object) -> str:
        return ":".join((self.namespace, *map(str, parts)))

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._closed_until

    async def read_through(self, entry: Entry, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes of `entry`, or `load()`'s, stored for the next reader when that is safe."""
        if not self.available or entry.key in self._undelivered:
            self.record(entry.family, "fallback")
            return await load()
        try:
            if entry.local:
                generation = cast("bytes | None", await self._get(entry.generation_key)) or b""
                copy = self.local.get(entry, generation)
                if copy is not None:
                    self.record(entry.family, "hit")
                    return copy
            cached = cast(
                "bytes | None",
                await (self._hget(entry.key, entry.field) if entry.field else self._get(entry.key)),
            )
            if cached is not None:
                if entry.local and generation:  # tagged with the generation read first: never older than it
                    self.local.put(entry, generation, cached)
                self.record(entry.family, "hit")
                return cached
            if not entry.local:
                # Read the generation before PostgreSQL: a writer committing after this point changes it.
                generation = cast("bytes | None", await self.redis.get(entry.generation_key)) or b""
        except REDIS_FAILURES as error:
            self._trip(error)
            self.record(entry.family, "fallback")
            return await load()
        self.record(entry.family, "miss")
        value = await load()
        await self._store(entry, value, generation)
        if entry.local and generation:
            self.local.put(entry, generation, value)
        return value

    async def _store(self, entry: Entry, value: bytes, generation: bytes) -> None:
        try:
            await self._fill(
                keys=[entry.key, entry.generation_key],
                args=[generation, value, entry.field, entry.ttl_s, new_generation(), GENERATION_TTL_S],
            )
        except REDIS_FAILURES as error:
            self._trip(error)

    async def invalidate(self, *keys: str) -> None:
        """Drop `keys` after a committed change; what cannot be delivered now is retried until it is."""
        if not self.available:
            self._undelivered.update(keys)
            self._retry_later()
            return
        try:
            await self._invalidate(keys)
        except REDIS_FAILURES as error:
            self._trip(error)
            self._undelivered.update(keys)
            self._retry_later()

    def invalidate_in(self, pipe: Pipeline, *keys: str) -> bool:
        """Add the drop of `keys` to `pipe`, for a caller with more to send in the same round trip; False (and kept
        to retry) when Redis is known to be down. A failure of `pipe` must then be told to `invalidation_failed`."""
        if not self.available:
            self._undelivered.update(keys)
            self._retry_later()
            return False
        for key in keys:
            pipe.set(f"{key}:gen", new_generation(), ex=GENERATION_TTL_S)
            pipe.delete(key)
        return True

    def invalidation_failed(self, keys: tuple[str, ...], error: BaseException) -> None:
        self._trip(error)
        self._undelivered.update(keys)
        self._retry_later()

    async def _invalidate(self, keys: tuple[str, ...] | set[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(f"{key}:gen", new_generation(), ex=GENERATION_TTL_S)
                pipe.delete(key)
            await pipe.execute()

    def _trip(self, error: BaseException) -> None:
        if self.available:
            logger.warning("redis unavailable, serving from PostgreSQL: %s", error)
        self._closed_until = time.monotonic() + self.retry_after_s

    def _retry_later(self) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._deliver_undelivered())

    async def _deliver_undelivered(self) -> None:
        while self._undelivered:
            await asyncio.sleep(RETRY_INTERVAL_S)
            pending = set(self._undelivered)
            try:
                await self._invalidate(pending)
            except REDIS_FAILURES:
                continue
            finally:
                raise_if_cancelled()
            self._undelivered -= pending

    async def close(self) -> None:
        """Deliver what is pending if Redis answers now, then stop retrying."""
        if self._undelivered:
            try:
                await self._invalidate(set(self._undelivered))
            except REDIS_FAILURES:
                logger.error("could not deliver cache invalidations for %s", sorted(self._undelivered))
        if self._retrying is not None:
            self._retrying.cancel()
