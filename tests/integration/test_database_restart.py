"""PostgreSQL restarted under a running API: requests fail fast with 503 while it is down, none hangs, and the
service recovers by itself once it is back. On an embedded PostgreSQL of the test's own, so that restarting it
disturbs nothing else."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from app.embedded import EmbeddedServer, start_postgres
from db.migrate import upgrade
from infra.settings import Settings
from tests.integration.ws_support import live_server

REQUEST_DEADLINE_S = 10.0


@pytest.fixture
def own_postgres() -> Iterator[tuple[Path, EmbeddedServer]]:
    data_dir = Path(tempfile.mkdtemp(prefix="roi-test-restart-"))
    data_dir.chmod(0o755)
    server = start_postgres(data_dir)
    try:
        yield data_dir, server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_a_postgresql_restart_gives_503s_then_the_service_recovers_by_itself(
    own_postgres: tuple[Path, EmbeddedServer], settings: Settings, tmp_path: Path
) -> None:
    data_dir, postgres = own_postgres
    await asyncio.to_thread(upgrade, postgres.url)
    port = int(postgres.url.rsplit(":", 1)[1].split("/")[0])
    ours = msgspec.structs.replace(settings, database_url=postgres.url)
    with live_server(ours, tmp_path, workers=1, DB_POOL_TIMEOUT_S="2") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_DEADLINE_S) as api:
            email = "dora@example.com"
            body = {"email": email, "password": "correct horse battery", "name": "Dora"}
            assert (await api.post("/api/auth/register", json=body)).status_code == 201
            login = {"email": email, "password": body["password"]}
            token = (await api.post("/api/auth/login", json=login)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = await api.post(
                "/api/workflows",
                headers=headers,
                json={"name": "w", "cash_flows": [-10.0, 6.0, 6.0], "parameters": {"discount_rate": 0.1}},
            )
            workflow = created.json()["id"]

            async def read_both() -> list[int]:
                started = time.monotonic()
                answers = [
                    await api.get(f"/api/workflows/{workflow}", headers=headers),  # raw asyncpg pool
                    await api.patch(f"/api/workflows/{workflow}", headers=headers, json={"name": "v"}),  # the ORM
                ]
                assert time.monotonic() - started < REQUEST_DEADLINE_S, "a request hung"
                return [answer.status_code for answer in answers]

            assert await read_both() == [200, 200]
            postgres.stop()
            down = [await read_both() for _ in range(3)]
            assert all(codes == [503, 503] for codes in down), down

            restarted = start_postgres(data_dir, port=port)
            try:
                deadline = time.monotonic() + 30
                while (codes := await read_both()) != [200, 200]:
                    assert set(codes) <= {200, 503}, codes
                    assert time.monotonic() < deadline, "the service did not recover"
                    await asyncio.sleep(0.1)
                assert (await api.get(f"/api/workflows/{workflow}", headers=headers)).json()["name"] == "v"
            finally:
                restarted.stop()
