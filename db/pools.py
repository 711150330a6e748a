"""The raw asyncpg pool behind the hot read paths, next to the ORM engine used for writes."""

from __future__ import annotations

from functools import partial
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.engine import make_url

from db.statements import StatementObserver, read_pool_logger

SESSION_SETTINGS = {"timezone": "UTC", "idle_in_transaction_session_timeout": "60000"}
"""Every connection's session: UTC, and PostgreSQL ends a transaction left idle for a minute (a connection lost
mid-transaction by a crashed or cancelled task must not hold its locks for ever)."""


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a `postgresql+asyncpg://` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def compact_json(text: bytes) -> bytes:
    """PostgreSQL's `json_build_object` writes `{"id" : 1, "name" : "x"}`: 12 % of a workflow page is those
    spaces. Stripping them (msgspec, without decoding) costs ~2 µs per KB, once per cache fill of a page, and
    saves the bytes on every answer, compressed or not."""
    return msgspec.json.format(text, indent=-1)


async def _prepare_connection(observers: list[StatementObserver], connection: asyncpg.Connection) -> None:
    # The binary wire format of `json` is its UTF-8 text: hand those bytes over, compacted but not decoded.
    await connection.set_type_codec(
        "json", schema="pg_catalog", encoder=lambda value: value, decoder=compact_json, format="binary"
    )
    connection.add_query_logger(read_pool_logger(observers))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip the per-release reset round trip: read-pool users never change session state."""


async def create_read_pool(
    database_url: str, size: int, observers: list[StatementObserver] | None = None, **options: Any
) -> asyncpg.Pool:
    """A pool whose `json` results arrive as bytes; every statement is reported to each of `observers`.

    `observers` is read at call time, so observers added later (the slow-query log, a test's counter) see everything.
    """
    return await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=1,
        max_size=size,
        init=partial(_prepare_connection, observers if observers is not None else []),
        reset=_keep_session,
        server_settings={"application_name": "roi-read", **SESSION_SETTINGS},
        **options,
    )
