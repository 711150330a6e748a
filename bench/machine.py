"""What the bench ran on: CPU, load, versions of the servers and packages, for the report's JSON."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import asyncpg
import msgspec
import redis.asyncio

from db.pools import asyncpg_dsn

PACKAGES = ("litestar", "granian", "uvloop", "msgspec", "asyncpg", "sqlalchemy", "advanced-alchemy", "redis")


class Machine(msgspec.Struct):
    """`load_average_before` (1, 5, 15 min) shows other work that shared the cores with this run."""

    cores: int
    cpu: str
    platform: str
    python: str
    packages: dict[str, str]
    postgresql: str
    redis: str
    load_average_before: list[float]


async def describe_machine(database_url: str, redis_url: str, load_average_before: list[float]) -> Machine:
    """What the figures depend on: the cores the load generator shares with the server, and every version."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        postgresql: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        server_info = await client.info("server")
    finally:
        await client.aclose()
    return Machine(
        cores=os.cpu_count() or 1,
        cpu=_cpu_model(),
        platform=platform.platform(),
        python=platform.python_version(),
        packages={name: importlib.metadata.version(name) for name in PACKAGES},
        postgresql=postgresql,
        redis=_redis_server(server_info),
        load_average_before=load_average_before,
    )


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return models[0] if models else platform.processor()


def _redis_server(server_info: dict[str, object]) -> str:
    if "valkey_version" in server_info:
        return f"valkey {server_info['valkey_version']}"
    return f"redis {server_info['redis_version']}"
