"""UPLOAD_STORE=s3://… on SeaweedFS: what only a shared bucket does (any host appends), and what its objects show."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import obstore
import pytest
from litestar.testing import AsyncTestClient
from obstore.store import S3Store

from app.asgi import create_app
from domain.uploads.processing import parse_upload
from domain.uploads.s3_storage import SEGMENT_BYTES, S3Storage, open_bucket, parse_store_url
from infra.settings import Settings
from testkit.ledgers import csv_ledger_bytes
from tests.integration.redis_support import free_port
from tests.integration.support import Account
from tests.integration.upload_support import append, checksum, create_upload, offset_of, stored_bytes


def s3_settings(settings: Settings, s3_store: str, data_dir: Path) -> Settings:
    return msgspec.structs.replace(settings, upload_store=s3_store, roi_data_dir=data_dir)


@pytest.fixture
async def host_b(settings: Settings, s3_store: str, tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    """A second API host: the same PostgreSQL, Redis and bucket, a data dir of its own."""
    async with AsyncTestClient(create_app(s3_settings(settings, s3_store, tmp_path / "host-b"))) as client:
        yield client


async def objects_of(s3_store: str, location: str) -> dict[str, int]:
    """The upload's objects in the bucket, by name, with their sizes."""
    prefix = uuid.UUID(location.rsplit("/", 1)[-1]).hex
    listed = await obstore.list(open_bucket(s3_store), prefix).collect_async()
    return {meta["path"].rsplit("/", 1)[-1]: meta["size"] for meta in listed}


async def test_chunks_alternating_between_hosts_make_one_upload_read_back_byte_for_byte(
    s3_client: AsyncTestClient, host_b: AsyncTestClient, alice: Account, settings: Settings, s3_store: str
) -> None:
    ledger, _ = csv_ledger_bytes(30_000)
    hosts = [s3_client, host_b]
    location = await create_upload(s3_client, alice, len(ledger))
    step = 100_000
    for number, start in enumerate(range(0, len(ledger), step)):
        answer = await append(hosts[number % 2], alice, location, start, ledger[start : start + step])
        assert answer.status_code == 204, answer.text
        assert await offset_of(hosts[(number + 1) % 2], alice, location) == min(start + step, len(ledger))

    for host in hosts:
        content = await host.get(f"{location}/content", headers={**alice.headers, "Accept-Encoding": "identity"})
        assert content.status_code == 200
        assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(ledger).hexdigest()
    assert await stored_bytes(s3_settings(settings, s3_store, Path("unused")), location) == ledger
    assert sum((await objects_of(s3_store, location)).values()) == len(ledger), "no stray objects"


async def test_segments_are_stored_as_opaque_bytes_that_the_store_keeps_as_sent(
    s3_client: AsyncTestClient, alice: Account, s3_store: str
) -> None:
    """Typed as S3 types what it is given untyped, so that a store does not sniff: SeaweedFS gzips what it takes for
    text (a CSV ledger), costing its CPU on every segment."""
    ledger, _ = csv_ledger_bytes(100)
    location = await create_upload(s3_client, alice, len(ledger))
    assert (await append(s3_client, alice, location, 0, ledger)).status_code == 204

    prefix = uuid.UUID(location.rsplit("/", 1)[-1]).hex
    stored = await obstore.get_async(open_bucket(s3_store), f"{prefix}/{0:020d}")
    assert stored.attributes.get("Content-Type") == "binary/octet-stream"
    assert bytes(await stored.bytes_async()) == ledger


