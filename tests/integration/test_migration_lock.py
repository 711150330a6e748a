"""Several hosts may start at once against a fresh database: each `roi serve` comes up, the schema migrated once."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from db.pools import asyncpg_dsn
from tests.integration.conftest import ServiceURLs
from tests.integration.test_serve import (
    free_port,
    serve,
    stop_and_check_nothing_is_left,
    stop_whatever_is_left,
    wait_ready,
)

HOSTS = 3


@pytest.fixture
async def fresh_database(service_urls: ServiceURLs) -> AsyncIterator[str]:
    """An empty database of this test's own: no schema, no alembic version."""
    name = f"roi_test_fresh_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(service_urls.database_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(service_urls.database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def serve_host(database_url: str, redis_url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    data_dir.mkdir()
    return serve(
        data_dir,
        port,
        workers=1,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_NAMESPACE=f"roitest-{uuid.uuid4().hex[:8]}",
        SECRET_KEY="test-secret-key-that-is-long-enough-for-hs256",
    )


@pytest.mark.slow
def test_hosts_started_together_on_a_fresh_database_all_come_up(
    fresh_database: str, service_urls: ServiceURLs, tmp_path: Path
) -> None:
    ports = [free_port() for _ in range(HOSTS)]
    hosts = [
        serve_host(fresh_database, service_urls.redis_url, tmp_path / f"host-{index}", port)
        for index, port in enumerate(ports)
    ]
    try:
        for index, (host, port) in enumerate(zip(hosts, ports, strict=True)):
            wait_ready(host, f"http://127.0.0.1:{port}", tmp_path / f"host-{index}")
        for port in ports:
            registered = httpx.post(
                f"http://127.0.0.1:{port}/api/auth/register",
                json={"email": f"{port}@example.com", "password": "correct horse", "name": "host"},
            )
            assert registered.status_code == 201, registered.text
        for index, host in enumerate(hosts):
            stop_and_check_nothing_is_left(host, tmp_path / f"host-{index}")
    finally:
        for host in hosts:
            stop_whatever_is_left(host)

    versions, seeded_agents = asyncio.run(_schema_marks(fresh_database))
    assert versions == 1
    assert seeded_agents == 5, "the seeding migration ran exactly once"


async def _schema_marks(database_url: str) -> tuple[int, int]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        versions: int = await connection.fetchval("SELECT count(*) FROM alembic_version")
        agents: int = await connection.fetchval("SELECT count(*) FROM agents")
    finally:
        await connection.close()
    return versions, agents
