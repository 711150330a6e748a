"""PostgreSQL's two ways in, each built by one function from the settings: the ORM engine (Advanced Alchemy's
sessions, the run state machine, the reconciler) and the asyncpg pool (the hot reads, rendered as JSON by PostgreSQL,
and the tus offset-of-record writes, one statement each)."""

from __future__ import annotations

from functools import partial

import asyncpg
import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.statements import StatementObserver, asyncpg_pool_logger
from infra.settings import Settings

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
    connection.add_query_logger(asyncpg_pool_logger(observers))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip the per-release reset round trip: the pool's users never change session state."""


async def create_asyncpg_pool(
    settings: Settings,
    application_name: str,
    observers: list[StatementObserver] | None = None,
    max_size: int | None = None,
) -> asyncpg.Pool:
    """A pool whose `json` results arrive as bytes; every statement is reported to each of `observers`.

    `observers` is read at call time, so observers added later (the slow-query log, a test's counter) see everything.
    """
    assert settings.database_url, "DATABASE_URL is set before anything connects"
    return await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=1,
        max_size=max_size or settings.db_asyncpg_pool_size,
        init=partial(_prepare_connection, observers if observers is not None else []),
        reset=_keep_session,
        server_settings={"application_name": application_name, **SESSION_SETTINGS},
    )


def create_engine(settings: Settings, application_name: str) -> AsyncEngine:
    """The ORM engine: pre-pinged, recycled, bounded, statement errors logged without their parameters (no emails
    or password hashes in the log)."""
    assert settings.database_url, "DATABASE_URL is set before anything connects"
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
        pool_recycle=settings.db_pool_recycle_s,
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={"server_settings": {"application_name": application_name, **SESSION_SETTINGS}},
    )
