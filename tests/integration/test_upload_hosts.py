"""With the `file` store an upload's bytes live on the host that received them: another host refuses to append
rather than write after a hole, and acknowledges nothing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.settings import Settings
from testkit.ledgers import csv_ledger_bytes
from tests.integration.support import Account
from tests.integration.upload_support import append, create_upload, metadata, offset_of, stored_file

FIRST_PART = 100_000


@pytest.fixture
async def other_host(settings: Settings, tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    """A second API host: the same PostgreSQL and Redis, a data dir of its own."""
    app = create_app(msgspec.structs.replace(settings, roi_data_dir=tmp_path / "host-b"))
    async with AsyncTestClient(app) as host_b:
        yield host_b


async def test_a_host_without_the_earlier_bytes_refuses_the_chunk_and_stores_nothing(
    client: AsyncTestClient, other_host: AsyncTestClient, alice: Account, settings: Settings, tmp_path: Path
) -> None:
    ledger, _ = csv_ledger_bytes(8_000)
    location = await create_upload(client, alice, len(ledger))
    first = await append(client, alice, location, 0, ledger[:FIRST_PART])
    assert first.status_code == 204

    refused = await append(other_host, alice, location, FIRST_PART, ledger[FIRST_PART:])

    assert refused.status_code == 503
    assert "UPLOAD_STORE" in refused.json()["detail"]
    assert refused.headers["retry-after"]
    assert await offset_of(client, alice, location) == FIRST_PART, "the offset of record did not move"
    assert not stored_file(tmp_path / "host-b", location).exists(), "nothing was written on the other host"
    assert stored_file(settings.roi_data_dir, location).read_bytes() == ledger[:FIRST_PART]

    finished = await append(client, alice, location, FIRST_PART, ledger[FIRST_PART:])
    assert finished.status_code == 204, "the host holding the bytes still takes the rest"
    assert stored_file(settings.roi_data_dir, location).read_bytes() == ledger


async def test_the_owner_reads_a_complete_upload_back_byte_for_byte(
    client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    ledger, _ = csv_ledger_bytes(40_000)
    location = await create_upload(client, alice, len(ledger), **{"Upload-Metadata": metadata(filename='q3 "€".csv')})
    assert (await append(client, alice, location, 0, ledger[:FIRST_PART])).status_code == 204

    early = await client.get(f"{location}/content", headers=alice.headers)
    assert early.status_code == 409
    assert f"{FIRST_PART} of {len(ledger)} bytes" in early.json()["detail"]

    assert (await append(client, alice, location, FIRST_PART, ledger[FIRST_PART:])).status_code == 204
    content = await client.get(f"{location}/content", headers={**alice.headers, "Accept-Encoding": "identity"})
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(ledger).hexdigest()
    assert content.headers["content-length"] == str(len(ledger))
    assert content.headers["content-disposition"] == (
        "attachment; filename=\"q3 ___.csv\"; filename*=UTF-8''q3%20%22%E2%82%AC%22.csv"
    )
    compressed = await client.get(f"{location}/content", headers={**alice.headers, "Accept-Encoding": "gzip"})
    assert compressed.content == ledger, "a compressing client gets the same bytes"
    assert (await client.get(f"{location}/content", headers=bob.headers)).status_code == 404
