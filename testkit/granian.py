"""Granian serving an app factory as a child process of its own: for the tests that need a real server and for
the benchmark, which measures one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import click
import httpx
import msgspec

READY_TIMEOUT_S = 60.0
READY_POLL_INTERVAL_S = 0.1
STOP_TIMEOUT_S = 15.0
HOST = "127.0.0.1"
FAILURE_LOG_LINES = 30
LOG_TAIL_MAX_BYTES = 256 * 1024
# Fields 14 and 15 of /proc/<pid>/stat, counted from the state (field 3) after the parenthesised command name.
PROC_STAT_UTIME = 11
PROC_STAT_STIME = 12


class ServerFailed(click.ClickException):
    """The server did not come up; the message carries the end of its log (click prints it for `roi bench`)."""


class Server(msgspec.Struct, frozen=True):
    """A running Granian: where to reach it, and its main process, whose children are the workers."""

    host: str
    port: int
    pid: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def worker_pids(self) -> list[int]:
        """Granian's worker processes: the children of its main process."""
        return [
            int(pid)
            for task in Path(f"/proc/{self.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]

    def cpu_s(self) -> float:
        """User and system CPU seconds of Granian and its workers so far.

        Why: on 2 shared cores req/s moves with everything else running; the service's CPU per request does not.
        """
        return cpu_seconds([self.pid, *self.worker_pids()])


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of `pids` so far; a process that just exited counts nothing."""
    ticks = 0
    for pid in pids:
        with suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[PROC_STAT_UTIME]) + int(fields[PROC_STAT_STIME])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def granian_server(factory: str, environment: dict[str, str], workers: int, log_path: Path) -> Iterator[Server]:
    """Serve the app of `factory` with Granian until the block ends; yields it once `/ready` answers 200.

    Granian runs in a session of its own, so that whatever it leaves behind can be killed as one process group.
    """
    port = _free_port()
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", str(workers)]
    command += ["--factory", factory, "--host", HOST, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **environment}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        server = Server(host=HOST, port=port, pid=process.pid)
        _wait_ready(process, server.base_url, log_path)
        yield server
    finally:
        _stop(process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_answer = "no answer"
    with httpx.Client(base_url=base_url, timeout=READY_POLL_INTERVAL_S * 10) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerFailed(
                    f"the server exited with code {process.returncode} before it was ready.\n" + _failure_log(log_path)
                )
            try:
                answer = client.get("/ready")
            except httpx.TransportError as error:
                last_answer = repr(error)
            else:
                if answer.status_code == 200:
                    return
                last_answer = f"{answer.status_code} {answer.text}"
            time.sleep(READY_POLL_INTERVAL_S)
    raise ServerFailed(
        f"the server was not ready after {READY_TIMEOUT_S:.0f} s (last answer: {last_answer}).\n"
        + _failure_log(log_path)
    )


def log_tail(log_path: Path, lines: int) -> str:
    """The last `lines` lines of a log that may have grown large (one line per request)."""
    with log_path.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - LOG_TAIL_MAX_BYTES))
        tail = log.read().decode(errors="replace").splitlines()
    return "\n".join(tail[-lines:] if size <= LOG_TAIL_MAX_BYTES else tail[1:][-lines:])


def _failure_log(log_path: Path) -> str:
    return f"The end of its log:\n{log_tail(log_path, FAILURE_LOG_LINES)}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM for a clean shutdown, then SIGKILL for anything of the group still there, so no process outlives us."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
