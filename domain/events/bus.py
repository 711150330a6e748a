"""Publishing live events: one `publish` for API processes and workers alike.

One Lua script per batch of events, atomic: for each event it takes the channel's next sequence number (INCR),
appends the finished frame to the channel's history stream (capped by count and age) and PUBLISHes it for live
subscribers.
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
local channels = tonumber(ARGV[6])
local seqs = {}
for e = 7 + channels, #ARGV, 3 do
    local c = tonumber(ARGV[e])
    local k = (c - 1) * 3
    local seq = redis.call('INCR', KEYS[k + 1])
    local frame = '{"type":"event","channel":' .. ARGV[6 + c] .. ',"seq":' .. seq .. ',"event":' .. ARGV[e + 1]
        .. ',"data":' .. ARGV[e + 2] .. ',"ts":' .. ARGV[1] .. '}'
    redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', ARGV[2], '*', 'seq', seq, 'frame', frame)
    redis.call('PUBLISH', KEYS[k + 3], frame)
    seqs[#seqs + 1] = seq
end
for c = 1, channels do
    local k = (c - 1) * 3
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[5])
    redis.call('XTRIM', KEYS[k + 2], 'MINID', '~', ARGV[4])
    redis.call('PEXPIRE', KEYS[k + 2], ARGV[3])
end
return seqs
"""
"""Events in their order, each numbered, kept and sent; then each channel's expiries and trim, once. KEYS: each
channel's sequence, history and live keys; ARGV: the timestamp, history size, history expiry, oldest id kept,
sequence expiry, the number of channels, each channel's name as JSON, then (channel number, event, data) per event."""


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
        """Publish `events` in their order in one round trip (one script); each one's sequence number, or None
        for all when Redis could not be reached. The script is atomic, so numbering and history stay exactly as with
        one `publish` per event."""
        if not events:
            return []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                self.publish_in(pipe, events)
                [answer] = await pipe.execute(raise_on_error=False)
        except (TimeoutError, RedisError, OSError) as error:
            return self.dropped(events, error)
        return await self.published(events, answer)

    def publish_in(self, pipe: Pipeline, events: Sequence[Event]) -> None:
        """Add the publishing of `events` (not none) to `pipe` as one command, whose answer (executed with
        `raise_on_error=False`) goes to `published`. By the script's hash: a pipeline running a registered script
        first asks whether it is loaded, one more round trip."""
        now = datetime.datetime.now(datetime.UTC)
        channels = list(dict.fromkeys(channel for channel, _, _ in events))
        number = {channel: str(index).encode() for index, channel in enumerate(channels, start=1)}
        keys = self.keys
        arguments: list[bytes | str | int] = [
            self._publish.sha,
            3 * len(channels),
            *(
                key
                for channel in channels
                for key in (keys.sequence(channel), keys.history(channel), keys.live(channel))
            ),
            msgspec.json.encode(now),
            self.history_size,
            self.history_age_s * 1000 * 2,
            max(int(now.timestamp() * 1000) - self.history_age_s * 1000, 0),
            SEQUENCE_TTL_MS,
            len(channels),
            *(msgspec.json.encode(channel) for channel in channels),
        ]
        for channel, event, data in events:
            arguments += (number[channel], msgspec.json.encode(event), msgspec.json.encode(data))
        pipe.execute_command("EVALSHA", *arguments)

    async def published(self, events: Sequence[Event], answer: Any) -> list[int | None]:
        """The sequence numbers from `publish_in`'s answer; once Redis has lost the script (a restart), it is loaded
        and the events sent again (none of them ran)."""
        if isinstance(answer, NoScriptError):
            try:
                await self.redis.script_load(_PUBLISH)
            except (TimeoutError, RedisError, OSError) as error:
                return self.dropped(events, error)
            return await self.publish_many(events)
        if isinstance(answer, Exception):
            return self.dropped(events, answer)
        return [int(seq) for seq in answer]

    def dropped(self, events: Sequence[Event], error: BaseException) -> list[int | None]:
        logger.warning("%d event(s) (%s on %s, ...) not published: %s", len(events), events[0][1], events[0][0], error)
        return [None] * len(events)


def workflow_channel(workflow_id: object) -> str:
    return f"workflow:{workflow_id}"


def user_channel(user_id: object) -> str:
    return f"user:{user_id}"
