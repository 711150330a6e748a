"""`HEAD` for the pages people and link checkers open (`/`, `/console/...`, `/schema...`): answered as the `GET`
would be, headers and `Content-Length` included, without the body. Litestar routes `HEAD` only to handlers declared
for it (and those may not return a body), so these pages said 405."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEAD_AS_GET_PREFIXES = ("/console/", "/schema")


def _answers_head(path: str) -> bool:
    return path == "/" or path.startswith(HEAD_AS_GET_PREFIXES)


def head_as_get(app: ASGIApp) -> ASGIApp:
    async def answering_head(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD" or not _answers_head(scope["path"]):
            await app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await app({**scope, "method": "GET"}, receive, send_without_body)

    return answering_head
