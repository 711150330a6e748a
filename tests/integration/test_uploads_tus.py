"""tus 1.0.0 at /api/uploads: the protocol, sizes, checksums, expiry and ownership, through the test client."""

from __future__ import annotations

import datetime
import email.utils
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from domain.events.bus import EventBus
from domain.services import upload_storage
from domain.uploads.processing import expire_uploads
from domain.uploads.storage import LocalFileWriter, LocalStorage
from infra.settings import Settings
from tests.integration.jobs_support import running_worker, wait_until, worker_config
from tests.integration.redis_support import free_port
from tests.integration.support import Account, sign_up
from tests.integration.upload_support import (
    OFFSET_STREAM,
    TUS,
    append,
    checksum,
    create_upload,
    metadata,
    offset_of,
    stored_bytes,
    stored_file,
    upload_view,
)

LEDGER = b"period,cash_flow\n0,-1000\n1,600\n2,700\n"


@pytest.fixture(params=["file", "s3"])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The run's settings with UPLOAD_STORE the parameter names: the tus rules hold whatever the store."""
    if request.param == "file":
        return settings
    return msgspec.structs.replace(settings, upload_store=request.getfixturevalue("s3_store"))


@pytest.fixture
async def tus_client(store_settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(store_settings)) as test_client:
        yield test_client


