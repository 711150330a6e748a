"""Resident memory of the processes under load, read from /proc, for the mixed load's "flat memory" verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.workers import WorkerProcesses
from testkit.granian import Server


@dataclass
class Memory:
    """VmRSS samples of the server processes, by pid."""

    roles: dict[int, str]
    samples: dict[int, list[float]] = field(default_factory=dict)

    def sample(self) -> dict[int, float]:
        now = {pid: status_mib(pid, "VmRSS") for pid in self.roles}
        for pid, mib in now.items():
            self.samples.setdefault(pid, []).append(mib)
        return now


def process_roles(server: Server, workers: WorkerProcesses) -> dict[int, str]:
    """The processes whose memory is reported: Granian's main and workers, and the `roi worker`."""
    roles = {server.pid: "granian main"}
    roles.update((pid, "granian worker") for pid in server.worker_pids())
    for process in workers.processes:
        roles[process.pid] = "roi worker"
    return roles


def status_bytes(pid: int, field_name: str) -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field_name}:"))) * 1024


def status_mib(pid: int, field_name: str) -> float:
    """The same in MiB; NaN if the process is gone, or exited and not yet reaped (a zombie has no memory fields)."""
    try:
        return status_bytes(pid, field_name) / (1 << 20)
    except (FileNotFoundError, StopIteration):
        return float("nan")
