"""The OpenAPI of answers that Litestar cannot infer: bodies rendered elsewhere, header-only answers, errors, 304s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from litestar.enums import ParamType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)


def documented(schema: type, description: str, status_code: int = 200) -> dict[int, ResponseSpec]:
    """OpenAPI for a handler that answers bytes rendered elsewhere (PostgreSQL, the cache): the body's real schema
    instead of `bytes`."""
    return {status_code: ResponseSpec(schema, description=description, generate_examples=False)}


def headers_only(status_code: int, headers: str) -> dict[int, ResponseSpec]:
    """OpenAPI for an answer whose content is all in its headers (the tus verbs): no body, whatever Litestar infers."""
    return {status_code: ResponseSpec(None, description=f"No body; the answer is in the headers: {headers}")}


def no_content(description: str) -> dict[int, ResponseSpec]:
    """OpenAPI for a 204 answer: no body, hence no content type."""
    return {204: ResponseSpec(None, description=description)}


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


TUS_HEADERS: dict[str, tuple[Schema, str]] = {
    "Tus-Resumable": (Schema(type=OpenAPIType.STRING, const="1.0.0"), "The tus version: 1.0.0"),
    "Upload-Length": (Schema(type=OpenAPIType.STRING, pattern=r"^\d+$"), "The upload's whole size in bytes"),
    "Upload-Offset": (
        Schema(type=OpenAPIType.STRING, pattern=r"^\d+$"),
        "Bytes the upload holds (before a PATCH: where its body goes, which must be that)",
    ),
    "Upload-Metadata": (
        Schema(type=OpenAPIType.STRING),
        "Comma-separated `key base64value` pairs (`filename`, `filetype`)",
    ),
    "Upload-Checksum": (
        Schema(type=OpenAPIType.STRING),
        "`sha1|md5|sha256 base64digest` of this request's body; 460 if it does not match",
    ),
    "Upload-Expires": (Schema(type=OpenAPIType.STRING), "When an incomplete upload expires (RFC 9110 date)"),
    "Location": (Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI_REFERENCE), "The new upload's URL"),
    "Tus-Version": (Schema(type=OpenAPIType.STRING), "Versions supported: 1.0.0"),
    "Tus-Extension": (Schema(type=OpenAPIType.STRING), "Extensions supported"),
    "Tus-Max-Size": (Schema(type=OpenAPIType.STRING, pattern=r"^\d+$"), "The largest Upload-Length accepted"),
    "Tus-Checksum-Algorithm": (Schema(type=OpenAPIType.STRING), "Algorithms Upload-Checksum may name"),
}
"""What each tus header carries, as the operations below document it (tus 1.0.0 and its extensions)."""

OFFSET_STREAM_BODY = "application/offset+octet-stream"


def tus_operation(
    request_headers: dict[str, bool], response_headers: tuple[str, ...], body: Literal["none", "optional", "required"]
) -> type[Operation]:
    """An `operation_class` for a tus verb: its request headers (name → required) as header parameters, the headers of
    its success answer, and its `application/offset+octet-stream` body, none of which Litestar can infer (the handler
    reads them from the request itself, for tus's own status codes)."""

    @dataclass
    class TusOperation(Operation):
        def __post_init__(self) -> None:
            headers = [
                Parameter(
                    name=name,
                    param_in=ParamType.HEADER,
                    required=required,
                    schema=TUS_HEADERS[name][0],
                    description=TUS_HEADERS[name][1],
                )
                for name, required in request_headers.items()
            ]
            self.parameters = [*(self.parameters or []), *headers]
            if body != "none":
                binary = Schema(type=OpenAPIType.STRING, content_media_type="application/octet-stream")
                self.request_body = RequestBody(
                    content={OFFSET_STREAM_BODY: OpenAPIMediaType(schema=binary)},
                    required=body == "required",
                    description="The bytes to write at Upload-Offset",
                )
            for code, response in (self.responses or {}).items():
                if code.startswith("2") and isinstance(response, OpenAPIResponse):
                    response.headers = {
                        name: OpenAPIHeader(schema=TUS_HEADERS[name][0], description=TUS_HEADERS[name][1])
                        for name in response_headers
                    }

    return TusOperation


def with_body_examples(examples: dict[str, Example]) -> type[Operation]:
    """An `operation_class` that gives the JSON request body named examples (Swagger's "Try it out" sends the
    first), where a body generated from the schema alone would not be one the API accepts."""

    @dataclass
    class OperationWithExamples(Operation):
        def __post_init__(self) -> None:
            if isinstance(self.request_body, RequestBody):
                self.request_body.content["application/json"].examples = dict(examples)

    return OperationWithExamples
