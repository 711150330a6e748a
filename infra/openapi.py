"""The OpenAPI of answers that Litestar cannot infer: bodies rendered elsewhere, header-only answers, errors, 304s."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec


def documented(schema: type, description: str, status_code: int = 200) -> dict[int, ResponseSpec]:
    """OpenAPI for a handler that answers bytes rendered elsewhere (PostgreSQL, the cache): the body's real schema
    instead of `bytes`."""
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


NOT_MODIFIED = {304: ResponseSpec(None, description="If-None-Match matched the ETag: the client's copy is current")}
"""OpenAPI for the bodiless 304 of a route that is the same for every caller (`Cache-Control: public`, an ETag)."""
