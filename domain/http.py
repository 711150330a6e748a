"""Small pieces every controller shares: raw JSON responses, strict bodies, public caching.

Their OpenAPI helpers are in `infra.openapi`; who is calling is `domain.accounts.security.Caller`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.response.base import ASGIResponse


def json_bytes(body: bytes, status_code: int = 200) -> Response[bytes]:
    """A response whose body is JSON already rendered elsewhere (PostgreSQL, the cache): sent as is."""
    return Response(body, status_code=status_code, media_type="application/json")


class HeadResponse(Response[None]):
    """An answer to HEAD: headers only. A plain `Response(None)` is rendered as the JSON `null`, so it went out as
    `Content-Type: application/json` with `Content-Length: 4` for a body HEAD never carries; tus clients read only
    the headers, and a proxy must not take those four bytes for the resource."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(None, headers=headers)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        return super().to_asgi_response(*args, **{**kwargs, "is_head_response": True})


def strict_body(schema: type) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook that refuses JSON of the wrong types.

    Litestar converts bodies leniently (the string "12" passes as a number); a contract should not.
    The handler's own parse reuses the cached body, so this costs one extra decode on write paths only.
    """

    async def check(request: Request[Any, Any, Any]) -> None:
        try:
            msgspec.json.decode(await request.body(), type=schema)
        except msgspec.ValidationError as error:
            message, _, location = str(error).partition(" - at `")
            key = location.rstrip("`").removeprefix("$").removeprefix(".")
            raise ValidationException(
                f"Validation failed for {request.method} {request.url.path}",
                extra=[{"message": message, "key": key, "source": "body"}],
            ) from error
        except msgspec.DecodeError as error:
            raise ValidationException(f"Malformed JSON body: {error}") from error

    return check


def public_cache(max_age_s: int) -> dict[str, object]:
    """Route `opt` for an answer the same for every caller: `Cache-Control: public` and an ETag (app/http_cache);
    document its 304 with `infra.openapi.NOT_MODIFIED`."""
    return {"cache_control": f"public, max-age={max_age_s}"}
