"""An API process that starts while PostgreSQL and Redis are down comes up anyway: it answers 503 (and /ready 503) until
they are back, then serves, with no restart. A start-up that needed PostgreSQL made each Granian worker exit, and
Granian gives up on a worker that dies again within seconds: `roi serve` exited instead of waiting."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.embedded import EmbeddedServer, start_postgres
from db.migrate import upgrade
from infra.settings import Settings
from testkit.factories import RegistrationFactory
from tests.integration.redis_support import OwnRedis
from tests.integration.ws_support import live_server, token_for


@pytest.fixture
def stopped_postgres() -> Iterator[tuple[Path, str]]:
    """A migrated PostgreSQL of the test's own, stopped: its data directory and URL."""
    data_dir = Path(tempfile.mkdtemp(prefix="roi-test-cold-start-"))
    data_dir.chmod(0o755)
    server = start_postgres(data_dir)
    try:
        upgrade(server.url)
    finally:
        server.stop()
    try:
        yield data_dir, server.url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_the_api_starts_while_postgresql_and_redis_are_down_and_serves_once_they_are_up(
    stopped_postgres: tuple[Path, str], own_redis: OwnRedis, settings: Settings
) -> None:
    data_dir, url = stopped_postgres
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    own_redis.kill()
    app = create_app(msgspec.structs.replace(settings, database_url=url, redis_url=own_redis.url))
    registration = RegistrationFactory.build()
    body = {"email": registration.email, "password": registration.password, "name": registration.name}

    postgres: EmbeddedServer | None = None
    async with AsyncTestClient(app) as client:  # the start-up itself must not fail
        try:
            assert (await client.get("/health")).status_code == 200
            ready = await client.get("/ready")
            assert (ready.status_code, ready.json()["dependencies"]) == (503, {"postgresql": "down", "redis": "down"})
            refused = await client.post("/api/auth/register", json=body)
            assert (refused.status_code, refused.headers.get("retry-after")) == (503, "2"), refused.text
            # No token passes before the revocations were read: a revoked one could reach what needs no database.
            token = token_for(settings, str(uuid.uuid4()), 60)
            unchecked = await client.get("/api/workflows", headers={"Authorization": f"Bearer {token}"})
            assert (unchecked.status_code, unchecked.headers.get("retry-after")) == (503, "2"), unchecked.text
            assert "revoked tokens are not read yet" in unchecked.json()["detail"]

            postgres = await asyncio.to_thread(start_postgres, data_dir, port)
            await asyncio.to_thread(own_redis.start)
            deadline = time.monotonic() + 30
            while (await client.get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, "the API never saw PostgreSQL come back"
            created = await client.post("/api/auth/register", json=body)
            assert created.status_code == 201, created.text
            login = {"email": registration.email, "password": registration.password}
            token = (await client.post("/api/auth/login", json=login)).json()["access_token"]
            workflows = await client.get("/api/workflows", headers={"Authorization": f"Bearer {token}"})
            assert (workflows.status_code, workflows.json()["items"]) == (200, [])
        finally:
            if postgres is not None:
                postgres.stop()


class StartPostgresOnce503:
    """Waits (in a thread, while the test is starting Granian) for the API to answer `/ready` with PostgreSQL down,
    then starts PostgreSQL: Granian's start only returns once `/ready` is 200, so without a worker that came up
    while PostgreSQL was down, it never does."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir, self.port, self.log = data_dir, port, log
        self.seen: list[int] = []
        self.server: EmbeddedServer | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _api_port(self) -> int:
        deadline = time.monotonic() + 60
        while not (found := re.search(rb"Listening at: http://[^:]+:(\d+)", self._log_bytes())):
            assert time.monotonic() < deadline, "Granian never listened"
            time.sleep(0.05)  # another process's log file: there is no event to wait on
        return int(found[1])

    def _log_bytes(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self._api_port()}", timeout=5.0) as http:
            deadline = time.monotonic() + 60
            while len(self.seen) < 3 and time.monotonic() < deadline:
                try:
                    self.seen.append(http.get("/ready").status_code)
                except httpx.TransportError:
                    time.sleep(0.05)  # a worker is (re)starting
        self.server = start_postgres(self.data_dir, self.port)


def test_granian_workers_started_while_postgresql_is_down_wait_for_it(
    stopped_postgres: tuple[Path, str], settings: Settings, tmp_path: Path
) -> None:
    data_dir, url = stopped_postgres
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    starter = StartPostgresOnce503(data_dir, port, tmp_path / "server.log")
    try:
        with live_server(msgspec.structs.replace(settings, database_url=url), tmp_path, workers=2) as server:
            assert starter.seen == [503, 503, 503]
            registration = RegistrationFactory.build()
            body = {"email": registration.email, "password": registration.password, "name": registration.name}
            assert httpx.post(f"{server.base_url}/api/auth/register", json=body, timeout=10).status_code == 201
    finally:
        starter.thread.join(timeout=70)
        if starter.server is not None:
            starter.server.stop()
