"""The /ws endpoint of a process: authenticating upgrades, its sockets, the heartbeat, the counters, shutdown.

See `socket.py` for what one connection does, `hub.py` for the shared Redis subscription, `history.py` for replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import asyncpg
from litestar import Litestar, asgi
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from domain.accounts.security import REVOCATIONS_UNREAD, TOKEN_REVOKED, BearerTokenAuth
from domain.events.authorization import ChannelAuthorizer, TokenVerifier
from domain.events.bus import EventKeys
from domain.events.history import History
from domain.events.hub import EventHub
from domain.events.socket import CloseCode, LiveConfig, LiveSocket
from domain.events.stats import LiveStats
from infra.closing import cancel_and_wait, close_within
from infra.granian import run_before_granian_stops
from infra.redis import create_bounded_redis
from infra.settings import Settings

SHUTDOWN_TIMEOUT_S = 5.0
STATS_INTERVAL_S = 1.0
DIRECT_SEND = "roi.direct_send"
"""Scope key of the server's `send` as the outermost middleware passes it on (see `with_direct_send`)."""
REPLAY_CONNECTIONS = 16
REPLAY_TIMEOUT_S = 2.0
TOKEN_REFUSED = "token missing, invalid, expired or revoked: sign in again"
SHUTTING_DOWN = "server shutting down: reconnect with since"


class LiveEvents:
    """The /ws endpoint of one process: its sockets, the hub they share, the heartbeat and the counters."""

    def __init__(
        self,
        hub: EventHub,
        history: History,
        verifier: TokenVerifier,
        authorizer: ChannelAuthorizer,
        config: LiveConfig,
        stats: LiveStats | None = None,
    ) -> None:
        self.hub = hub
        self.history = history
        self.verifier = verifier
        self.authorizer = authorizer
        self.config = config
        self.stats = stats or LiveStats()
        self.sockets: set[LiveSocket] = set()
        self.accepting = True
        self.emptied = asyncio.Event()
        self.sent = 0
        self.dropped = 0
        self.high_water = 0
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.verifier.revoked.on_revocation(self.close_revoked)
        await self.hub.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def stop(self) -> None:
        """Close every socket with GOING_AWAY (they reconnect elsewhere and recover), then let go of Redis."""
        await self.close_all()
        await cancel_and_wait(self._ticker)
        self._flush()
        await self.hub.close()

    async def close_all(self) -> None:
        self.accepting = False
        for socket in list(self.sockets):
            socket.close_soon(CloseCode.GOING_AWAY, SHUTTING_DOWN)
        if self.sockets:
            self.emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.emptied.wait(), SHUTDOWN_TIMEOUT_S)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app of the route: authenticate the upgrade, then run the socket until it ends."""
        if scope["type"] != ScopeType.WEBSOCKET:
            await _plain_http_refusal(send)
            return
        if (await receive())["type"] != "websocket.connect":
            return
        ready = self.accepting and self.verifier.revoked.loaded
        identity = await self.verifier.identify(scope) if ready else None
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        if identity is None:
            # Accepted, then closed with a code of its own: a browser sees an upgrade refused over HTTP only as 1006,
            # the same as a network failure, and would retry a token that can never work.
            if ready:
                self.stats.connected("unauthorized")
                await send({"type": "websocket.close", "code": CloseCode.UNAUTHORIZED, "reason": TOKEN_REFUSED})
            elif self.accepting:
                self.stats.connected("unavailable")
                await send({"type": "websocket.close", "code": CloseCode.HUB_RESTART, "reason": REVOCATIONS_UNREAD})
            else:
                self.stats.connected("unavailable")
                await send({"type": "websocket.close", "code": CloseCode.GOING_AWAY, "reason": SHUTTING_DOWN})
            return
        scope["user"] = identity.user  # the access log names the user
        direct: Send = scope.get(DIRECT_SEND, send)  # type: ignore[assignment]
        socket = LiveSocket(self, send, direct, identity)
        self.sockets.add(socket)
        self.stats.connected("accepted")
        self.stats.open_sockets(1)
        try:
            await socket.run(receive)
        finally:
            self.sockets.discard(socket)
            if not self.sockets:
                self.emptied.set()
            self.stats.open_sockets(-1)
            self.stats.disconnected(socket.reason)

    def close_revoked(self) -> None:
        """Revocations arrived: the sockets of tokens they refuse are closed with 4401 (within the poll interval)."""
        revoked = self.verifier.revoked
        for socket in list(self.sockets):
            if revoked.refuses(socket.user):
                socket.close_soon(CloseCode.UNAUTHORIZED, TOKEN_REVOKED)

    def raise_high_water(self, depth: int) -> None:
        self.high_water = depth
        self.stats.backlog_high_water(depth)

    async def _tick_forever(self) -> None:
        interval = min(STATS_INTERVAL_S, self.config.heartbeat_s)
        next_heartbeat = time.monotonic() + self.config.heartbeat_s
        while True:
            await asyncio.sleep(interval)
            self._flush()
            if time.monotonic() >= next_heartbeat:
                next_heartbeat += self.config.heartbeat_s
                for socket in list(self.sockets):
                    socket.heartbeat()

    def _flush(self) -> None:
        if self.sent:
            self.stats.sent(self.sent)
            self.sent = 0
        if self.dropped:
            self.stats.dropped(self.dropped)
            self.dropped = 0


async def _plain_http_refusal(send: Send) -> None:
    body = b'{"status_code":426,"detail":"Upgrade Required"}'
    headers = [(b"content-type", b"application/json"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    await send({"type": "http.response.start", "status": 426, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LiveEventsNeeds(Protocol):
    """What the endpoint takes from the process's services."""

    settings: Settings
    jwt_auth: BearerTokenAuth
    asyncpg_pool: asyncpg.Pool


