"""The processes a chaos run owns and breaks: PostgreSQL, Valkey and `roi serve` (Granian + supervised workers).

Why its own servers: a fault must be able to stop and start them, which the shared test servers cannot allow. The
embedded binaries are used (app/embedded.py), restarted on the same port so that clients find them where they were.
PostgreSQL is stopped with the signals `pg_ctl stop -m fast|immediate` sends to the postmaster (SIGINT, SIGQUIT):
pg_ctl itself refuses to run as root, and the postmaster is our child anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.embedded import EmbeddedServer, start_postgres, start_valkey
from bench.service import BenchFailed
from testkit.granian import log_tail

API_WORKERS = 2
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
"""`roi serve` stops Granian, then gives its `roi worker`s 20 s to hand their jobs back: on this loaded 2-core
machine that once took over 30 s."""
POLL_S = 0.1
NAMESPACE = "roi-chaos"


def children(pid: int) -> list[int]:
    """The direct children of `pid` (none if it is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        with suppress(FileNotFoundError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@dataclass
class Cluster:
    """PostgreSQL, Valkey and `roi serve`, each restartable in place; the port of each stays the same."""

    data_dir: Path
    log_dir: Path
    api_port: int
    secret_key: str
    postgres: EmbeddedServer | None = None
    valkey: EmbeddedServer | None = None
    serve: subprocess.Popen[bytes] | None = None
    serve_starts: int = 0
    seen_pids: set[int] = field(default_factory=set)
    """Every process of `roi serve`'s tree seen while it ran: none may outlive the run."""

    @property
    def database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url

    @property
    def redis_url(self) -> str:
        assert self.valkey is not None
        return self.valkey.url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        self.postgres = start_postgres(self.data_dir)
        self.valkey = start_valkey(self.data_dir)
        self.start_api()

    # --- roi serve -------------------------------------------------------------------------------------------

    def start_api(self) -> None:
        """`roi serve` on the run's port, waited for until `/ready` answers 200."""
        environment = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_NAMESPACE": NAMESPACE,
            "ROI_DATA_DIR": str(self.data_dir),
            "SECRET_KEY": self.secret_key,
            "WORKER_PROCESSES": "1",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "app", "serve", "--port", str(self.api_port), "--workers", str(API_WORKERS)]
        with (self.log_dir / "serve.log").open("ab") as log:
            self.serve = subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.serve_starts += 1
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until `/ready` answers 200 (both dependencies up, as the API sees them); `roi serve` exiting is fatal."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.serve is not None and self.serve.poll() is not None:
                    raise BenchFailed(
                        f"chaos: roi serve exited with code {self.serve.returncode} before it was ready:\n"
                        + log_tail(self.log_dir / "serve.log", 30)
                    )
                try:
                    answer = client.get("/ready")
                except httpx.TransportError as error:
                    last = repr(error)
                else:
                    if answer.status_code == 200:
                        self.note_pids()
                        return
                    last = f"{answer.status_code} {answer.text}"
                time.sleep(POLL_S)
        raise BenchFailed(f"chaos: roi serve not ready after {READY_TIMEOUT_S:g} s (last answer: {last})")

    def api_processes(self) -> dict[int, str]:
        """`roi serve`'s processes by role: its main process (Granian's too), Granian's workers, `roi worker`s."""
        if self.serve is None or self.serve.poll() is not None:
            return {}
        roles = {self.serve.pid: "roi serve (granian main)"}
        for pid in children(self.serve.pid):
            roles[pid] = "roi worker" if " app worker" in command_line(pid) else "granian worker"
        return roles

    def note_pids(self) -> None:
        self.seen_pids.update(self.api_processes())

    def api_exited(self) -> int | None:
        """The exit code of `roi serve` if it has exited."""
        return None if self.serve is None else self.serve.poll()

    def stop_api(self) -> int:
        """SIGTERM `roi serve` and wait for it; SIGKILL its group past STOP_TIMEOUT_S. Its exit code (-9 if killed)."""
        assert self.serve is not None
        self.note_pids()
        if self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.serve.pid, signal.SIGKILL)
                self.serve.wait()
        return self.serve.returncode

    def restart_api(self) -> int:
        code = self.stop_api()
        self.start_api()
        return code

    def kill(self, role: str, pid_choice: int) -> int | None:
        """SIGKILL the `pid_choice`-th (modulo) process of `role` under `roi serve`; its pid, None if there is none."""
        self.note_pids()
        pids = sorted(pid for pid, each in self.api_processes().items() if each == role)
        if not pids:
            return None
        pid = pids[pid_choice % len(pids)]
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    # --- dependencies ----------------------------------------------------------------------------------------

    def restart_postgres(self, mode: str) -> None:
        """Stop the postmaster as `pg_ctl stop -m <mode>` would (fast: SIGINT, immediate: SIGQUIT), start it again."""
        assert self.postgres is not None
        port = _port_of(self.postgres.url)
        self._stop(self.postgres, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        self.postgres = start_postgres(self.data_dir, port=port)

    def restart_redis(self) -> None:
        """SIGTERM (Valkey saves its snapshot, as configured), then start it again on its port."""
        assert self.valkey is not None
        port = _port_of(self.valkey.url)
        self._stop(self.valkey, signal.SIGTERM)
        self.valkey = start_valkey(self.data_dir, port=port)

    @staticmethod
    def _stop(server: EmbeddedServer, stop_signal: signal.Signals) -> None:
        server.process.send_signal(stop_signal)
        try:
            server.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()

    def dependency_processes(self) -> dict[int, str]:
        roles: dict[int, str] = {}
        if self.postgres is not None and self.postgres.process.poll() is None:
            roles[self.postgres.process.pid] = "postgres (postmaster)"
            roles.update((pid, "postgres backend") for pid in children(self.postgres.process.pid))
        if self.valkey is not None and self.valkey.process.poll() is None:
            roles[self.valkey.process.pid] = "valkey"
        return roles

    def leaked_pids(self) -> list[int]:
        """Processes of `roi serve`'s trees still alive once it was stopped."""
        alive = []
        for pid in sorted(self.seen_pids):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state != "Z":
                alive.append(pid)
        return alive

    def close(self) -> None:
        """Stop everything, whatever state the run left it in."""
        if self.serve is not None:
            with suppress(Exception):
                self.stop_api()
            with suppress(ProcessLookupError):
                os.killpg(self.serve.pid, signal.SIGKILL)
        for server in (self.valkey, self.postgres):
            if server is not None:
                server.stop()
