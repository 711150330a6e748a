"""Resident memory of the processes under load, read from /proc, for the mixed load's "flat memory" verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.bench.service import Server
from app.bench.workers import WorkerProcesses


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
    for task in Path(f"/proc/{server.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            roles[int(pid)] = "granian worker"
    for process in workers.processes:
        roles[process.pid] = "roi worker"
    return roles


def status_mib(pid: int, field_name: str) -> float:
    """A memory field of /proc/<pid>/status (kB) in MiB; NaN if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return float("nan")
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field_name}:"))
    return int(kib) / 1024