def live_events_lifespan(
    config: LiveConfig, stats: LiveStats | None, needs: Callable[[Litestar], LiveEventsNeeds]
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that runs the process's `LiveEvents` as `app.state.live_events`; list it after the one that
    opens the services `needs` reads. Under Granian, sockets are closed with GOING_AWAY before the worker stops."""

    @asynccontextmanager
    async def running(app: Litestar) -> AsyncIterator[None]:
        services = needs(app)
        redis_url, keys = services.settings.redis_url or "", EventKeys(services.settings.redis_namespace)
        replay_redis = create_bounded_redis(redis_url, REPLAY_CONNECTIONS, REPLAY_TIMEOUT_S)
        live = LiveEvents(
            EventHub(redis_url, keys),
            History(replay_redis, keys),
            TokenVerifier(services.jwt_auth, services.jwt_auth.revoked),
            ChannelAuthorizer(services.asyncpg_pool),
            config,
            stats,
        )
        await live.start()
        app.state.live_events = live
        run_before_granian_stops(live.close_all)
        try:
            yield
        finally:
            await close_within("the live events", live.stop())
            await close_within("the replay Redis", replay_redis.aclose())

    return running


def with_direct_send(app: ASGIApp) -> ASGIApp:
    """Keep the `send` this wrapper is given in the scope of WebSocket connections: the /ws handler sends its frames
    through it, past the per-message wrappers of routing and route middleware (exception capture, compression), which
    act on HTTP responses only; skipping them cut a 1,000-socket fan-out's server CPU by ~15%. Litestar's `before_send`
    hooks wrap `send` before any middleware, so they still run. Accept and close take the whole way."""

    async def app_with_direct_send(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET:
            scope[DIRECT_SEND] = send  # type: ignore[literal-required]
        await app(scope, receive, send)

    return app_with_direct_send


@asgi("/ws", opt={"exclude_from_auth": True}, include_in_schema=False)
async def live_events_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Live events over WebSocket (see API.md); the token comes in the header or as `?token=`."""
    live: LiveEvents = scope["app"].state.live_events
    await live.serve(scope, receive, send)