async def test_a_big_chunk_with_a_wrong_checksum_is_460_and_leaves_no_object(
    s3_client: AsyncTestClient, alice: Account, settings: Settings, s3_store: str
) -> None:
    """Past SEGMENT_BYTES a chunk is put in the bucket before its checksum can be known: those objects go again."""
    body = b"x" * (SEGMENT_BYTES + SEGMENT_BYTES // 2)
    location = await create_upload(s3_client, alice, 10 + len(body))
    assert (await append(s3_client, alice, location, 0, b"0123456789")).status_code == 204

    wrong = await append(s3_client, alice, location, 10, body, **{"Upload-Checksum": checksum("sha256", b"y")})

    assert wrong.status_code == 460
    assert await offset_of(s3_client, alice, location) == 10
    assert await objects_of(s3_store, location) == {f"{0:020d}": 10}
    right = await append(s3_client, alice, location, 10, body, **{"Upload-Checksum": checksum("sha256", body)})
    assert right.status_code == 204
    assert sum((await objects_of(s3_store, location)).values()) == 10 + len(body)
    assert await stored_bytes(s3_settings(settings, s3_store, Path("unused")), location) == b"0123456789" + body


async def test_objects_past_the_offset_of_record_are_cut_before_an_append(
    s3_client: AsyncTestClient, alice: Account, settings: Settings, s3_store: str
) -> None:
    """Left by a request that died after putting them: the next append removes them, as the file store truncates."""
    location = await create_upload(s3_client, alice, 30)
    assert (await append(s3_client, alice, location, 0, b"a" * 10)).status_code == 204
    bucket = open_bucket(s3_store)
    prefix = uuid.UUID(location.rsplit("/", 1)[-1]).hex
    await obstore.put_async(bucket, f"{prefix}/{10:020d}", b"STALE-BYTES-NEVER-ACKED")

    assert (await append(s3_client, alice, location, 10, b"b" * 5)).status_code == 204
    assert await objects_of(s3_store, location) == {f"{0:020d}": 10, f"{10:020d}": 5}
    assert await stored_bytes(s3_settings(settings, s3_store, Path("unused")), location) == b"a" * 10 + b"b" * 5


@pytest.mark.parametrize("size", [5, SEGMENT_BYTES + 5], ids=["small", "past-a-segment"])
async def test_a_hole_in_the_bucket_is_refused_not_written_after(
    s3_client: AsyncTestClient, alice: Account, s3_store: str, size: int
) -> None:
    """The chain is checked while the body arrives: refused before the first segment is put, whenever that is."""
    location = await create_upload(s3_client, alice, 10 + size)
    assert (await append(s3_client, alice, location, 0, b"a" * 10)).status_code == 204
    prefix = uuid.UUID(location.rsplit("/", 1)[-1]).hex
    await obstore.delete_async(open_bucket(s3_store), f"{prefix}/{0:020d}")  # lost behind the service's back

    refused = await append(s3_client, alice, location, 10, b"b" * size)

    assert refused.status_code == 503
    assert "0 of the upload's first 10 bytes" in refused.json()["detail"]
    assert await offset_of(s3_client, alice, location) == 10
    assert await objects_of(s3_store, location) == {}


def unreachable_bucket(s3_store: str) -> S3Storage:
    bucket, prefix = parse_store_url(s3_store)
    unreachable = S3Store(
        bucket,
        prefix=prefix,
        endpoint=f"http://127.0.0.1:{free_port()}",
        virtual_hosted_style_request=False,
        retry_config={"max_retries": 1, "retry_timeout": datetime.timedelta(seconds=2)},
    )
    return S3Storage(unreachable)


async def test_a_bucket_that_does_not_answer_is_503_and_the_offset_stays(
    s3_client: AsyncTestClient, alice: Account, s3_store: str
) -> None:
    location = await create_upload(s3_client, alice, 30)
    assert (await append(s3_client, alice, location, 0, b"a" * 10)).status_code == 204
    service = s3_client.app.state.services.uploads
    service.storage = unreachable_bucket(s3_store)

    refused = await append(s3_client, alice, location, 10, b"b" * 5)

    assert refused.status_code == 503
    assert "UPLOAD_STORE" in refused.json()["detail"]
    assert await offset_of(s3_client, alice, location) == 10
    assert await objects_of(s3_store, location) == {f"{0:020d}": 10}


async def test_a_ledger_missing_a_segment_fails_its_parse_instead_of_reading_short(
    s3_client: AsyncTestClient, alice: Account, s3_store: str
) -> None:
    """A CSV cut at a line boundary parses cleanly: read short, it would be `ready` with the wrong cash flows."""
    ledger, _ = csv_ledger_bytes(2_000)
    cut = ledger.index(b"\n", len(ledger) // 2) + 1
    location = await create_upload(s3_client, alice, len(ledger))
    assert (await append(s3_client, alice, location, 0, ledger[:cut])).status_code == 204
    assert (await append(s3_client, alice, location, cut, ledger[cut:])).status_code == 204
    upload_id = uuid.UUID(location.rsplit("/", 1)[-1])
    await obstore.delete_async(open_bucket(s3_store), f"{upload_id.hex}/{cut:020d}")  # lost behind the service's back

    services = s3_client.app.state.services  # driven on the app's own loop
    parsed = s3_client.blocking_portal.call(parse_upload, services.engine, services.storage, services.events, upload_id)
    assert parsed == "failed"
    upload = (await s3_client.get(location, headers=alice.headers)).json()
    assert (upload["status"], upload["error"]) == (
        "failed",
        "the uploaded file is no longer stored in full; upload it again",
    )


async def test_reading_or_deleting_while_the_bucket_does_not_answer_is_503_and_keeps_the_upload(
    s3_client: AsyncTestClient, alice: Account, s3_store: str
) -> None:
    """A delete that removed the row but not the objects would leave bytes no row leads to, for ever."""
    location = await create_upload(s3_client, alice, 10)
    assert (await append(s3_client, alice, location, 0, b"a" * 10)).status_code == 204
    service = s3_client.app.state.services.uploads
    reachable, service.storage = service.storage, unreachable_bucket(s3_store)

    content = await s3_client.get(f"{location}/content", headers=alice.headers)
    assert (content.status_code, content.headers.get("retry-after")) == (503, "1"), content.text
    deleted = await s3_client.delete(location, headers={**alice.headers, "Tus-Resumable": "1.0.0"})
    assert deleted.status_code == 503, deleted.text
    assert "UPLOAD_STORE" in deleted.json()["detail"]

    service.storage = reachable
    assert (await s3_client.get(location, headers=alice.headers)).status_code == 200, "the upload is still there"
    assert await objects_of(s3_store, location) == {f"{0:020d}": 10}
    deleted = await s3_client.delete(location, headers={**alice.headers, "Tus-Resumable": "1.0.0"})
    assert deleted.status_code == 204
    assert await objects_of(s3_store, location) == {}
