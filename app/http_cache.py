"""HTTP caching: `Cache-Control` on every response, and ETag/304 for the routes that opt in.

A route opts in with `opt={"cache_control": "public, max-age=60"}` (`domain.http.public_cache`), on the handler
or a router: its 200 answers to GET get that `Cache-Control` and a strong ETag of the body, or a bodiless 304
for a matching `If-None-Match`. Every other response, errors included, is `no-store` (app/security_headers):
most of this API is private. Only those routes' bodies are held to be hashed.
"""

from __future__ import annotations

import hashlib

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

CACHE_CONTROL = b"cache-control"
NO_STORE = (CACHE_CONTROL, b"no-store")
_NOT_SENT_WITH_304 = {b"content-length", b"content-type", b"content-encoding"}


def _etag_of(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison, as RFC 9110 §13.1.2 asks for If-None-Match."""
    if if_none_match.strip() == b"*":
        return True
    return any(tag.strip().removeprefix(b"W/") == etag for tag in if_none_match.split(b","))


class ConditionalGetMiddleware:
    """Route middleware: it reads the route's `opt`; listed after compression so that it sees the plain body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy: str | None = scope["route_handler"].opt.get("cache_control")
        if policy is None or scope["type"] != ScopeType.HTTP or scope["method"] != "GET":
            await self.app(scope, receive, send)
        else:
            if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
            await self.app(scope, receive, _with_etag(send, policy.encode(), if_none_match))


def _with_etag(send: Send, policy: bytes, if_none_match: bytes | None) -> Send:
    """Holds a 200's body until it is complete, then sends it with its ETag, or a bodiless 304 if the client has it."""
    start: HTTPResponseStartEvent | None = None
    chunks: list[bytes] = []

    async def send_with_etag(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] == 200:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        etag = _etag_of(body)
        headers = [(k, v) for k, v in _set_cache_control(start, policy) if k.lower() != b"etag"]
        headers.append((b"etag", etag))
        if if_none_match is not None and _matches(if_none_match, etag):
            headers = [(k, v) for k, v in headers if k.lower() not in _NOT_SENT_WITH_304]
            await send(HTTPResponseStartEvent(type="http.response.start", status=304, headers=headers))
            await send(HTTPResponseBodyEvent(type="http.response.body", body=b"", more_body=False))
            return
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send(HTTPResponseStartEvent(type="http.response.start", status=200, headers=headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))

    return send_with_etag


def _set_cache_control(start: HTTPResponseStartEvent, policy: bytes) -> list[tuple[bytes, bytes]]:
    """The route's policy unless the handler chose one itself."""
    headers = list(start.get("headers", []))
    if not any(name.lower() == CACHE_CONTROL for name, _ in headers):
        headers.append((CACHE_CONTROL, policy))
    return headers
