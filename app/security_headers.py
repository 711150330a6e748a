"""Headers every response carries, errors and 401s included: no MIME sniffing, no framing, no referrer."""

from __future__ import annotations

from litestar.types import Message, Scope

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


async def security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so it also sees responses made before routing (404, 405) and by auth (401)."""
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
