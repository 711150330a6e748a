"""tus 1.0.0 at the edge: the `Tus-Resumable` header (added to every upload response by app/security_headers,
401s and errors included) and `X-HTTP-Method-Override`, which must act before routing to pick the route."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from domain.uploads.controller import UPLOADS_PATH

TUS_RESUMABLE = (b"tus-resumable", b"1.0.0")
_OVERRIDE = b"x-http-method-override"
_OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}


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
