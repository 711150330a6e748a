"""Headers every response carries, errors and 401s included: no MIME sniffing, no framing, no referrer; and the
one `before_send` hook that adds them, `no-store` by default and tus's `Tus-Resumable` in a single pass."""

from __future__ import annotations

from litestar.types import Message, Scope

from app.http_cache import CACHE_CONTROL, NO_STORE
from app.tus_headers import TUS_RESUMABLE
from domain.uploads.controller import UPLOADS_PATH

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


async def response_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so it also sees responses made before routing (404, 405) and by auth (401).

    Private or changing data is the default here, so a response that sets no `Cache-Control` gets `no-store`.
    """
    if message["type"] != "http.response.start":
        return
    headers = [*message.get("headers", ()), *SECURITY_HEADERS]
    if not any(name.lower() == CACHE_CONTROL for name, _ in headers):
        headers.append(NO_STORE)
    if scope["path"].startswith(UPLOADS_PATH):
        headers.append(TUS_RESUMABLE)
    message["headers"] = headers
