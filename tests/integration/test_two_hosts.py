"""Two hosts, one service: two `roi serve` with their own data dirs on the same PostgreSQL, Redis and bucket.

A stock tus client sends the chunks of one upload to each host in turn; a WebSocket client follows a run on one
host and, after reconnecting to the other with `since`, misses no event.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient.client import TusClient

from infra.settings import Settings
from testkit.ledgers import csv_ledger_bytes
from tests.integration.jobs_support import TERMINAL
from tests.integration.test_serve import (
    free_port,
    serve,
    stop_and_check_nothing_is_left,
    stop_whatever_is_left,
    wait_ready,
)
from tests.integration.test_serve_respawn import job_workers
from tests.integration.test_workflows import new_workflow
from tests.integration.ws_support import connected, events_until, subscribe

pytestmark = pytest.mark.slow

LEDGER_ROWS = 360_000
"""About 12 MB."""
CHUNK = 1 << 20
PARSE_DEADLINE_S = 60.0
LONG_RUN = {"discount_rate": 0.08, "simulations": 1_000_000, "volatility": 0.2, "seed": 1}


@dataclass
class Host:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path

    def ws_url(self, token: str) -> str:
        return f"{self.base_url.replace('http', 'ws', 1)}/ws?token={token}"


@pytest.fixture
def hosts(settings: Settings, s3_store: str, tmp_path: Path) -> Iterator[list[Host]]:
    started: list[Host] = []
    try:
        for name in ("a", "b"):
            data_dir = tmp_path / f"host-{name}"
            data_dir.mkdir()
            port = free_port()
            process = serve(
                data_dir,
                port,
                workers=1,
                DATABASE_URL=settings.database_url or "",
                REDIS_URL=settings.redis_url or "",
                REDIS_NAMESPACE=settings.redis_namespace,
                SECRET_KEY=settings.secret_key,
                UPLOAD_STORE=s3_store,
                # Host a serves the API only, so every job (parses and runs) is executed by host b's worker.
                WORKER_PROCESSES="0" if name == "a" else "1",
            )
            started.append(Host(process, f"http://127.0.0.1:{port}", data_dir))
        for host in started:
            wait_ready(host.process, host.base_url, host.data_dir)
        assert not job_workers(started[0].process.pid), "host a runs no job worker: WORKER_PROCESSES=0"
        assert job_workers(started[1].process.pid), "host b runs the job worker"
        yield started
        for host in started:
            stop_and_check_nothing_is_left(host.process, host.data_dir)
    finally:
        for host in started:
            stop_whatever_is_left(host.process)


def register(host: Host) -> dict[str, str]:
    """An account made and logged into on `host`: its token is good on every host (one SECRET_KEY)."""
    account = {"email": "two-hosts@example.com", "password": "correct horse battery"}
    created = httpx.post(f"{host.base_url}/api/auth/register", json={**account, "name": "Two hosts"})
    assert created.status_code == 201, created.text
    login = httpx.post(f"{host.base_url}/api/auth/login", json=account)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def upload_alternating(hosts: list[Host], headers: dict[str, str], data: bytes) -> str:
    """With tuspy: create on the first host, then each chunk to the next host in turn (each uploader starts with a
    HEAD, as a client that lost its connection and resumes elsewhere does). Returns the upload's path."""
    first = TusClient(f"{hosts[0].base_url}/api/uploads", headers=headers).uploader(
        file_stream=io.BytesIO(data), chunk_size=CHUNK, metadata={"filename": "ledger.csv"}
    )
    first.upload_chunk()
    path = httpx.URL(str(first.url)).path
    turn = 1
    while True:
        host = hosts[turn % len(hosts)]
        uploader = TusClient(f"{host.base_url}/api/uploads", headers=headers).uploader(
            file_stream=io.BytesIO(data), chunk_size=CHUNK, url=f"{host.base_url}{path}"
        )
        if uploader.offset >= len(data):
            return path
        uploader.upload_chunk()
        turn += 1


def wait_for_status(host: Host, headers: dict[str, str], path: str) -> dict[str, Any]:
    deadline = time.monotonic() + PARSE_DEADLINE_S
    while time.monotonic() < deadline:
        view: dict[str, Any] = httpx.get(f"{host.base_url}{path}", headers=headers).json()
        if view["status"] not in ("uploading", "processing"):
            return view
        time.sleep(0.1)  # polling the API as a client does; the event stream is tested below
    pytest.fail(f"the upload at {path} was not parsed within {PARSE_DEADLINE_S:g} s")


async def test_an_upload_sent_to_two_hosts_in_turn_is_whole_and_parsed(hosts: list[Host]) -> None:
    data, flows = await asyncio.to_thread(csv_ledger_bytes, LEDGER_ROWS)
    headers = await asyncio.to_thread(register, hosts[0])

    path = await asyncio.to_thread(upload_alternating, hosts, headers, data)

    view = await asyncio.to_thread(wait_for_status, hosts[1], headers, path)
    assert (view["status"], view["rows"], view["periods"]) == ("ready", LEDGER_ROWS, len(flows))
    async with httpx.AsyncClient(timeout=60) as client:
        for host in hosts:
            digest = hashlib.sha256()
            request = client.build_request("GET", f"{host.base_url}{path}/content", headers=headers)
            answer = await client.send(request, stream=True)
            assert answer.status_code == 200
            async for block in answer.aiter_bytes():
                digest.update(block)
            await answer.aclose()
            assert digest.hexdigest() == hashlib.sha256(data).hexdigest(), f"/content on {host.base_url}"


async def test_a_subscriber_moving_from_one_host_to_the_other_misses_no_event_of_a_run(hosts: list[Host]) -> None:
    host_a, host_b = hosts
    headers = await asyncio.to_thread(register, host_a)
    token = headers["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(timeout=30) as client:
        created = await client.post(
            f"{host_a.base_url}/api/workflows",
            json=new_workflow(cash_flows=[-1000.0, 300.0, 400.0, 500.0], parameters=LONG_RUN),
            headers=headers,
        )
        assert created.status_code == 201, created.text
        channel = f"workflow:{created.json()['id']}"

        async with connected(host_a.ws_url(token)) as ws:
            await subscribe(ws, channel, since=0)
            started = await client.post(f"{host_b.base_url}/api/workflows/{created.json()['id']}/run", headers=headers)
            assert started.status_code == 202, started.text
            on_a = await events_until(ws, mid_run, timeout_s=60)

        async with connected(host_b.ws_url(token)) as ws:
            answer = await subscribe(ws, channel, since=on_a[-1]["seq"])
            assert answer["recovered"] is True
            on_b = await events_until(
                ws,
                lambda frame: frame["event"] == "workflow.status" and frame["data"]["status"] in TERMINAL,
                timeout_s=120,
            )

    seqs = [frame["seq"] for frame in on_a + on_b]
    assert seqs == list(range(1, len(seqs) + 1)), "every event once, in order, across the move"
    assert on_b[-1]["data"]["status"] == "succeeded"
    assert {"workflow.status", "step.status"} <= {frame["event"] for frame in on_a + on_b}


def mid_run(frame: dict[str, Any]) -> bool:
    """The cut between hosts: a step's end with more to come. Not a progress event: a run faster than the
    progress interval sends none."""
    data = frame["data"]
    return frame["event"] == "step.status" and data["kind"] == "analyze" and data["status"] == "succeeded"
