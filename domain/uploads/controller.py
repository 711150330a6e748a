"""HTTP for uploads: the tus 1.0.0 verbs at /api/uploads and the JSON views. Parse headers, call the service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, head, patch, post, route
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from domain.accounts.security import BEARER_REQUIREMENT, Caller
from domain.errors import InvalidInput, NotFound, UnsupportedMediaType
from domain.http import HeadResponse, json_bytes
from domain.uploads import tus
from domain.uploads.schemas import UploadOut, UploadPage
from domain.uploads.service import ClientGone, UploadService
from infra.openapi import documented, errors, headers_only, tus_operation

UPLOADS_PATH = "/api/uploads"
NO_STORE = {"Cache-Control": "no-store"}


async def request_chunks(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The body as the server hands it over, never whole in memory; ClientGone if the client leaves mid-way."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("the client disconnected before the body was complete")
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _offset_headers(offset: int, expires: str | None) -> dict[str, str]:
    headers = {"Upload-Offset": str(offset)}
    if expires:
        headers["Upload-Expires"] = expires
    return headers


class UploadController(Controller):
    """Every response here also carries `Tus-Resumable` (app.asgi adds it, errors included); the app provides
    `uploads`, the process's UploadService."""

    security = [BEARER_REQUIREMENT]
    path = UPLOADS_PATH
    tags = ["uploads"]

    @route(
        http_method=HttpMethod.OPTIONS,
        status_code=HTTP_204_NO_CONTENT,
        summary="tus capabilities",
        responses=headers_only(HTTP_204_NO_CONTENT, "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")
        | errors(401),
        operation_class=tus_operation(
            {}, ("Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm"), "none"
        ),
    )
    async def capabilities(self, request: Caller, uploads: UploadService) -> Response[None]:
        return Response(
            None,
            status_code=HTTP_204_NO_CONTENT,
            headers={
                "Tus-Version": tus.VERSION,
                "Tus-Extension": tus.EXTENSIONS,
                "Tus-Max-Size": str(uploads.max_size),
                "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
            },
        )

    @post(
        status_code=HTTP_201_CREATED,
        summary="Create an upload (tus creation, creation-with-upload)",
        responses=headers_only(HTTP_201_CREATED, "Location names the new upload; Upload-Offset is what it holds")
        | errors(400, 401, 408, 409, 412, 413, 460, 507),
        operation_class=tus_operation(
            {"Tus-Resumable": True, "Upload-Length": True, "Upload-Metadata": False, "Upload-Checksum": False},
            ("Location", "Upload-Offset", "Upload-Expires"),
            "optional",
        ),
    )
    async def create_upload(self, request: Caller, uploads: UploadService) -> Response[bytes]:
        headers = request.headers
        tus.check_version(headers.get("tus-resumable"))
        if "upload-defer-length" in headers:
            raise InvalidInput("Upload-Defer-Length: not supported; send Upload-Length")
        length = tus.upload_length(headers.get("upload-length"), uploads.max_size)
        content_length = tus.optional_length(headers.get("content-length"))
        checksum = tus.parse_checksum(headers.get("upload-checksum"))
        created = await uploads.create(request.user.id, length, headers.get("upload-metadata"))
        upload_id = created.upload_id
        offset_headers = _offset_headers(0, created.expires_at)
        if headers.get("content-type") == tus.OFFSET_CONTENT_TYPE and content_length != 0:
            appended = await uploads.append(
                upload_id, request.user.id, 0, content_length, checksum, request_chunks(request)
            )
            offset_headers = _offset_headers(appended.offset, appended.expires_at)
        response_headers = {"Location": f"{UPLOADS_PATH}/{upload_id}", **offset_headers}
        return Response(b"", status_code=HTTP_201_CREATED, headers=response_headers)

    @head(
        "/{upload_id:str}",
        summary="The upload's offset (tus)",
        responses=headers_only(HTTP_200_OK, "Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires")
        | errors(401, 404, 410, 412),
        operation_class=tus_operation(
            {"Tus-Resumable": True}, ("Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Expires"), "none"
        ),
    )
    async def upload_offset(self, upload_id: str, request: Caller, uploads: UploadService) -> Response[None]:
        tus.check_version(request.headers.get("tus-resumable"))
        state = await uploads.repository.head(_upload_id(upload_id), request.user.id)
        headers = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length), **NO_STORE}
        if state.tus_metadata:
            headers["Upload-Metadata"] = state.tus_metadata
        if state.expires_at is not None:
            headers["Upload-Expires"] = tus.http_date(state.expires_at)
        return HeadResponse(headers)

    @patch(
        "/{upload_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Append to the upload (tus)",
        responses=headers_only(HTTP_204_NO_CONTENT, "Upload-Offset after the appended bytes; Upload-Expires")
        | errors(400, 401, 404, 408, 409, 410, 412, 413, 415, 423, 460, 507),
        operation_class=tus_operation(
            {"Tus-Resumable": True, "Upload-Offset": True, "Upload-Checksum": False},
            ("Upload-Offset", "Upload-Expires"),
            "required",
        ),
    )
    async def append_to_upload(self, upload_id: str, request: Caller, uploads: UploadService) -> Response[None]:
        headers = request.headers
        tus.check_version(headers.get("tus-resumable"))
        if headers.get("content-type") != tus.OFFSET_CONTENT_TYPE:
            raise UnsupportedMediaType(f"Content-Type: a tus PATCH sends {tus.OFFSET_CONTENT_TYPE}")
        offset = tus.non_negative_int("Upload-Offset", headers.get("upload-offset"))
        content_length = tus.optional_length(headers.get("content-length"))
        checksum = tus.parse_checksum(headers.get("upload-checksum"))
        appended = await uploads.append(
            _upload_id(upload_id), request.user.id, offset, content_length, checksum, request_chunks(request)
        )
        return Response(
            None, status_code=HTTP_204_NO_CONTENT, headers=_offset_headers(appended.offset, appended.expires_at)
        )

    @delete(
        "/{upload_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete the upload (tus termination)",
        responses=errors(401, 404, 412),
        operation_class=tus_operation({"Tus-Resumable": True}, (), "none"),
    )
    async def delete_upload(self, upload_id: str, request: Caller, uploads: UploadService) -> None:
        tus.check_version(request.headers.get("tus-resumable"))
        await uploads.terminate(_upload_id(upload_id), request.user.id)

    @get(responses=documented(UploadPage, "The caller's uploads, newest first") | errors(400, 401))
    async def list_uploads(
        self,
        request: Caller,
        uploads: UploadService,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        offset: Annotated[int, Parameter(ge=0, le=1_000_000_000)] = 0,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> Response[bytes]:
        return json_bytes(await uploads.page_json(request.user.id, limit, offset, cursor))

    @get(
        "/{upload_id:str}/content",
        summary="The complete upload's bytes, as stored",
        responses={
            HTTP_200_OK: ResponseSpec(bytes, description="The bytes, streamed", media_type="application/octet-stream")
        }
        | errors(401, 404, 409, 410),
    )
    async def upload_content(self, upload_id: str, request: Caller, uploads: UploadService) -> Stream:
        content = await uploads.content(_upload_id(upload_id), request.user.id)
        headers = {
            "Content-Length": str(content.length),
            "Content-Disposition": _attachment(content.filename),
            **NO_STORE,
        }
        return Stream(content.chunks, media_type="application/octet-stream", headers=headers)

    @get(
        "/{upload_id:str}",
        responses=documented(UploadOut, "The upload: offset, status, and once parsed its size") | errors(401, 404),
    )
    async def get_upload(self, upload_id: str, request: Caller, uploads: UploadService) -> Response[bytes]:
        return json_bytes(await uploads.detail_json(_upload_id(upload_id), request.user.id))


def _attachment(filename: str | None) -> str:
    """A Content-Disposition that no filename can break out of: ASCII fallback, the full name RFC 5987-encoded."""
    if not filename:
        return "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _upload_id(value: str) -> uuid.UUID:
    """A malformed id names no upload: 404, as for any id that is not the caller's."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no upload with this id") from None
