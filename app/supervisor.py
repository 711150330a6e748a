"""Worker processes beside the API: started with `roi serve`, restarted if they die, stopped with it."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

logger = logging.getLogger("roi.supervisor")

RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 20.0


class WorkerSupervisor:
    """Keeps `count` `roi worker` processes alive until `stop()`; a killed worker is replaced within a second."""

    def __init__(self, count: int, concurrency: int) -> None:
        self.command = [sys.executable, "-m", "app", "worker", "--concurrency", str(concurrency)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.count = count
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self.processes = [subprocess.Popen(self.command) for _ in range(self.count)]
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(RESTART_DELAY_S):
            for index, process in enumerate(self.processes):
                if process.poll() is not None and not self._stopping.is_set():
                    logger.warning("worker %s exited with %s; starting a new one", process.pid, process.returncode)
                    self.processes[index] = subprocess.Popen(self.command)

    def stop(self) -> None:
        """SIGTERM every worker (running jobs finish or are handed back), then SIGKILL what outlives the timeout."""
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