async def test_options_announces_version_extensions_size_limit_and_checksums(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    answer = await client.options("/api/uploads", headers=alice.headers)
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0"
    assert set(answer.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    }
    assert int(answer.headers["tus-max-size"]) == settings.tus_max_size
    assert set(answer.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}


async def test_chunks_append_in_order_and_head_reports_the_offset_of_record(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings
) -> None:
    location = await create_upload(tus_client, alice, len(LEDGER), **{"Upload-Metadata": metadata(filename="q1.csv")})
    head = await tus_client.head(location, headers={**alice.headers, **TUS})
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", str(len(LEDGER)))
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert (head.content, head.headers.get("content-length", "0")) == (b"", "0")  # no rendered `null`
    assert "content-type" not in head.headers
    assert head.headers["upload-metadata"] == metadata(filename="q1.csv")
    assert "upload-expires" in head.headers

    first = await append(tus_client, alice, location, 0, LEDGER[:10])
    assert (first.status_code, first.headers["upload-offset"]) == (204, "10")
    assert "upload-expires" in first.headers
    assert await offset_of(tus_client, alice, location) == 10
    assert (await upload_view(tus_client, alice, location))["status"] == "uploading"

    last = await append(tus_client, alice, location, 10, LEDGER[10:])
    assert (last.status_code, last.headers["upload-offset"]) == (204, str(len(LEDGER)))
    assert "upload-expires" not in last.headers
    assert await stored_bytes(store_settings, location) == LEDGER
    view = await upload_view(tus_client, alice, location)
    assert (view["filename"], view["size"], view["offset"], view["status"]) == (
        "q1.csv",
        len(LEDGER),
        len(LEDGER),
        "processing",
    )
    assert view["expires_at"] is None


class SyncRecordingStorage:
    """The service's real storage, noting how many bytes each upload's file held each time it was made durable."""

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage
        self.synced_sizes: list[int] = []

    async def writer(self, upload_id: uuid.UUID, offset: int) -> LocalFileWriter:
        writer = await self.storage.writer(upload_id, offset)
        real_sync = writer.sync

        async def sync() -> None:
            await real_sync()
            self.synced_sizes.append(os.fstat(writer.fd).st_size)

        writer.sync = sync  # type: ignore[method-assign]
        return writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


async def test_the_offset_of_record_never_passes_bytes_made_durable(client: AsyncTestClient, alice: Account) -> None:
    """A machine that loses power must not leave HEAD promising bytes the disk lost: sync, then record."""
    service = client.app.state.services.uploads
    recording = service.storage = SyncRecordingStorage(service.storage)
    location = await create_upload(client, alice, len(LEDGER))
    for start, end in ((0, 10), (10, 25), (25, len(LEDGER))):
        assert (await append(client, alice, location, start, LEDGER[start:end])).status_code == 204
        assert recording.synced_sizes[-1] == end == await offset_of(client, alice, location)


async def test_creation_with_upload_stores_the_first_chunk_with_the_post(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings
) -> None:
    answer = await tus_client.post(
        "/api/uploads",
        headers={
            **alice.headers,
            **TUS,
            "Upload-Length": str(len(LEDGER)),
            "Content-Type": "application/offset+octet-stream",
        },
        content=LEDGER[:7],
    )
    assert (answer.status_code, answer.headers["upload-offset"]) == (201, "7")
    assert await offset_of(tus_client, alice, answer.headers["location"]) == 7
    assert await stored_bytes(store_settings, answer.headers["location"]) == LEDGER[:7]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_a_checksum_mismatch_is_460_and_appends_nothing(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings, algorithm: str
) -> None:
    location = await create_upload(tus_client, alice, len(LEDGER))
    await append(tus_client, alice, location, 0, LEDGER[:5])

    wrong = await append(tus_client, alice, location, 5, LEDGER[5:], **{"Upload-Checksum": checksum(algorithm, b"x")})
    assert wrong.status_code == 460, wrong.text
    assert algorithm in wrong.json()["detail"]
    assert await offset_of(tus_client, alice, location) == 5
    assert await stored_bytes(store_settings, location) == LEDGER[:5], "nothing of the refused chunk is kept"

    right = await append(
        tus_client, alice, location, 5, LEDGER[5:], **{"Upload-Checksum": checksum(algorithm, LEDGER[5:])}
    )
    assert right.status_code == 204
    assert await stored_bytes(store_settings, location) == LEDGER


async def test_an_offset_that_is_not_the_uploads_is_409(client: AsyncTestClient, alice: Account) -> None:
    location = await create_upload(client, alice, len(LEDGER))
    await append(client, alice, location, 0, LEDGER[:5])
    for wrong_offset in (0, 4, 6):
        answer = await append(client, alice, location, wrong_offset, LEDGER[5:])
        assert answer.status_code == 409, answer.text
        assert "at 5" in answer.json()["detail"]
    assert await offset_of(client, alice, location) == 5


async def test_an_upload_over_the_size_limit_is_refused_before_anything_is_stored(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    too_big = await client.post(
        "/api/uploads", headers={**alice.headers, **TUS, "Upload-Length": str(settings.tus_max_size + 1)}
    )
    assert too_big.status_code == 413
    assert "Tus-Max-Size" in too_big.json()["detail"]
    assert (await client.get("/api/uploads", headers=alice.headers)).json()["total"] == 0


async def test_a_patch_past_the_upload_length_is_413_and_writes_nothing(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings
) -> None:
    location = await create_upload(tus_client, alice, 10)
    await append(tus_client, alice, location, 0, b"12345")

    announced = await append(tus_client, alice, location, 5, b"123456")
    assert announced.status_code == 413
    assert "Upload-Length" in announced.json()["detail"]
    assert await offset_of(tus_client, alice, location) == 5

    exact = await append(tus_client, alice, location, 5, b"67890")
    assert exact.status_code == 204
    assert await stored_bytes(store_settings, location) == b"1234567890"


async def test_another_users_upload_is_404_for_every_verb(
    client: AsyncTestClient, alice: Account, bob: Account, settings: Settings
) -> None:
    location = await create_upload(client, alice, len(LEDGER))
    await append(client, alice, location, 0, LEDGER[:5])

    assert (await client.head(location, headers={**bob.headers, **TUS})).status_code == 404
    assert (await append(client, bob, location, 5, LEDGER[5:])).status_code == 404
    assert (await client.delete(location, headers={**bob.headers, **TUS})).status_code == 404
    assert (await client.get(location, headers=bob.headers)).status_code == 404
    assert (await client.get("/api/uploads", headers=bob.headers)).json()["items"] == []

    assert await offset_of(client, alice, location) == 5
    assert stored_file(settings.roi_data_dir, location).read_bytes() == LEDGER[:5]


async def test_every_upload_request_needs_the_token(client: AsyncTestClient, alice: Account) -> None:
    location = await create_upload(client, alice, len(LEDGER))
    answers = [
        await client.options("/api/uploads", headers=TUS),
        await client.post("/api/uploads", headers={**TUS, "Upload-Length": "3"}),
        await client.head(location, headers=TUS),
        await client.patch(location, headers={**TUS, "Upload-Offset": "0"}, content=b"abc"),
        await client.delete(location, headers=TUS),
        await client.get(location),
        await client.get("/api/uploads"),
    ]
    assert [answer.status_code for answer in answers] == [401] * len(answers)
    assert all(answer.headers["tus-resumable"] == "1.0.0" for answer in answers)
    assert await offset_of(client, alice, location) == 0


async def test_delete_removes_the_upload_and_its_bytes(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings
) -> None:
    location = await create_upload(tus_client, alice, len(LEDGER))
    await append(tus_client, alice, location, 0, LEDGER[:5])
    assert await stored_bytes(store_settings, location) is not None

    assert (await tus_client.delete(location, headers={**alice.headers, **TUS})).status_code == 204
    assert (await tus_client.head(location, headers={**alice.headers, **TUS})).status_code == 404
    assert (await tus_client.get(location, headers=alice.headers)).status_code == 404
    assert await stored_bytes(store_settings, location) is None


async def test_an_expired_upload_answers_410_and_its_bytes_are_removed_by_the_periodic_job(
    tus_client: AsyncTestClient, alice: Account, store_settings: Settings, db: asyncpg.Pool, redis: Redis
) -> None:
    location = await create_upload(tus_client, alice, len(LEDGER))
    await append(tus_client, alice, location, 0, LEDGER[:5])
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    await db.execute("UPDATE uploads SET expires_at = $1 WHERE id = $2", past, location.rsplit("/", 1)[-1])

    assert (await tus_client.head(location, headers={**alice.headers, **TUS})).status_code == 410
    assert (await append(tus_client, alice, location, 5, LEDGER[5:])).status_code == 410
    assert (await upload_view(tus_client, alice, location))["status"] == "expired"

    engine = create_async_engine(store_settings.database_url or "")
    try:
        events = EventBus(redis, store_settings.redis_namespace)
        assert await expire_uploads(engine, upload_storage(store_settings), events) == 1
    finally:
        await engine.dispose()
    assert await stored_bytes(store_settings, location) is None
    assert (await upload_view(tus_client, alice, location))["status"] == "expired"
    assert (await tus_client.head(location, headers={**alice.headers, **TUS})).status_code == 410


async def test_file_names_are_shown_but_never_reach_the_file_system(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    hostile = "../../../../tmp/owned\x00.csv"
    location = await create_upload(
        client, alice, len(LEDGER), **{"Upload-Metadata": metadata(filename=hostile, filetype="text/csv")}
    )
    await append(client, alice, location, 0, LEDGER)

    assert (await upload_view(client, alice, location))["filename"] == "../../../../tmp/owned.csv"
    stored = list((settings.roi_data_dir / "uploads").iterdir())
    assert stored_file(settings.roi_data_dir, location) in stored
    assert all(path.name.isalnum() for path in stored)
    assert not any(settings.roi_data_dir.parent.glob("**/owned*"))


@pytest.mark.parametrize(
    ("headers", "status", "named"),
    [
        ({"Upload-Length": "-1"}, 400, "Upload-Length"),
        ({"Upload-Length": "ten"}, 400, "Upload-Length"),
        ({"Upload-Length": "9" * 5_000}, 413, "Upload-Length"),
        ({"Upload-Length": "3", "Content-Length": "9" * 5_000}, 400, "Content-Length"),
        ({}, 400, "Upload-Length"),
        ({"Upload-Length": "3", "Upload-Metadata": "filename !!notbase64"}, 400, "Upload-Metadata"),
        ({"Upload-Length": "3", "Upload-Defer-Length": "1"}, 400, "Upload-Defer-Length"),
        ({"Upload-Length": "3", "Tus-Resumable": "0.2.2"}, 412, "Tus-Resumable"),
    ],
)
async def test_bad_creation_headers_are_4xx_naming_the_header(
    client: AsyncTestClient, alice: Account, headers: dict[str, str], status: int, named: str
) -> None:
    answer = await client.post("/api/uploads", headers={**alice.headers, **TUS, **headers})
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]
    assert (await client.get("/api/uploads", headers=alice.headers)).json()["total"] == 0


async def test_bad_patch_headers_are_4xx_naming_the_header(client: AsyncTestClient, alice: Account) -> None:
    location = await create_upload(client, alice, len(LEDGER))
    wrong_type = await append(client, alice, location, 0, LEDGER, **{"Content-Type": "text/csv"})
    no_offset = await client.patch(
        location,
        headers={**alice.headers, **TUS, "Content-Type": "application/offset+octet-stream"},
        content=LEDGER,
    )
    unknown_algorithm = await append(client, alice, location, 0, LEDGER, **{"Upload-Checksum": "crc32 AAAA"})
    past_bigint = await append(client, alice, location, 2**63, LEDGER)
    statuses = (wrong_type.status_code, no_offset.status_code, unknown_algorithm.status_code, past_bigint.status_code)
    assert statuses == (415, 400, 400, 400)
    assert "Content-Type" in wrong_type.json()["detail"]
    assert "Upload-Offset" in no_offset.json()["detail"]
    assert "Upload-Offset" in past_bigint.json()["detail"]
    assert "crc32" in unknown_algorithm.json()["detail"]
    assert await offset_of(client, alice, location) == 0


async def test_the_list_shows_the_callers_uploads_newest_first(client: AsyncTestClient, alice: Account) -> None:
    first = await create_upload(client, alice, 3)
    second = await create_upload(client, alice, 4)
    page = (await client.get("/api/uploads", headers=alice.headers)).json()
    assert [item["id"] for item in page["items"]] == [second.rsplit("/", 1)[-1], first.rsplit("/", 1)[-1]]
    assert (page["total"], page["limit"], page["offset"]) == (2, 50, 0)


async def test_a_post_with_x_http_method_override_is_the_patch_or_delete_it_names(
    client: AsyncTestClient, alice: Account, settings: Settings
) -> None:
    location = await create_upload(client, alice, len(LEDGER))
    patched = await client.post(
        location,
        headers={
            **alice.headers,
            **TUS,
            "X-HTTP-Method-Override": "PATCH",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": "0",
        },
        content=LEDGER[:9],
    )
    assert (patched.status_code, patched.headers["upload-offset"]) == (204, "9")
    deleted = await client.post(location, headers={**alice.headers, **TUS, "X-HTTP-Method-Override": "DELETE"})
    assert deleted.status_code == 204
    assert (await client.get(location, headers=alice.headers)).status_code == 404


async def test_with_redis_gone_an_upload_completes_and_its_parse_is_queued_once_redis_is_back(
    settings: Settings,
) -> None:
    app = create_app(msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with AsyncTestClient(app) as no_redis:
        alice = await sign_up(no_redis)
        location = await create_upload(no_redis, alice, len(LEDGER))
        assert (await append(no_redis, alice, location, 0, LEDGER)).status_code == 204
        assert (await upload_view(no_redis, alice, location))["status"] == "processing"

        config = worker_config(settings, requeue_after_s=0.2, reconcile_interval_s=0.1)
        async with running_worker(config):
            view: dict[str, Any] = {}

            async def parsed() -> bool:
                nonlocal view
                view = await upload_view(no_redis, alice, location)
                return view["status"] != "processing"

            await wait_until(parsed, "the reconciler queued the lost parse and a worker ran it")
    assert (view["status"], view["rows"], view["periods"]) == ("ready", 3, 3)


async def test_the_creation_answer_says_when_an_unfinished_upload_expires(
    client: AsyncTestClient, alice: Account
) -> None:
    created = await client.post("/api/uploads", headers={**alice.headers, **TUS, "Upload-Length": str(len(LEDGER))})
    assert created.status_code == 201
    expires = email.utils.parsedate_to_datetime(created.headers["upload-expires"])
    assert expires > datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=23)

    complete = await client.post(
        "/api/uploads",
        headers={**alice.headers, **TUS, **OFFSET_STREAM, "Upload-Length": str(len(LEDGER))},
        content=LEDGER,
    )
    assert complete.status_code == 201
    assert complete.headers["upload-offset"] == str(len(LEDGER))
    assert "upload-expires" not in complete.headers, "a complete upload no longer expires"
