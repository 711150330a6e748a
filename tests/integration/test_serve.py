"""`roi serve` with no URLs: embedded servers start, the API answers, SIGTERM leaves nothing behind, data persists."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.embedded import ROOT_CLUSTERS

READY_DEADLINE_S = 90.0
EXIT_DEADLINE_S = 30.0
HELD_OPEN = 300
"""Idle keep-alive connections, more than Granian's backpressure once let one worker keep (128)."""
ANSWER_DEADLINE_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(root: int) -> set[int]:
    """Every live process below `root`, found through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="roi-serve-test-"))
    path.chmod(0o755)  # as root, embedded PostgreSQL runs as `nobody`, who must reach it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(
    data_dir: Path, port: int, *, set_data_dir: bool = True, workers: int = 2, **environment: str
) -> subprocess.Popen[bytes]:
    """`roi serve` in `data_dir` with no URLs, as the README starts it, then `environment`; with `set_data_dir`
    False, nothing set at all (the default ROI_DATA_DIR, ./.roi-data)."""
    unset = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ROI_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    if set_data_dir:
        env["ROI_DATA_DIR"] = str(data_dir)
    env |= environment
    roi = Path(sys.executable).with_name("roi")
    return subprocess.Popen(
        [str(roi), "serve", "--port", str(port), "--workers", str(workers)],
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "serve.log").open("ab"),
    )


def wait_ready(process: subprocess.Popen[bytes], base_url: str, data_dir: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, (data_dir / "serve.log").read_text()
        try:
            if httpx.get(f"{base_url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a port that is not yet open: there is no event to wait on
    pytest.fail(f"roi serve was not ready in {READY_DEADLINE_S}s:\n{(data_dir / 'serve.log').read_text()}")


def stop_whatever_is_left(process: subprocess.Popen[bytes]) -> None:
    """After a failed test: `roi serve` and every process below it, so nothing outlives the test."""
    tree = descendants(process.pid)
    process.kill()
    process.wait()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_and_check_nothing_is_left(process: subprocess.Popen[bytes], data_dir: Path) -> None:
    tree = descendants(process.pid)
    assert tree, "roi serve should run the API workers and the embedded servers as its children"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=EXIT_DEADLINE_S) == 0, (data_dir / "serve.log").read_text()
    deadline = time.monotonic() + EXIT_DEADLINE_S
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in tree if alive(pid)], "processes of roi serve outlived it"


def uploaded_ledger_status(base_url: str, headers: dict[str, str]) -> str:
    """Upload a small ledger with creation-with-upload and wait for the parse: what its status ends as."""
    ledger = b"period,cash_flow\n0,-100\n1,60\n2,60\n"
    created = httpx.post(
        f"{base_url}/api/uploads",
        content=ledger,
        headers={
            **headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(ledger)),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + EXIT_DEADLINE_S
    while (status := httpx.get(f"{base_url}{created.headers['location']}", headers=headers).json()["status"]) in (
        "uploading",
        "processing",
    ):
        assert time.monotonic() < deadline, "the upload was never parsed"
        time.sleep(0.05)
    return str(status)


@pytest.mark.slow
def test_serve_starts_embedded_servers_stops_cleanly_and_keeps_data(data_dir: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    account = {"email": "newcomer@example.com", "password": "correct horse", "name": "Newcomer"}

    first = serve(data_dir, port)
    try:
        wait_ready(first, base_url, data_dir)
        assert httpx.get(f"{base_url}/schema/openapi.json").json()["info"]["title"] == "roi"
        assert httpx.post(f"{base_url}/api/auth/register", json=account).status_code == 201
        stop_and_check_nothing_is_left(first, data_dir)
    finally:
        stop_whatever_is_left(first)

    second = serve(data_dir, port)
    try:
        wait_ready(second, base_url, data_dir)
        login = httpx.post(f"{base_url}/api/auth/login", json={k: account[k] for k in ("email", "password")})
        assert login.status_code == 200, "the account made before the restart is still there"
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert uploaded_ledger_status(base_url, headers) == "ready", "the API stores it, a worker parses it"
        stop_and_check_nothing_is_left(second, data_dir)
    finally:
        stop_whatever_is_left(second)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="checks how roi serve runs as root: only root can be root")
def test_serve_as_root_from_a_folder_other_accounts_cannot_enter() -> None:
    """A checkout in root's home (mode 0700) with nothing set: PostgreSQL runs as `nobody`, who cannot reach
    ./.roi-data there, so its cluster goes to a folder of roi's own; nothing of the home folder is loosened."""
    home = Path(tempfile.mkdtemp(prefix="roi-root-home-"))
    home.chmod(0o700)
    checkout = home / "roi"
    checkout.mkdir()
    cluster_home = ROOT_CLUSTERS / hashlib.sha256(os.fsencode(checkout / ".roi-data")).hexdigest()[:16]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = serve(checkout, port, set_data_dir=False)
    try:
        wait_ready(process, base_url, checkout)
        account = {"email": "root-user@example.com", "password": "correct horse", "name": "Root"}
        assert httpx.post(f"{base_url}/api/auth/register", json=account).status_code == 201
        assert (cluster_home / "postgres" / "PG_VERSION").exists()
        assert f"its data in {cluster_home / 'postgres'}" in (checkout / "serve.log").read_text()
        stop_and_check_nothing_is_left(process, checkout)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, "the home folder was left as it was"
    finally:
        stop_whatever_is_left(process)
        shutil.rmtree(cluster_home, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def run_roi(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    roi = Path(sys.executable).with_name("roi")
    return subprocess.run(
        [str(roi), *args], env={**env, **environment}, capture_output=True, text=True, timeout=EXIT_DEADLINE_S
    )


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({"DB_POOL_SIZE": "none"}, "a setting is invalid"),
        (
            {"DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/roi", "REDIS_URL": "redis://x"},
            "is PostgreSQL running there? Check DATABASE_URL",
        ),
    ],
    ids=["bad setting", "no database there"],
)
def test_a_start_up_failure_is_one_line_saying_what_to_do(
    tmp_path: Path, environment: dict[str, str], says: str
) -> None:
    outcome = run_roi("serve", "--port", str(free_port()), ROI_DATA_DIR=str(tmp_path), **environment)
    assert outcome.returncode == 1
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome.stderr
    assert says in lines[0]


@pytest.mark.slow
def test_a_worker_holding_many_idle_keep_alive_connections_still_answers_new_ones(data_dir: Path) -> None:
    """Granian's backpressure counts connections, idle or not: past it a new client waits, unanswered, in the
    kernel's backlog. Many idle clients must not shut the others out: the excess is for the admission limits."""
    port = free_port()
    process = serve(data_dir, port, workers=1)
    held: list[socket.socket] = []
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", data_dir)
        for _ in range(HELD_OPEN):
            connection = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_DEADLINE_S)
            held.append(connection)
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: roi\r\n\r\n")
            assert connection.recv(4096).startswith(b"HTTP/1.1 200"), f"connection {len(held)} was not answered"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=ANSWER_DEADLINE_S).status_code == 200
        stop_and_check_nothing_is_left(process, data_dir)
    finally:
        for connection in held:
            connection.close()
        stop_whatever_is_left(process)
