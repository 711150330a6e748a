"""The service as a browser meets it: Granian serving the app on a port that stays the same across restarts (a
page keeps its URL while the server goes away and comes back), plus a `roi worker` process, so that uploads are
parsed and workflows actually run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infra.settings import Settings
from tests.integration.jobs_support import worker_process

HOST = "127.0.0.1"
READY_S = 60.0
STOP_S = 15.0
HEARTBEAT_S = "1"
"""The WebSocket heartbeat of the servers under test: a page that does not answer pings is closed within ~3 s."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class ConsoleService:
    """`start()`, `stop()` and `start()` again on the same port; the worker runs throughout."""

    def __init__(self, settings: Settings, work_dir: Path) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.port = free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.log = work_dir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def environment(self) -> dict[str, str]:
        metrics = self.work_dir / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "DATABASE_URL": self.settings.database_url or "",
            "REDIS_URL": self.settings.redis_url or "",
            "REDIS_NAMESPACE": self.settings.redis_namespace,
            "SECRET_KEY": self.settings.secret_key,
            "ROI_DATA_DIR": str(self.settings.roi_data_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "WS_HEARTBEAT_S": HEARTBEAT_S,
        }

    def start(self) -> None:
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1"]
        command += ["--factory", "app.asgi:create_app", "--host", HOST, "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.server = subprocess.Popen(
                command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if self.worker is None:
            self.worker = worker_process(self.settings, ROI_DATA_DIR=str(self.settings.roi_data_dir))
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            assert self.server is not None
            assert self.server.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base_url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # a port not open yet: nothing to wait on but time
        raise AssertionError(f"the server was not ready in {READY_S}s:\n{self.log.read_text()[-3000:]}")

    def stop_server(self) -> None:
        """SIGTERM, as a deployment would: open sockets are closed with 1001, then the group is gone."""
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(STOP_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()
        self.server = None

    def stop(self) -> None:
        self.stop_server()
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None
