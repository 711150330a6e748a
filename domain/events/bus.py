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
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

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
        now = datetime.datetime.now(datetime.UTC)
        oldest_kept_ms = int(now.timestamp() * 1000) - self.history_age_s * 1000
        try:
            seq = await self._publish(
                keys=[self.keys.sequence(channel), self.keys.history(channel), self.keys.live(channel)],
                args=[
                    msgspec.json.encode(channel),
                    msgspec.json.encode(event),
                    msgspec.json.encode(data),
                    msgspec.json.encode(now),
                    self.history_size,
                    self.history_age_s * 1000 * 2,
                    max(oldest_kept_ms, 0),
                    SEQUENCE_TTL_MS,
                ],
            )
        except (TimeoutError, RedisError, OSError) as error:
            logger.warning("event %s on %s not published: %s", event, channel, error)
            return None
        return int(seq)


def workflow_channel(workflow_id: object) -> str:
    return f"workflow:{workflow_id}"


def user_channel(user_id: object) -> str:
    return f"user:{user_id}"
