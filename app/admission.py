"""Admission: past a number of requests in flight per process, the next ones are refused at once with 503.

Why: an overloaded server that queues everything answers everyone late, and past a point no one at all: clients time
out while their requests still cost CPU. Refusing the excess at the door keeps the admitted requests fast, and a
refusal costs microseconds, so clients and load balancers learn to come back (`Retry-After`) instead of hanging.
The probes (`/health`, `/ready`) and `/metrics` are always admitted: under overload a load balancer must still see the
process alive. WebSockets are not counted: they live long and have limits of their own.
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from app.metrics import REQUESTS_REFUSED

ALWAYS_ADMITTED = frozenset({"/health", "/ready", "/metrics"})


class AdmissionMiddleware:
    """The outermost layer: a refusal skips routing, logging and every other middleware (it is counted in
    `roi_requests_refused_total`)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        body = msgspec.json.encode(
            {"status_code": 503, "detail": f"the server is at capacity: retry after {retry_after_s} s"}
        )
        self.refusal_start = {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
        self.refusal_body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            REQUESTS_REFUSED.inc()
            await send(self.refusal_start)  # type: ignore[arg-type]
            await send(self.refusal_body)  # type: ignore[arg-type]
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
