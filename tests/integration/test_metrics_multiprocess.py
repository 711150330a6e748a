"""`roi serve` with two API workers: /metrics counts every request, whichever worker served it or answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from infra.settings import Settings
from tests.integration.test_metrics import value
from tests.integration.test_serve import EXIT_DEADLINE_S, free_port, stop_whatever_is_left, wait_ready

HEALTH = {"method": "GET", "path": "/health", "status_code": "200"}
BATCH = 50
SPREAD_DEADLINE_S = 60.0
"""How long to keep sending until both workers have served some: the kernel hands each new connection to whichever
worker is waiting in accept, and on a loaded machine one worker can take every connection of a batch (seen: 200 of
200) while the other is not scheduled."""


def serve(settings: Settings, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    assert settings.database_url
    assert settings.redis_url
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_NAMESPACE": settings.redis_namespace,
        "SECRET_KEY": settings.secret_key,
        "ROI_DATA_DIR": str(data_dir),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("roi")), "serve", "--port", str(port), "--workers", "2"],
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "serve.log").open("ab"),
    )


def health_requests_per_process(metrics_dir: Path) -> dict[str, float]:
    """Each process's own count, read from its file alone."""
    counts = {}
    for samples in metrics_dir.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(samples, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            counts[samples.stem] = registry.get_sample_value("roi_requests_total", HEALTH) or 0.0
    return counts


def counted_once_written(metrics_dir: Path, sent: int) -> dict[str, float]:
    """The counts once every request is in them: a worker counts a request as its answer goes out, so the client may
    hold the last answer a moment before its count is written."""
    deadline = time.monotonic() + EXIT_DEADLINE_S
    while sum((counts := health_requests_per_process(metrics_dir)).values()) < sent and time.monotonic() < deadline:
        time.sleep(0.01)  # the samples are files another process writes: there is no event to wait on
    return counts


@pytest.mark.slow
def test_metrics_sum_the_requests_of_both_workers(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = serve(settings, tmp_path, port)
    try:
        wait_ready(process, base_url, tmp_path)
        [metrics_dir] = tmp_path.glob("metrics-*")

        # A new connection per request, so that both workers take some: the kernel spreads the accepts. Sent in
        # batches until both have counted some, so that the sum /metrics answers is the sum of two processes' counts.
        sent, deadline = 0, time.monotonic() + SPREAD_DEADLINE_S
        with httpx.Client(base_url=base_url, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while True:
                for _ in range(BATCH):
                    assert http.get("/health").status_code == 200
                sent += BATCH
                per_process = counted_once_written(metrics_dir, sent)
                if len([count for count in per_process.values() if count > 0]) == 2 or time.monotonic() > deadline:
                    break
            answers = [value(http.get("/metrics").text, "roi_requests_total", **HEALTH) for _ in range(8)]

        assert sum(per_process.values()) == sent
        assert len([count for count in per_process.values() if count > 0]) == 2, per_process
        assert answers == [sent] * len(answers)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=EXIT_DEADLINE_S) == 0, (tmp_path / "serve.log").read_text()
        assert not metrics_dir.exists(), "each run starts from an empty directory"
    finally:
        stop_whatever_is_left(process)
