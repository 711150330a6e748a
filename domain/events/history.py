"""Replay: the events of a channel after a client's `since`, read from its history stream.

One Lua script reads the channel's current number and the entries after `since` together, so the answer is one
consistent picture: entries are appended in sequence order (see `bus.py`), so the newest `current - since` entries
are exactly the ones wanted, unless trimming took some of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from domain.events.bus import EventKeys

_REPLAY = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
local result = {current}
if since >= current then
    return result
end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', current - since)
for i = #entries, 1, -1 do
    local fields = entries[i][2]
    local seq, frame
    for f = 1, #fields, 2 do
        if fields[f] == 'seq' then seq = tonumber(fields[f + 1]) end
        if fields[f] == 'frame' then frame = fields[f + 1] end
    end
    if seq > since then
        result[#result + 1] = seq
        result[#result + 1] = frame
    end
end
return result
"""
NOTHING_AFTER = 2**53
"""A `since` no sequence number reaches: the script then only reads the current number."""


@dataclass(frozen=True)
class Replay:
    """What a subscriber gets before live events: the channel's number now, and the frames it missed.

    `recovered` is false when history no longer reaches back to `since + 1` (trimmed by count or age), or when the
    channel's numbering restarted below `since` (its counter expired or Redis lost it).
    """

    current: int
    frames: list[tuple[int, str]]
    recovered: bool


class History:
    def __init__(self, redis: Redis, keys: EventKeys) -> None:
        self.keys = keys
        self._replay = redis.register_script(_REPLAY)

    async def after(self, channel: str, since: int | None) -> Replay:
        """The frames of `channel` with a sequence number above `since` still in history; none for `since=None`."""
        if since is None:
            return Replay(int((await self._run(channel, NOTHING_AFTER))[0]), [], recovered=True)
        answer = await self._run(channel, since)
        current = int(answer[0])
        frames = [(int(answer[i]), _text(answer[i + 1])) for i in range(1, len(answer), 2)]
        if since > current:
            return Replay(current, [], recovered=False)
        recovered = since == current or (bool(frames) and frames[0][0] == since + 1)
        return Replay(current, frames, recovered)

    async def _run(self, channel: str, since: int) -> list[bytes | int]:
        keys = [self.keys.sequence(channel), self.keys.history(channel)]
        answer: list[bytes | int] = await self._replay(keys=keys, args=[since])
        return answer


def _text(value: bytes | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
