"""`Tus-Resumable` on every response under /api/uploads, errors and 401s included, as tus 1.0.0 asks."""

from __future__ import annotations

from litestar.types import Message, Scope

from domain.uploads.controller import UPLOADS_PATH

_TUS_RESUMABLE = (b"tus-resumable", b"1.0.0")


async def tus_resumable_header(message: Message, scope: Scope) -> None:
    """A `before_send` hook: it sees responses made by auth and by the exception handlers too."""
    if message["type"] == "http.response.start" and scope["path"].startswith(UPLOADS_PATH):
        message["headers"] = [*message.get("headers", ()), _TUS_RESUMABLE]
