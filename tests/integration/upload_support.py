"""For the upload tests: tus requests through the test client, and where the service keeps the bytes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from domain.services import upload_storage
from infra.settings import Settings
from tests.integration.support import Account

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = {"Content-Type": "application/offset+octet-stream"}


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def checksum(algorithm: str, body: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"


async def create_upload(
    client: AsyncTestClient | httpx.AsyncClient, account: Account, length: int, **headers: str
) -> str:
    """A new upload's URL path."""
    answer = await client.post(
        "/api/uploads", headers={**account.headers, **TUS, "Upload-Length": str(length), **headers}
    )
    assert answer.status_code == 201, answer.text
    location: str = answer.headers["location"]
    return location


async def append(
    client: AsyncTestClient | httpx.AsyncClient,
    account: Account,
    location: str,
    offset: int,
    body: Any,
    **headers: str,
) -> httpx.Response:
    return await client.patch(
        location,
        headers={**account.headers, **TUS, **OFFSET_STREAM, "Upload-Offset": str(offset), **headers},
        content=body,
    )


async def offset_of(client: AsyncTestClient | httpx.AsyncClient, account: Account, location: str) -> int:
    answer = await client.head(location, headers={**account.headers, **TUS})
    assert answer.status_code == 200, answer.status_code
    return int(answer.headers["upload-offset"])


async def upload_view(client: AsyncTestClient | httpx.AsyncClient, account: Account, location: str) -> dict[str, Any]:
    answer = await client.get(location, headers=account.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def stored_file(data_dir: Path, location: str) -> Path:
    """Where a service with ROI_DATA_DIR `data_dir` keeps the bytes of the upload at `location`."""
    upload_id = location.rsplit("/", 1)[-1].replace("-", "")
    return data_dir / "uploads" / upload_id


async def stored_bytes(settings: Settings, location: str) -> bytes | None:
    """The bytes the store of `settings` holds for the upload at `location` (as its reader reads them), or None."""
    storage = upload_storage(settings)
    upload_id = uuid.UUID(location.rsplit("/", 1)[-1])
    try:
        stream = await asyncio.to_thread(storage.reader, upload_id)
    except FileNotFoundError:
        return None
    with stream:
        return await asyncio.to_thread(stream.read)
