"""`roi serve` outlives its children: a SIGKILLed API worker or job worker is replaced, and the service goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.integration.test_end_to_end import sign_up, wait_for_status
from tests.integration.test_metrics_multiprocess import serve
from tests.integration.test_serve import (
    alive,
    free_port,
    stop_and_check_nothing_is_left,
    stop_whatever_is_left,
    wait_ready,
)

REPLACED_DEADLINE_S = 30.0


def children(pid: int) -> set[int]:
    return {
        int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()
    }


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def job_workers(serve_pid: int) -> set[int]:
    """The `roi worker` processes `roi serve` supervises."""
    return {pid for pid in children(serve_pid) if alive(pid) and " app worker " in command_line(pid)}


def api_workers(serve_pid: int) -> set[int]:
    """Granian's worker processes: `roi serve` runs Granian's main loop itself, and forks each worker."""
    serve_command = command_line(serve_pid)
    return {pid for pid in children(serve_pid) if alive(pid) and command_line(pid) == serve_command}


def replaced(current: Callable[[], set[int]], killed: int, count: int) -> set[int]:
    """The processes once `killed` is gone and `count` run again."""
    deadline = time.monotonic() + REPLACED_DEADLINE_S
    while killed in (pids := current()) or len(pids) != count:
        assert time.monotonic() < deadline, f"still {pids} {REPLACED_DEADLINE_S}s after {killed} was killed"
        time.sleep(0.05)  # processes of another parent: there is no event to wait on
    return pids


class Requester:
    """A client that keeps requesting `/health` on fresh connections, counting answers and failures, until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answered = 0
        self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # each request a new connection: any worker may take it
        with httpx.Client(base_url=self.base_url, timeout=5.0, limits=limits) as http:
            while not self.stopping.is_set():
                try:
                    ok = http.get("/health").status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    self.answered += 1
                else:
                    self.failed += 1

    def answers_again(self) -> None:
        """Until a request made from now on is answered."""
        seen = self.answered
        deadline = time.monotonic() + REPLACED_DEADLINE_S
        while self.answered <= seen + 1:
            assert time.monotonic() < deadline, f"no answer for {REPLACED_DEADLINE_S}s"
            time.sleep(0.01)


@pytest.fixture
def roi_serve(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    process = serve(settings, tmp_path, port)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", tmp_path)
        yield process, f"http://127.0.0.1:{port}"
        stop_and_check_nothing_is_left(process, tmp_path)
    finally:
        stop_whatever_is_left(process)


@pytest.mark.slow
def test_a_killed_api_worker_is_replaced_and_the_service_answers_on(
    roi_serve: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    process, base_url = roi_serve
    first, second = sorted(api_workers(process.pid))
    requester = Requester(base_url)
    requester.thread.start()
    try:
        requester.answers_again()
        os.kill(first, signal.SIGKILL)
        after_first = replaced(lambda: api_workers(process.pid), first, 2)
        [replacement] = after_first - {second}
        # Now the survivor too: only the replacement is left to answer until the survivor is replaced in turn.
        os.kill(second, signal.SIGKILL)
        after_second = replaced(lambda: api_workers(process.pid), second, 2)
        assert replacement in after_second
        requester.answers_again()
    finally:
        requester.stopping.set()
        requester.thread.join()
    assert process.poll() is None, (tmp_path / "serve.log").read_text()
    assert requester.answered > 0


@pytest.mark.slow
def test_a_killed_job_worker_is_replaced_and_runs_queued_after_complete(
    roi_serve: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    process, base_url = roi_serve
    [worker] = job_workers(process.pid)
    os.kill(worker, signal.SIGKILL)
    [replacement] = replaced(lambda: job_workers(process.pid), worker, 1)
    with httpx.Client(base_url=base_url, timeout=10) as http:
        alice = sign_up(http, "alice@example.com")
        body = {"name": "After the kill", "cash_flows": [-1000, 300, 400, 500], "parameters": {"discount_rate": 0.08}}
        workflow = http.post("/api/workflows", json=body, headers=alice).json()
        path = f"/api/workflows/{workflow['id']}"
        assert http.post(f"{path}/run", headers=alice).status_code == 202
        wait_for_status(http, path, alice, "succeeded")
    assert process.poll() is None, (tmp_path / "serve.log").read_text()
    assert job_workers(process.pid) == {replacement}
