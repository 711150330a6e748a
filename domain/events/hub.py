"""One Redis pub/sub connection per process, one Redis subscription per channel, fanned out in memory.

Why a small RESP client of its own rather than redis-py's `PubSub`: redis-py reconnects and re-subscribes behind the
caller's back, so events published meanwhile would vanish silently; here a lost connection is reported to every
listener (which tells its client to reconnect and recover from history). The wire is `infra.redis_wire` (TCP, TLS or
a unix socket, as the URL says): replies are parsed by hiredis in `data_received` and dispatched synchronously, no
task switch per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections import deque
from typing import Any, Protocol

import msgspec

from domain.events.bus import EventKeys
from infra.redis import REDIS_FAILURES
from infra.redis_wire import RedisAddress, RespConnection, command, connect

logger = logging.getLogger("roi.events.hub")

CONNECT_TIMEOUT_S = 5.0
SUBSCRIBE_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 5.0
RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)


class HubUnavailable(Exception):
    """The process has no working subscription connection to Redis right now."""


class Listener(Protocol):
    def deliver(self, seq: int, frame: str, published_at: float) -> None:
        """A live frame of a joined channel; must not block nor join or leave synchronously."""

    def hub_lost(self) -> None:
        """The Redis connection broke: frames may have been missed, so the listener is dropped."""


class _FrameHead(msgspec.Struct):
    seq: int
    ts: datetime.datetime


_decode_head = msgspec.json.Decoder(_FrameHead).decode


class _Subscriber(RespConnection):
    """The wire: each reply handed to the hub as it is parsed."""

    def __init__(self, hub: EventHub) -> None:
        super().__init__()
        self.hub = hub

    def reply_received(self, reply: object) -> None:
        self.hub._on_reply(self, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.hub._on_lost(self, exc)


class EventHub:
    """Joins listeners to channels; `join` returns once Redis confirmed the subscription, so that anything
    published after it reaches the listener (the caller reads history only then, and dedupes by sequence)."""

    def __init__(self, redis_url: str, keys: EventKeys) -> None:
        self.address = RedisAddress.from_url(redis_url)
        self.keys = keys
        self.client_name = f"roi-events-hub:{keys.namespace}"
        """How this process's subscription connection shows in Redis's CLIENT LIST."""
        self._listeners: dict[bytes, set[Listener]] = {}
        self._acks: dict[bytes, deque[asyncio.Future[None] | None]] = {}
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._wire: _Subscriber | None = None
        self._last_reply = 0.0
        self._probe_sent: float | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect now (a failure is retried in the background), and keep the connection probed."""
        try:
            await self._connect()
        except REDIS_FAILURES as error:
            logger.warning("live events: cannot subscribe to Redis yet: %s", error)
            self._spawn(self._reconnect())
        self._spawn(self._probe_forever())

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._wire is not None and self._wire.transport is not None:
            self._wire.transport.close()

    async def join(self, channel: str, listener: Listener) -> None:
        """Deliver `channel`'s live frames to `listener` from now on; raises HubUnavailable."""
        if self._wire is None:
            raise HubUnavailable("not connected to Redis")
        name = self.keys.live(channel).encode()
        listeners = self._listeners.get(name)
        if listeners is None:
            listeners = self._listeners[name] = set()
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._acks.setdefault(name, deque()).append(acked)
            self._pending[name] = acked
            self._wire.write(command(b"SUBSCRIBE", name))
        listeners.add(listener)
        acked_or_none = self._pending.get(name)
        if acked_or_none is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(acked_or_none), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            self.leave(channel, listener)
            raise HubUnavailable("Redis did not confirm the subscription") from None

    def leave(self, channel: str, listener: Listener) -> None:
        name = self.keys.live(channel).encode()
        listeners = self._listeners.get(name)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[name]
            if self._wire is not None:
                self._acks.setdefault(name, deque()).append(None)
                self._wire.write(command(b"UNSUBSCRIBE", name))

    def _on_reply(self, wire: _Subscriber, reply: Any) -> None:
        self._last_reply = time.monotonic()
        self._probe_sent = None
        if not isinstance(reply, list) or not reply:
            if isinstance(reply, Exception):
                logger.error("live events: Redis refused a subscription command: %s", reply)
            return
        kind = reply[0]
        if kind == b"message":
            self._dispatch(reply[1], reply[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            acks = self._acks.get(reply[1])
            if acks:
                acked = acks.popleft()
                if not acks:
                    del self._acks[reply[1]]
                if acked is not None:
                    if not acked.done():
                        acked.set_result(None)
                    if self._pending.get(reply[1]) is acked:
                        del self._pending[reply[1]]

    def _dispatch(self, name: bytes, payload: bytes) -> None:
        listeners = self._listeners.get(name)
        if not listeners:
            return
        try:
            head = _decode_head(payload)
        except msgspec.DecodeError:
            logger.error("live events: an unreadable frame on %r was skipped", name)
            return
        frame = payload.decode()
        published_at = head.ts.timestamp()
        for listener in tuple(listeners):
            listener.deliver(head.seq, frame, published_at)

    def _on_lost(self, wire: _Subscriber, exc: Exception | None) -> None:
        if wire is not self._wire:  # still being set up: `connect` reports it
            return
        self._wire = None
        listeners = {listener for group in self._listeners.values() for listener in group}
        self._listeners.clear()
        for acks in self._acks.values():
            for acked in acks:
                if acked is not None and not acked.done():
                    acked.set_exception(HubUnavailable("connection lost"))
                    acked.exception()  # a joiner that gave up waiting is not an error to log
        self._acks.clear()
        self._pending.clear()
        if not self._closing:
            logger.warning("live events: Redis subscription lost (%s); %d listeners dropped", exc, len(listeners))
            for listener in listeners:
                listener.hub_lost()
            self._spawn(self._reconnect())

    async def _connect(self) -> None:
        self._wire = await connect(self.address, lambda: _Subscriber(self), CONNECT_TIMEOUT_S, self.client_name)
        self._last_reply = time.monotonic()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing and self._wire is None:
            await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1
            try:
                await self._connect()
            except REDIS_FAILURES as error:
                logger.debug("live events: reconnect attempt %d failed: %s", attempt, error)
        if self._wire is not None:
            logger.info("live events: Redis subscription connection restored")

    async def _probe_forever(self) -> None:
        """A PING when the connection has been quiet; no reply by the next round means a dead connection."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            wire = self._wire
            if wire is None or wire.transport is None:
                continue
            if self._probe_sent is not None:
                logger.warning("live events: Redis did not answer a PING in %.0f s", PROBE_INTERVAL_S)
                wire.transport.abort()
            elif time.monotonic() - self._last_reply >= PROBE_INTERVAL_S:
                self._probe_sent = time.monotonic()
                wire.write(command(b"PING"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
