"""Each request observed once: an id, one JSON access line and the request metrics (a WebSocket: the line only)."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id
from app.metrics import REQUESTS_IN_PROGRESS, observe_request

logger = logging.getLogger("roi.access")

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "<unmatched>"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's `X-Request-ID` when it is a sane token (it ends up in logs and headers), else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.fullmatch(value):
            return value.decode()
    return os.urandom(16).hex()


class RequestObserverMiddleware:
    """Wraps the whole app, routing included, so that unmatched paths and refused credentials are seen too.

    Logs and labels the route template, never the raw path, query or headers: those can carry tokens (`?token=`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _request_id(scope["headers"])
        echo = (REQUEST_ID_HEADER, rid.encode())
        status = 500
        close_code: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, close_code
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
                message["headers"] = [*message.get("headers", []), echo]
            elif message["type"] == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", []), echo]
            elif message["type"] == "websocket.close":
                close_code = message.get("code", 1000)
                if status == 500:  # closed before the handshake completed: the server refuses the upgrade
                    status = 403
            await send(message)

        is_http = scope["type"] == ScopeType.HTTP
        token = request_id.set(rid)
        if is_http:  # a WebSocket's lifetime is no request duration; it has its own gauge
            REQUESTS_IN_PROGRESS.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_s = time.perf_counter() - started
            method = scope["method"] if scope["type"] == ScopeType.HTTP else "WEBSOCKET"
            route = scope.get("path_template", UNMATCHED)
            if is_http:
                REQUESTS_IN_PROGRESS.dec()
                observe_request(method, route, status, duration_s)
            if logger.isEnabledFor(logging.INFO):
                user = scope.get("user")
                client = scope.get("client")
                fields = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 3),
                    "request_id": rid,
                    "user_id": getattr(user, "id", None),
                    "client": client[0] if client else None,
                }
                if close_code is not None:
                    fields["close_code"] = close_code
                logger.info("request", extra={"fields": fields})
            request_id.reset(token)
