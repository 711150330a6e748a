"""Uploads on a real Granian: a stock tus client, concurrent and broken requests, live progress, the parse job,
and a workflow run from the parsed file; each with the `file` store and with the S3 one (SeaweedFS)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import numpy_financial as npf
import pytest
from litestar.testing import AsyncTestClient
from tusclient.client import TusClient

from infra.settings import Settings
from testkit.ledgers import csv_ledger_bytes, write_xlsx_ledger
from tests.integration.jobs_support import running_worker, wait_until, worker_config
from tests.integration.support import Account
from tests.integration.upload_support import append, checksum, create_upload, offset_of, stored_bytes, upload_view
from tests.integration.ws_support import LiveServer, connected, events_until, live_server, receive, subscribe

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads-live")


@pytest.fixture(scope="module", params=["file", "s3"])
def store_settings(request: pytest.FixtureRequest, settings: Settings, work_dir: Path) -> Settings:
    """The run's settings with this module's data dir, and UPLOAD_STORE the parameter names."""
    store = request.getfixturevalue("s3_store") if request.param == "s3" else "file"
    return msgspec.structs.replace(settings, roi_data_dir=work_dir, upload_store=store)


@pytest.fixture(scope="module")
def server(store_settings: Settings, work_dir: Path) -> Iterator[LiveServer]:
    with live_server(store_settings, work_dir, workers=2, UPLOAD_STORE=store_settings.upload_store) as running:
        yield running


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


def token_of(account: Account) -> str:
    return account.headers["Authorization"].removeprefix("Bearer ")


async def wait_for_upload(api: httpx.AsyncClient, account: Account, location: str, *statuses: str) -> dict[str, Any]:
    view: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal view
        view = await upload_view(api, account, location)
        return view["status"] in statuses

    await wait_until(reached, f"upload {location} is {' or '.join(statuses)}")
    return view


async def test_tuspy_uploads_in_chunks_resumes_after_an_interruption_and_the_bytes_match(
    client: AsyncTestClient, alice: Account, server: LiveServer, store_settings: Settings
) -> None:
    data, _ = csv_ledger_bytes(20_000)
    headers = {"Authorization": f"Bearer {token_of(alice)}"}

    def first_session() -> str:
        uploader = TusClient(f"{server.base_url}/api/uploads", headers=headers).uploader(
            file_stream=io.BytesIO(data), chunk_size=CHUNK, metadata={"filename": "ledger.csv"}
        )
        uploader.upload(stop_at=3 * CHUNK)  # interrupted after three chunks
        assert uploader.url
        return str(uploader.url)

    url = await asyncio.to_thread(first_session)
    location = httpx.URL(url).path
    assert await offset_of(client, alice, location) == 3 * CHUNK

    def resumed_session() -> int:
        uploader = TusClient(f"{server.base_url}/api/uploads", headers=headers).uploader(
            file_stream=io.BytesIO(data), chunk_size=CHUNK, url=url
        )
        resumed_from = int(uploader.get_offset())  # a HEAD, as a new client resuming does
        uploader.upload()
        return resumed_from

    assert await asyncio.to_thread(resumed_session) == 3 * CHUNK
    stored = await stored_bytes(store_settings, location) or b""
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    view = await upload_view(client, alice, location)
    assert (view["filename"], view["size"], view["offset"]) == ("ledger.csv", len(data), len(data))


async def test_of_two_concurrent_patches_one_wins_and_the_other_is_423(
    api: httpx.AsyncClient, alice: Account, store_settings: Settings, db: asyncpg.Pool
) -> None:
    first_part, second_part = b"a" * 50_000, b"b" * 50_000
    location = await create_upload(api, alice, 200_000)
    resume = asyncio.Event()

    async def held_open() -> AsyncIterator[bytes]:
        yield first_part
        await resume.wait()
        yield second_part

    winner = asyncio.create_task(append(api, alice, location, 0, held_open()))
    await wait_until(_leased(db, location), "the first PATCH holds the upload")

    # at the offset of record (what the first PATCH has recorded so far), and at the offset it will reach
    for offset in (await offset_of(api, alice, location), len(first_part)):
        loser = await append(api, alice, location, offset, b"c" * 1000)
        assert loser.status_code in (409, 423), loser.text
    assert (await append(api, alice, location, await offset_of(api, alice, location), b"")).status_code == 423
    resume.set()
    won = await winner
    assert (won.status_code, won.headers["upload-offset"]) == (204, str(len(first_part) + len(second_part)))
    assert await offset_of(api, alice, location) == len(first_part) + len(second_part)
    assert (await stored_bytes(store_settings, location) or b"") == first_part + second_part


async def test_a_chunked_body_that_passes_the_length_is_413_and_the_offset_stays(
    api: httpx.AsyncClient, alice: Account, store_settings: Settings
) -> None:
    location = await create_upload(api, alice, 10)

    async def unannounced() -> AsyncIterator[bytes]:  # Transfer-Encoding: chunked, no Content-Length to refuse early
        yield b"123456"
        yield b"789012"

    answer = await append(api, alice, location, 0, unannounced())
    assert answer.status_code == 413
    assert await offset_of(api, alice, location) == 0
    assert (await append(api, alice, location, 0, b"0123456789")).status_code == 204
    assert (await stored_bytes(store_settings, location) or b"") == b"0123456789"


@pytest.mark.parametrize(("checksum", "kept"), [(None, 40_000), ("sha256 " + "A" * 43 + "=", 0)])
async def test_a_connection_dropped_mid_patch_keeps_what_arrived_unless_it_must_be_verified(
    api: httpx.AsyncClient, alice: Account, server: LiveServer, db: asyncpg.Pool, checksum: str | None, kept: int
) -> None:
    location = await create_upload(api, alice, 100_000)
    host, port = server.server.address.split(":")
    extra = f"Upload-Checksum: {checksum}\r\n" if checksum else ""
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {server.server.address}\r\n"
            f"Authorization: {alice.headers['Authorization']}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n{extra}"
            f"Content-Length: 100000\r\n\r\n".encode()
            + b"x" * 40_000
        )
        await wait_until(_leased(db, location), "the PATCH is being written")
    # closed mid-body: the lease is given back at once (not after it lapses), with the bytes that can be kept
    leased = _leased(db, location)

    async def released() -> bool:
        return not await leased()

    await wait_until(released, "the dropped PATCH gave the upload back")
    assert await offset_of(api, alice, location) == kept
    extra_bytes = b"y" * (100_000 - kept)
    assert (await append(api, alice, location, kept, extra_bytes)).status_code == 204


def _leased(db: asyncpg.Pool, location: str) -> Callable[[], Awaitable[bool]]:
    """Whether a request holds the upload to append to it (read in PostgreSQL: a probing PATCH could take it)."""

    async def leased() -> bool:
        upload_id = uuid.UUID(location.rsplit("/", 1)[-1])
        return bool(await db.fetchval("SELECT lease_token IS NOT NULL FROM uploads WHERE id = $1", upload_id))

    return leased


async def test_progress_and_status_events_reach_subscribers_and_the_file_is_parsed(
    api: httpx.AsyncClient, alice: Account, server: LiveServer, store_settings: Settings
) -> None:
    data, flows = csv_ledger_bytes(30_000)
    location = await create_upload(api, alice, len(data))
    upload_id = location.rsplit("/", 1)[-1]
    async with (
        connected(server.url(token_of(alice))) as ws,
        running_worker(worker_config(store_settings)),
    ):
        await subscribe(ws, f"upload:{upload_id}")
        await subscribe(ws, f"user:{alice.id}")
        for offset in range(0, len(data), len(data) // 20 + 1):
            part = data[offset : offset + len(data) // 20 + 1]
            assert (await append(api, alice, location, offset, part)).status_code == 204
        frames = await events_until(ws, lambda f: f["event"] == "upload.status" and f["data"]["status"] == "ready")

    progress = [f["data"]["offset"] for f in frames if f["event"] == "upload.progress"]
    assert progress == sorted(progress)
    assert len(progress) >= 10
    assert progress[-1] == len(data)
    statuses = [(f["channel"], f["data"]["status"]) for f in frames if f["event"] == "upload.status"]
    assert (f"upload:{upload_id}", "processing") in statuses
    assert (f"user:{alice.id}", "ready") in statuses or (f"upload:{upload_id}", "ready") in statuses
    view = await upload_view(api, alice, location)
    assert (view["status"], view["rows"], view["periods"], view["error"]) == ("ready", 30_000, len(flows), None)


async def test_a_workflow_made_from_a_ready_upload_analyses_its_cash_flows(
    api: httpx.AsyncClient, alice: Account, bob: Account, store_settings: Settings
) -> None:
    data = b"date,period,cash_flow,memo\n" + b"".join(
        f"2026-01-0{1 + row % 9},{row % 4},{flow},entry {row}\n".encode()
        for row, flow in enumerate([-600.0, 100.0, 150.0, 200.0, -400.0, 150.0, 150.0, 250.0])
    )
    expected = [-1000.0, 250.0, 300.0, 450.0]
    location = await create_upload(api, alice, len(data))
    upload_id = location.rsplit("/", 1)[-1]
    body = {"name": "From a ledger", "upload_id": upload_id, "parameters": {"discount_rate": 0.1}}
    async with running_worker(worker_config(store_settings)):
        not_yet = await api.post("/api/workflows", json=body, headers=alice.headers)
        assert not_yet.status_code == 400
        assert "upload_id" in not_yet.json()["detail"]
        await append(api, alice, location, 0, data)
        view = await wait_for_upload(api, alice, location, "ready", "failed")
        assert (view["status"], view["rows"], view["periods"]) == ("ready", 8, 4)

        assert (await api.post("/api/workflows", json=body, headers=bob.headers)).status_code == 400
        created = await api.post("/api/workflows", json=body, headers=alice.headers)
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]
        flows = (await api.get(f"/api/workflows/{workflow_id}/cash-flows", headers=alice.headers)).json()
        assert flows == {"workflow_id": workflow_id, "upload_id": upload_id, "cash_flows": expected}
        assert (await api.post(f"/api/workflows/{workflow_id}/run", headers=alice.headers)).status_code == 202

        async def finished() -> bool:
            status = (await api.get(f"/api/workflows/{workflow_id}/status", headers=alice.headers)).json()
            return bool(status["status"] in ("succeeded", "failed"))

        await wait_until(finished, "the workflow's run finished")
    result = (await api.get(f"/api/workflows/{workflow_id}/result", headers=alice.headers)).json()
    assert result["metrics"]["npv"] == pytest.approx(npf.npv(0.1, expected))
    assert result["metrics"]["periods"] == 4


BAD_FILES = [
    (b"", "empty"),
    (b"period,cash_flow\n", "data rows"),
    (b"0,100\n1,200\n", "line 1"),
    (b"period,amount\n0,100\n", "cash_flow"),
    (b"period,cash_flow\n0,-100\n-1,50\n", "line 3"),
    (b"period,cash_flow\n" + b"0,1\n" * 12_343 + b"1,abc\n", "line 12345"),
    (bytes(range(256)) * 40, "line"),
]


@pytest.mark.parametrize(("content", "named"), BAD_FILES, ids=lambda value: str(value)[:20])
async def test_a_bad_file_ends_failed_with_an_error_naming_the_problem(
    api: httpx.AsyncClient, alice: Account, store_settings: Settings, content: bytes, named: str
) -> None:
    location = await create_upload(api, alice, len(content))
    async with running_worker(worker_config(store_settings)):
        if content:
            assert (await append(api, alice, location, 0, content)).status_code == 204
        view = await wait_for_upload(api, alice, location, "ready", "failed")
    assert view["status"] == "failed"
    assert named in view["error"]
    assert view["rows"] is None


async def test_another_users_upload_channel_is_forbidden(
    api: httpx.AsyncClient, alice: Account, bob: Account, server: LiveServer
) -> None:
    location = await create_upload(api, alice, 10)
    channel = f"upload:{location.rsplit('/', 1)[-1]}"
    async with connected(server.url(token_of(bob))) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
        answer = await receive(ws)
    assert (answer["type"], answer["code"]) == ("error", "forbidden")
    async with connected(server.url(token_of(alice))) as ws:
        assert (await subscribe(ws, channel))["channel"] == channel


async def test_an_xlsx_ledger_is_parsed_like_a_csv_one(
    api: httpx.AsyncClient, alice: Account, store_settings: Settings, tmp_path: Path
) -> None:
    workbook = tmp_path / "ledger.xlsx"
    flows = write_xlsx_ledger(workbook, 2_000, periods=24)
    data = workbook.read_bytes()
    location = await create_upload(api, alice, len(data))
    async with running_worker(worker_config(store_settings)):
        assert (await append(api, alice, location, 0, data)).status_code == 204
        view = await wait_for_upload(api, alice, location, "ready", "failed")
    assert (view["status"], view["rows"], view["periods"]) == ("ready", 2_000, len(flows))


async def test_a_checksummed_patch_keeps_its_lease_while_its_body_arrives_slowly(
    alice: Account, settings: Settings, tmp_path: Path
) -> None:
    """Its bytes cannot be recorded before the checksum is verified, but its lease must not lapse meanwhile:
    another request would append at the same offset, and the first one's end would then drop the other's bytes."""
    body = b"0123456789" * 3_000
    pieces = [body[start : start + 1_000] for start in range(0, len(body), 1_000)]
    stalled_past_lease = asyncio.Event()
    with live_server(settings, tmp_path, workers=1, UPLOAD_IDLE_TIMEOUT_S="1") as server:  # a lease of 11 s
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as api:
            location = await create_upload(api, alice, len(body))

            async def trickle() -> AsyncIterator[bytes]:
                loop = asyncio.get_running_loop()
                started = loop.time()
                for piece in pieces:
                    yield piece
                    if loop.time() - started > 12:
                        stalled_past_lease.set()
                    await asyncio.sleep(0.5)  # a slow client: each piece within the idle timeout, 15 s in all

            first = asyncio.create_task(
                append(api, alice, location, 0, trickle(), **{"Upload-Checksum": checksum("sha1", body)})
            )
            stalled = asyncio.create_task(stalled_past_lease.wait())
            await asyncio.wait([first, stalled], return_when=asyncio.FIRST_COMPLETED)
            assert not first.done(), (await first).text
            second = await append(api, alice, location, 0, b"x" * 10)
            assert second.status_code == 423, second.text
            done = await first
            assert (done.status_code, done.headers["upload-offset"]) == (204, str(len(body))), done.text
            content = await api.get(f"{location}/content", headers={**alice.headers, "Accept-Encoding": "identity"})
            assert content.content == body
