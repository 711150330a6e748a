"""Small pieces every controller shares: raw JSON responses, the OpenAPI of every answer, the caller's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec

from domain.accounts.schemas import CurrentUser


def json_bytes(body: bytes, status_code: int = 200) -> Response[bytes]:
    """A response whose body is JSON already rendered elsewhere (PostgreSQL, the cache): sent as is."""
    return Response(body, status_code=status_code, media_type="application/json")


def documented(schema: type, description: str, status_code: int = 200) -> dict[int, ResponseSpec]:
    """OpenAPI for a handler that answers `json_bytes`: the body's real schema instead of `bytes`."""
    return {status_code: ResponseSpec(schema, description=description)}


def headers_only(status_code: int, headers: str) -> dict[int, ResponseSpec]:
    """OpenAPI for an answer whose content is all in its headers (the tus verbs): no body, whatever Litestar infers."""
    return {status_code: ResponseSpec(None, description=f"No body; the answer is in the headers: {headers}")}


class ErrorBody(msgspec.Struct):
    """Litestar's standard error body, which every error answer of this API carries."""

    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


ERROR_MEANINGS = {
    400: "A parameter, header or the body is invalid; `detail` names it",
    401: "No valid bearer token",
    404: "No such resource among the caller's",
    408: "The body stopped arriving; what arrived is kept, resume from Upload-Offset",
    409: "The request conflicts with the resource's current state; `detail` says how",
    410: "The upload expired before it was complete",
    412: "Tus-Resumable is missing or not 1.0.0",
    413: "The body is larger than allowed",
    415: "Content-Type is not application/offset+octet-stream",
    423: "Another request is appending to this upload; retry after it ends",
    429: "Too many failed attempts; retry after `Retry-After` seconds",
    460: "Upload-Checksum does not match the body (tus checksum extension)",
    503: "The database is unavailable, or (tus PATCH) this host does not hold the upload's earlier bytes; retry after"
    " `Retry-After` seconds",
    507: "No room to store the upload now; nothing was kept, retry later",
}


def errors(*status_codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI for the error answers a handler gives besides its success, so that clients see every status; every
    such handler reads PostgreSQL, so each may also answer 503 while it is down."""
    return {
        code: ResponseSpec(ErrorBody, description=ERROR_MEANINGS[code], generate_examples=False)
        for code in (*status_codes, 503)
    }


Caller = Request[CurrentUser, Any, State]
"""A request from an authenticated user: `request.user` is who is calling (read from the token, no query)."""


def provide_current_user(request: Request[CurrentUser, Any, Any]) -> CurrentUser:
    return request.user


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
    """Route `opt` for an answer the same for every caller: `Cache-Control: public` and an ETag (app/http_cache)."""
    return {"cache_control": f"public, max-age={max_age_s}"}


NOT_MODIFIED = {304: ResponseSpec(None, description="If-None-Match matched the ETag: the client's copy is current")}
"""OpenAPI for the bodiless 304 that a `public_cache` route gives."""
