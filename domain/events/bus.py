"""Publishing live events: one `publish` for API processes and workers alike.

One Lua script per event, atomic: it takes the channel's next sequence number (INCR), appends the finished
frame to the channel's history stream (capped by count and age) and PUBLISHes it for live subscribers.
Because numbering and appending happen together, history order is sequence order for every publisher.
A publish that cannot reach Redis is logged and dropped: the state of record is in PostgreSQL, and a client
that sees a gap in `seq` refetches it over HTTP.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any, TypeAlias

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

logger = logging.getLogger("roi.events")

# A quiet channel keeps its numbering for a week, so a client coming back late sees a gap, never a restart.
SEQUENCE_TTL_MS = 7 * 24 * 3600 * 1000

_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local frame = '{"type":"event","channel":' .. ARGV[1] .. ',"seq":' .. seq .. ',"event":' .. ARGV[2]
    .. ',"data":' .. ARGV[3] .. ',"ts":' .. ARGV[4] .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'seq', seq, 'frame', frame)
redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', KEYS[3], frame)
return seq
"""


Event: TypeAlias = tuple[str, str, dict[str, Any]]
"""An event to publish: its channel, its name, its data."""


class EventKeys:
    """The Redis keys of one channel: its sequence counter, its history stream, its live pub/sub channel."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def sequence(self, channel: str) -> str:
        return f"{self.namespace}:events:{channel}:seq"

    def history(self, channel: str) -> str:
        return f"{self.namespace}:events:{channel}:history"

    def live(self, channel: str) -> str:
        return f"{self.namespace}:events:{channel}"


class EventBus:
    def __init__(self, redis: Redis, namespace: str, history_size: int = 1000, history_age_s: int = 3600) -> None:
        self.redis = redis
        self.keys = EventKeys(namespace)
        self.history_size = history_size
        self.history_age_s = history_age_s
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, channel: str, event: str, data: dict[str, Any]) -> int | None:
        """Publish `event` on `channel`; the sequence number it got, or None if Redis could not be reached."""
        [seq] = await self.publish_many([(channel, event, data)])
        return seq

    async def publish_many(self, events: Sequence[Event]) -> list[int | None]:
        """Publish `events` in their order in one round trip (one pipeline); each one's sequence number, or None
        for all when Redis could not be reached. Each event is still its own atomic script, so numbering and history
        stay exactly as with one `publish` per event."""
        if not events:
            return []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                self.publish_in(pipe, events)
                answers = await pipe.execute(raise_on_error=False)
        except (TimeoutError, RedisError, OSError) as error:
            return self.dropped(events, error)
        return await self.published(events, answers)

    def publish_in(self, pipe: Pipeline, events: Sequence[Event]) -> None:
        """Add the publishing of `events` to `pipe` (executed with `raise_on_error=False`), whose answers, from the
        first of them on, go to `published`. By the script's hash: a pipeline running a registered script asks
        whether it is loaded first, one more round trip."""
        now = datetime.datetime.now(datetime.UTC)
        timestamp = msgspec.json.encode(now)
        oldest_kept_ms = max(int(now.timestamp() * 1000) - self.history_age_s * 1000, 0)
        for channel, event, data in events:
            pipe.evalsha(
                self._publish.sha,
                3,
                self.keys.sequence(channel),
                self.keys.history(channel),
                self.keys.live(channel),
                msgspec.json.encode(channel),
                msgspec.json.encode(event),
                msgspec.json.encode(data),
                timestamp,
                self.history_size,
                self.history_age_s * 1000 * 2,
                oldest_kept_ms,
                SEQUENCE_TTL_MS,
            )

    async def published(self, events: Sequence[Event], answers: list[Any]) -> list[int | None]:
        """The sequence numbers from `publish_in`'s answers; once Redis has lost the script (a restart), it is loaded
        and the events sent again (none of them ran)."""
        if any(isinstance(answer, NoScriptError) for answer in answers):
            try:
                await self.redis.script_load(_PUBLISH)
            except (TimeoutError, RedisError, OSError) as error:
                return self.dropped(events, error)
            return await self.publish_many(events)
        failed = next((answer for answer in answers if isinstance(answer, Exception)), None)
        if failed is not None:
            return self.dropped(events, failed)
        return [int(seq) for seq in answers]

    def dropped(self, events: Sequence[Event], error: BaseException) -> list[int | None]:
        logger.warning("%d event(s) (%s on %s, ...) not published: %s", len(events), events[0][1], events[0][0], error)
        return [None] * len(events)


def workflow_channel(workflow_id: object) -> str:
    return f"workflow:{workflow_id}"


def user_channel(user_id: object) -> str:
    return f"user:{user_id}"
