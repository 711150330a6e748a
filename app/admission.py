"""Admission: a process that is behind refuses new requests at once with 503 and Retry-After.

Why: an overloaded server that queues everything answers everyone late, and past a point no one at all: clients time
out while their requests still cost CPU. Refusing the excess at the door keeps the admitted requests fast, and a
refusal costs microseconds, so clients and load balancers learn to come back (`Retry-After`) instead of hanging.

"Behind" is either of two limits. Too many requests in flight (API_MAX_IN_FLIGHT). Or requests waiting too long
before they even reach the app (API_MAX_QUEUE_MS): Granian hands each request to the event loop, where it waits its
turn behind everything else; no scope field says for how long, so the loop's own lag stands for it, measured by a
timer that should wake every LAG_INTERVAL_S: how late it woke, or how late it is now if it has not woken yet.

The probes (`/health`, `/ready`) and `/metrics` are always admitted: under overload a load balancer must still see the
process alive. WebSockets are not counted: they live long and have limits of their own. Nor are an upload's appends
(tus `PATCH`) and downloads (`/content`): they last as long as the client's bandwidth, not the server's work, and a
few dozen slow uploaders would otherwise hold every slot of an idle process; they only meet the lag limit.
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send

from app.metrics import REQUESTS_REFUSED

ALWAYS_ADMITTED = frozenset({"/health", "/ready", "/metrics"})
LAG_INTERVAL_S = 0.01
UPLOADS = "/api/uploads/"


class LoopLag:
    """How far behind the running event loop is, in seconds, from a timer that should wake every LAG_INTERVAL_S."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.due = 0.0
        self.lag = 0.0
        self.timer: asyncio.Task[None] | None = None

    def behind_s(self) -> float:
        if self.timer is None:  # started by the first request: the loop of the ASGI server is running by then
            self.loop = asyncio.get_running_loop()
            self.due = self.loop.time() + LAG_INTERVAL_S
            self.timer = self.loop.create_task(self._watch())
        assert self.loop is not None
        return max(self.lag, self.loop.time() - self.due)

    async def _watch(self) -> None:
        assert self.loop is not None
        while True:
            await asyncio.sleep(LAG_INTERVAL_S)
            now = self.loop.time()
            self.lag = max(0.0, now - self.due)
            self.due = now + LAG_INTERVAL_S


class AdmissionMiddleware:
    """The outermost layer: a refusal skips routing, logging and every other middleware (it is counted in
    `roi_requests_refused_total`)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, max_queue_ms: float, retry_after_s: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queue_s = max_queue_ms / 1000
        self.in_flight = 0
        self.lag = LoopLag()
        body = msgspec.json.encode(
            {"status_code": 503, "detail": f"the server is at capacity: retry after {retry_after_s} s"}
        )
        self.refusal_headers = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_s).encode()),
            (b"cache-control", b"no-store"),
        )
        self.refusal_body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        streams = _streams(scope)
        if (self.in_flight >= self.max_in_flight and not streams) or self.lag.behind_s() > self.max_queue_s:
            REQUESTS_REFUSED.inc()
            await self._refuse(send)
            return
        if streams:
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        # Fresh messages each time: the `before_send` hooks add to the headers they are given, and a shared message
        # grew by theirs on every refusal until each refusal took seconds to send (seen under overload).
        headers = list(self.refusal_headers)
        await send(HTTPResponseStartEvent(type="http.response.start", status=503, headers=headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=self.refusal_body, more_body=False))


def _streams(scope: HTTPScope) -> bool:
    path = scope["path"]
    return path.startswith(UPLOADS) and (scope["method"] == "PATCH" or path.endswith("/content"))
