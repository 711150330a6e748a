"""Test fixtures: real PostgreSQL and Redis (the configured ones, else embedded), one database per run."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.asgi import create_app
from db.migrate import upgrade
from db.pools import asyncpg_dsn
from infra.queue import PriorityRedisQueue, create_queue
from infra.settings import Settings
from testkit.seaweedfs import SeaweedFS, start_seaweedfs
from tests.integration.queue_support import forget_queue, queue_name
from tests.integration.redis_support import OwnRedis
from tests.integration.support import Account, sign_up


class ServiceURLs:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url


@pytest.fixture(scope="session")
def service_urls() -> Iterator[ServiceURLs]:
    """DATABASE_URL/REDIS_URL when set, otherwise embedded servers started for this run."""
    from app.embedded import start_postgres, start_valkey

    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    # Not under pytest's 0700 temp root: as root, embedded PostgreSQL runs as `nobody`, who must reach its data.
    data_dir = Path(tempfile.mkdtemp(prefix="roi-test-embedded-"))
    data_dir.chmod(0o755)
    started = []
    if not database_url:
        started.append(postgres := start_postgres(data_dir))
        database_url = postgres.url
    if not redis_url:
        started.append(valkey := start_valkey(data_dir))
        redis_url = valkey.url
    try:
        yield ServiceURLs(database_url, redis_url)
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


TEST_BUCKET = "roi-test"


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """A real S3-compatible server for this run, its bucket made, the AWS_* variables pointing at it meanwhile."""
    data_dir = Path(tempfile.mkdtemp(prefix="roi-test-seaweedfs-"))
    server = start_seaweedfs(data_dir)
    saved = {name: os.environ.get(name) for name in server.environment()}
    try:
        server.create_bucket(TEST_BUCKET)
        os.environ.update(server.environment())
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_store(seaweedfs: SeaweedFS) -> str:
    """An UPLOAD_STORE of this run's own: a prefix in the test bucket."""
    return f"s3://{TEST_BUCKET}/run-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def s3_client(settings: Settings, s3_store: str) -> AsyncIterator[AsyncTestClient]:
    """The app with UPLOAD_STORE in the bucket."""
    app = create_app(msgspec.structs.replace(settings, upload_store=s3_store))
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def database_url(service_urls: ServiceURLs) -> AsyncIterator[str]:
    """A fresh database for this run, migrated to head, dropped afterwards."""
    name = f"roi_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(service_urls.database_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = str(_with_database(service_urls.database_url, name))
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def settings(database_url: str, service_urls: ServiceURLs, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        roi_data_dir=Path(tmp_path_factory.mktemp("data")),
        redis_namespace=f"roitest-{uuid.uuid4().hex[:8]}",
        db_pool_size=5,
        db_max_overflow=5,
        db_asyncpg_pool_size=5,
    )


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A raw pool on the test database, for arranging rows and checking what was stored."""
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url or "")
    try:
        yield client
    finally:
        await client.aclose()


TRUNCATE_ATTEMPTS = 3


@pytest.fixture(autouse=True)
async def _isolated(db: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """Each test starts from an empty set of users and workflows (the seeded agents stay), and its Redis keys go."""
    yield
    async with db.acquire() as connection:
        # A lock held by something the test leaked fails this test loudly instead of hanging the run.
        await connection.execute("SET lock_timeout = '20s'")
        for attempt in range(TRUNCATE_ATTEMPTS):
            try:
                await connection.execute("TRUNCATE users, roi_workflows, workflow_steps CASCADE")
                break
            except asyncpg.DeadlockDetectedError:
                # The app's count folder, still running, locks the count tables and then users, the other way
                # round from TRUNCATE ... CASCADE: PostgreSQL ends one of the two, and the cleanup goes again.
                if attempt == TRUNCATE_ATTEMPTS - 1:
                    raise
        await connection.execute("RESET lock_timeout")
    client = Redis.from_url(settings.redis_url or "")
    namespace = settings.redis_namespace
    for pattern in (f"{namespace}:*", f"saq:{namespace}:*", f"saq:job:{namespace}:*"):
        async for key in client.scan_iter(match=pattern, count=1000):
            await client.delete(key)
    await client.aclose()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings)
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def alice(client: AsyncTestClient) -> Account:
    return await sign_up(client)


@pytest.fixture
async def bob(client: AsyncTestClient) -> Account:
    return await sign_up(client)


@pytest.fixture
async def app_queue(settings: Settings) -> AsyncIterator[PriorityRedisQueue]:
    """The app's own queue, lanes emptied first (earlier tests may have left jobs there) and afterwards."""
    assert settings.redis_url
    await forget_queue(settings.redis_url, queue_name(settings))
    queue = create_queue(settings.redis_url, settings.redis_namespace)
    try:
        yield queue
    finally:
        await queue.disconnect()
        await forget_queue(settings.redis_url, queue_name(settings))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Valkey of the test's own, for tests that freeze, kill or count commands on Redis."""
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.thaw()
        redis.kill()
