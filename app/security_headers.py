"""Headers every response carries, errors and 401s included: no MIME sniffing, no framing, no referrer; and the
one `before_send` hook that adds them together with the caching and tus headers (one hook, not three, on the
path of every message)."""

from __future__ import annotations

from litestar.types import Message, Scope

from app.http_cache import no_store_by_default
from app.tus_headers import tus_resumable_header

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


async def security_headers(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]


async def response_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so it also sees responses made before routing (404, 405) and by auth (401)."""
    if message["type"] == "http.response.start":
        await no_store_by_default(message, scope)
        await tus_resumable_header(message, scope)
        await security_headers(message, scope)
