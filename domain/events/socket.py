"""One WebSocket connection of /ws: its subscriptions (feeds), its bounded send queue, its reader and writer.

Each socket has a reader (client operations, handled one at a time and in order) and a writer (one bounded queue of
frames, sent in order). Live frames reach the queue from the process's `EventHub` without an await, so one slow
socket never holds up another; a queue that reaches its bound closes its socket with `SLOW_CONSUMER`, and the client
reconnects with `since` and gets what it missed from history — nothing is dropped silently.

Subscribing joins the hub first, buffers live frames, reads history, then sends `subscribed`, the replay and the
buffered frames newer than the replay: every event after `since` exactly once, in order.

Heartbeat: Granian (2.8) gives an ASGI app no way to send a WebSocket ping frame, and drops the client's pongs before
the app sees them (`src/asgi/io.rs`; granian#613). So the heartbeat is a JSON frame `{"type": "ping"}` every
`heartbeat_s`; any frame from the client (`{"op": "pong"}` is the cheapest) answers it, and a socket that has not
answered two of them is closed with `HEARTBEAT_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Protocol

import asyncpg
import msgspec
from litestar.types import Receive, Send
from litestar.types.asgi_types import WebSocketCloseEvent, WebSocketSendEvent
from redis.exceptions import RedisError

from domain.accounts.schemas import CurrentUser
from domain.events.authorization import ChannelAuthorizer, Identity, InvalidChannel, canonical_channel
from domain.events.history import History
from domain.events.hub import EventHub, HubUnavailable
from domain.events.stats import LiveStats

logger = logging.getLogger("roi.events.socket")

HEARTBEAT_MISSES = 2
CLOSE_TIMEOUT_S = 10.0
MAX_MESSAGE_CHARS = 4096


class CloseCode(IntEnum):
    GOING_AWAY = 1001
    """The server shuts down: reconnect (to another process) with `since`."""
    INTERNAL_ERROR = 1011
    HEARTBEAT_TIMEOUT = 4408
    """The client answered none of the last two heartbeats."""
    HUB_RESTART = 1012
    """This process lost its Redis subscription: reconnect with `since`."""
    SLOW_CONSUMER = 4008
    """The client read too slowly and its backlog overflowed: reconnect with `since`."""
    UNAUTHORIZED = 4401


@dataclass(frozen=True)
class LiveConfig:
    heartbeat_s: float = 20.0
    backlog: int = 1000
    """Frames waiting for one socket before it counts as a slow consumer."""
    max_subscriptions: int = 100


class SocketHost(Protocol):
    """What a socket needs of the endpoint that accepted it (`ws.LiveEvents`): what every socket of the process
    shares, and the counters each adds to."""

    hub: EventHub
    history: History
    authorizer: ChannelAuthorizer
    config: LiveConfig
    stats: LiveStats
    sent: int
    dropped: int
    high_water: int

    def raise_high_water(self, depth: int) -> None: ...


class ClientMessage(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    channel: str | None = None
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None


_decode_message = msgspec.json.Decoder(ClientMessage).decode
_encode = msgspec.json.Encoder().encode


def _frame(**fields: Any) -> str:
    return _encode(fields).decode()


def _text(frame: str) -> WebSocketSendEvent:
    return {"type": "websocket.send", "text": frame, "bytes": None}


PING = _frame(type="ping")
PONG = _frame(type="pong")

LiveItem = tuple["Feed", str, float]
"""A live event on its way to a socket: the subscription, the frame, when it was published (Unix time)."""


class Feed:
    """One socket's subscription to one channel: buffers while history is read, then forwards newer frames."""

    __slots__ = ("active", "buffer", "channel", "last_seq", "socket")

    def __init__(self, socket: LiveSocket, channel: str) -> None:
        self.socket = socket
        self.channel = channel
        self.last_seq = 0
        self.buffer: list[tuple[int, str, float]] | None = []
        self.active = True

    def deliver(self, seq: int, frame: str, published_at: float) -> None:
        if self.socket.done.is_set():
            return
        if self.buffer is not None:
            self.buffer.append((seq, frame, published_at))
            if len(self.buffer) > self.socket.live.config.backlog:
                self.socket.overflow()
        elif seq > self.last_seq:
            self.last_seq = seq
            self.socket.push((self, frame, published_at))

    def hub_lost(self) -> None:
        self.socket.close_soon(CloseCode.HUB_RESTART, "events interrupted: reconnect with since")

    def go_live(self, after: int) -> None:
        """Switch from buffering to forwarding: buffered frames above `after` go out now, in order."""
        buffered, self.buffer = self.buffer or [], None
        self.last_seq = after
        for seq, frame, published_at in buffered:
            self.deliver(seq, frame, published_at)


