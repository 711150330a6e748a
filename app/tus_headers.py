"""tus 1.0.0 at the edge: `Tus-Resumable` on every upload response, and `X-HTTP-Method-Override`.

Both act outside routing: the header must be on 401s and errors too, and the override must pick the route.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.uploads.controller import UPLOADS_PATH

_TUS_RESUMABLE = (b"tus-resumable", b"1.0.0")
_OVERRIDE = b"x-http-method-override"
_OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}


async def tus_resumable_header(message: Message, scope: Scope) -> None:
    """A `before_send` hook: it sees responses made by auth and by the exception handlers too."""
    if message["type"] == "http.response.start" and scope["path"].startswith(UPLOADS_PATH):
        message["headers"] = [*message.get("headers", ()), _TUS_RESUMABLE]


def method_override(app: ASGIApp) -> ASGIApp:
    """A POST to an upload carrying `X-HTTP-Method-Override: PATCH` (or DELETE, HEAD) is that request, as tus
    asks, for clients behind proxies that only pass GET and POST. Nowhere else: the rest of the API has no use
    for it."""

    async def overriding(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == ScopeType.HTTP
            and scope["method"] == "POST"
            and scope["path"].startswith(UPLOADS_PATH + "/")
        ):
            override = next((value for name, value in scope["headers"] if name == _OVERRIDE), b"").decode().upper()
            if override in _OVERRIDABLE:
                scope = {**scope, "method": override}  # type: ignore[typeddict-item]
        await app(scope, receive, send)

    return overriding
