"""The bench's own surroundings: a throwaway database and Redis namespace, and answers it relies on."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import click
import httpx
import redis
from sqlalchemy.engine import make_url

from db.pools import asyncpg_dsn


class BenchFailed(click.ClickException):
    """The bench could not run; click prints the message and exits with code 1."""


def expect(answer: httpx.Response, status_code: int, scenario: str) -> bytes:
    """The body of an answer the bench relies on; any other status stops the bench, naming the request."""
    if answer.status_code != status_code:
        request = answer.request
        raise BenchFailed(
            f"{scenario}: {request.method} {request.url.path} answered {answer.status_code}: {answer.text}"
        )
    return answer.content


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the server of `server_url`, dropped afterwards, so the bench never touches real data."""
    name = f"roi_bench_{secrets.token_hex(4)}"
    admin_dsn = asyncpg_dsn(server_url)
    try:
        asyncio.run(_execute(admin_dsn, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        raise BenchFailed(f"cannot create the bench database on {_without_password(server_url)}: {error}") from error
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _without_password(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A key prefix of this run's own, whose keys are deleted afterwards: the configured Redis may be shared."""
    namespace = f"roi-bench-{secrets.token_hex(4)}"
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