class LiveSocket:
    """One accepted connection."""

    def __init__(self, live: SocketHost, send: Send, frame_send: Send, identity: Identity) -> None:
        self.live = live
        self.send = send
        self.frame_send = frame_send
        self.user: CurrentUser = identity.user
        self.expires_at = identity.expires_at
        self.connection_id = secrets.token_hex(8)
        self.queue: deque[str | list[str] | LiveItem] = deque()
        self.wake = asyncio.Event()
        self.feeds: dict[str, Feed] = {}
        self.unanswered = 0
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self.reason = "client"
        self.done = asyncio.Event()

    async def run(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        self.push(_frame(type="welcome", heartbeat_s=self.live.config.heartbeat_s, connection_id=self.connection_id))
        writer = loop.create_task(self._write_forever())
        reader = loop.create_task(self._read_forever(receive))
        expiry = loop.call_later(
            max(0.0, self.expires_at - time.time()), self.close_soon, CloseCode.UNAUTHORIZED, "token expired"
        )
        try:
            await self.done.wait()
        finally:
            expiry.cancel()
            reader.cancel()
            writer.cancel()
            self._leave_all()
            if self.close_code is not None:
                await self._close()

    def push(self, item: str | list[str] | LiveItem) -> None:
        """Queue a frame (or a replay batch); a full queue makes this socket a slow consumer."""
        if self.done.is_set():
            self.live.dropped += _events_in(item)
            return
        queue = self.queue
        if len(queue) >= self.live.config.backlog:
            self.live.dropped += _events_in(item)
            self.overflow()
            return
        queue.append(item)
        if len(queue) > self.live.high_water:
            self.live.raise_high_water(len(queue))
        self.wake.set()

    def overflow(self) -> None:
        self.close_soon(CloseCode.SLOW_CONSUMER, "too slow: reconnect with since")

    def close_soon(self, code: CloseCode, detail: str) -> None:
        """Stop at once and close with `code` (the closing frame follows whatever send is under way)."""
        if not self.done.is_set():
            self.close_code, self.close_reason = code, detail
            self.finish(_REASONS[code])

    def finish(self, reason: str) -> None:
        """Stop at once; `reason` labels the disconnect in the stats."""
        if not self.done.is_set():
            self.reason = reason
            self.done.set()

    def heartbeat(self) -> None:
        if self.unanswered >= HEARTBEAT_MISSES:
            self.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            return
        self.unanswered += 1
        self.push(PING)

    async def _close(self) -> None:
        self.live.dropped += sum(_events_in(item) for item in self.queue)
        self.queue.clear()
        code = int(self.close_code or CloseCode.GOING_AWAY)
        message: WebSocketCloseEvent = {"type": "websocket.close", "code": code, "reason": self.close_reason}
        with contextlib.suppress(Exception):  # the peer is gone, or a send to a peer that reads nothing never ends
            await asyncio.wait_for(self.send(message), CLOSE_TIMEOUT_S)

    async def _write_forever(self) -> None:
        queue, wake, send, live = self.queue, self.wake, self.frame_send, self.live
        try:
            while True:
                if not queue:
                    wake.clear()
                    await wake.wait()
                    continue
                item = queue.popleft()
                if isinstance(item, str):
                    await send(_text(item))
                    live.sent += 1
                elif isinstance(item, list):
                    for index, frame in enumerate(item):
                        if self.done.is_set():
                            live.dropped += len(item) - index
                            return
                        await send(_text(frame))
                        live.sent += 1
                elif item[0].active:
                    await send(_text(item[1]))
                    live.sent += 1
                    live.stats.delivered(time.time() - item[2])
        except Exception:  # noqa: BLE001  # whatever the server raises once the transport is gone
            self.finish("send_failed")

    async def _read_forever(self, receive: Receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.finish("client")
                    return
                self.unanswered = 0
                text = message.get("text")
                if not isinstance(text, str):
                    data = message.get("bytes")
                    text = data.decode(errors="replace") if isinstance(data, bytes) else ""
                await self._handle(text)
        except Exception:
            logger.exception("live socket %s failed", self.connection_id)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    async def _handle(self, text: str) -> None:
        if len(text) > MAX_MESSAGE_CHARS:
            self._error("invalid_message", f"messages are at most {MAX_MESSAGE_CHARS} characters")
            return
        try:
            message = _decode_message(text)
        except msgspec.ValidationError as error:
            self._error("invalid_message", str(error))
            return
        except msgspec.DecodeError:
            self._error("invalid_json", "frames are JSON objects")
            return
        if message.op == "ping":
            self.push(PONG)
        elif message.op == "pong":
            pass
        elif message.op in ("subscribe", "unsubscribe"):
            if message.channel is None:
                self._error("invalid_message", f"{message.op} needs a channel")
            elif message.op == "subscribe":
                await self._subscribe(message.channel, message.since)
            else:
                self._unsubscribe(message.channel)
        else:
            self._error("unknown_op", f"unknown op {message.op!r}: subscribe, unsubscribe, ping or pong")

    async def _subscribe(self, name: str, since: int | None) -> None:
        live = self.live
        try:
            channel = canonical_channel(name)
        except InvalidChannel as error:
            self._refuse("invalid", "invalid_channel", str(error), name)
            return
        try:
            allowed = await live.authorizer.allows(self.user, channel)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            logger.warning("cannot authorise a subscription to %s: %s", channel, error)
            self._refuse("unavailable", "unavailable", "cannot check access now, retry", name)
            return
        if not allowed:
            self._refuse("forbidden", "forbidden", "not your channel", name)
            return
        self._unsubscribe(channel, answer=False)
        if len(self.feeds) >= live.config.max_subscriptions:
            self._refuse("invalid", "too_many_subscriptions", f"at most {live.config.max_subscriptions}", name)
            return
        feed = self.feeds[channel] = Feed(self, channel)
        live.stats.active_subscriptions(1)
        try:
            await live.hub.join(channel, feed)
            replay = await live.history.after(channel, since)
        except (HubUnavailable, RedisError, OSError, TimeoutError) as error:
            self._unsubscribe(channel, answer=False)
            logger.warning("subscribe to %s failed: %s", channel, error)
            self._refuse("unavailable", "unavailable", "live events are unavailable, retry", name)
            return
        if not feed.active:  # closed meanwhile
            return
        self.push(_frame(type="subscribed", channel=channel, seq=replay.current, recovered=replay.recovered))
        if replay.frames:
            self.push([frame for _, frame in replay.frames])
        feed.go_live(after=replay.current)
        live.stats.subscribed("ok")

    def _unsubscribe(self, name: str, *, answer: bool = True) -> None:
        try:
            channel = canonical_channel(name)
        except InvalidChannel:
            channel = name
        feed = self.feeds.pop(channel, None)
        if feed is not None:
            feed.active = False
            self.live.hub.leave(channel, feed)
            self.live.stats.active_subscriptions(-1)
        if answer:
            self.push(_frame(type="unsubscribed", channel=channel))

    def _leave_all(self) -> None:
        for channel in list(self.feeds):
            self._unsubscribe(channel, answer=False)

    def _refuse(self, outcome: str, code: str, detail: str, channel: str) -> None:
        self.live.stats.subscribed(outcome)
        self._error(code, detail, channel=channel)

    def _error(self, code: str, detail: str, **fields: str) -> None:
        self.push(_frame(type="error", code=code, detail=detail, **fields))


def _events_in(item: str | list[str] | LiveItem) -> int:
    """How many event frames a queue item holds (a control frame: none)."""
    return 0 if isinstance(item, str) else len(item) if isinstance(item, list) else 1


_REASONS = {
    CloseCode.GOING_AWAY: "shutdown",
    CloseCode.INTERNAL_ERROR: "error",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat",
    CloseCode.HUB_RESTART: "hub_lost",
    CloseCode.SLOW_CONSUMER: "slow_consumer",
    CloseCode.UNAUTHORIZED: "token_expired",
}
