"""GET and HGET for the cache's hit path: batched per event-loop turn, identical reads of one turn answered once.

redis-py spends ~120 µs of CPU per GET here (pool checkout, timeouts, command packing). Here the reads asked for
during one turn of the event loop are written to one connection together at the start of the next turn (one
syscall, one timer) and answered in order; the same read asked twice in a turn is sent once and its reply shared.
Sharing is safe for read-your-writes: every read of a batch is sent after each of its askers arrived, so it
sees every write those askers could have seen acknowledged.

Only the hit path uses this; everything else keeps redis-py. The connection is opened as `infra.redis_wire` reads
the URL (TCP, TLS or a unix socket, with login and database). Any failure (refused, timed out, dropped) fails
every read in flight with a `ConnectionError` and closes the connection; the next read reconnects.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from redis.exceptions import ConnectionError as RedisConnectionError

from infra.redis_wire import RedisAddress, RespConnection, command, connect

Waiters = list["asyncio.Future[object]"]


class _Replies(RespConnection):
    """Each command written appends its askers to `waiting`; each reply answers the first."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: deque[Waiters] = deque()
        self.closed = False
        self._deadlines: deque[tuple[Waiters, asyncio.TimerHandle]] = deque()

    def reply_received(self, reply: object) -> None:
        waiters = self.waiting.popleft()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(reply)
        if self._deadlines and self._deadlines[0][0] is waiters:
            self._deadlines.popleft()[1].cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc}"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        while self._deadlines:
            self._deadlines.popleft()[1].cancel()
        while self.waiting:
            for waiter in self.waiting.popleft():
                if not waiter.done():
                    waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def send(self, commands: dict[bytes, Waiters], timeout_s: float) -> None:
        """Write `commands` at once; unless the last is answered within `timeout_s`, the connection fails."""
        self.waiting.extend(commands.values())
        self.write(b"".join(commands))
        last = self.waiting[-1]
        timer = asyncio.get_running_loop().call_later(
            timeout_s, self.fail, RedisConnectionError("Redis did not answer in time")
        )
        self._deadlines.append((last, timer))


class PipelinedGet:
    """GET and HGET over one connection of their own, batched per event-loop turn."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.address = RedisAddress.from_url(url)
        self.timeout_s = timeout_s
        self._replies: _Replies | None = None
        self._connecting = asyncio.Lock()
        self._batch: dict[bytes, Waiters] | None = None

    async def get(self, key: str) -> bytes | None:
        return await self._ask(command(b"GET", key.encode()))

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._ask(command(b"HGET", key.encode(), field.encode()))

    async def _ask(self, request: bytes) -> bytes | None:
        replies = await self._connection()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[object] = loop.create_future()
        if self._batch is None:
            self._batch = {}
            loop.call_soon(self._flush, replies)
        self._batch.setdefault(request, []).append(waiter)
        reply = await waiter
        if isinstance(reply, Exception):
            raise RedisConnectionError(str(reply))
        return cast("bytes | None", reply)

    def _flush(self, replies: _Replies) -> None:
        """Runs once per turn that asked for something, after every task ready in that turn has asked."""
        batch, self._batch = self._batch or {}, None
        if replies.closed:
            error = RedisConnectionError("connection to Redis lost")
            for waiter in (waiter for waiters in batch.values() for waiter in waiters):
                if not waiter.done():
                    waiter.set_exception(error)
            return
        replies.send(batch, self.timeout_s)

    async def _connection(self) -> _Replies:
        if self._replies is not None and not self._replies.closed:
            return self._replies
        async with self._connecting:
            if self._replies is None or self._replies.closed:
                self._replies = await connect(self.address, _Replies, self.timeout_s)
        return self._replies

    def close(self) -> None:
        if self._replies is not None:
            self._replies.fail(RedisConnectionError("closed"))
