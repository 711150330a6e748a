"""PostgreSQL's two ways in, each built by one function from the settings: the ORM engine (Advanced Alchemy's
sessions, the run state machine, the reconciler) and the asyncpg pool (the hot reads, rendered as JSON by PostgreSQL,
and the tus offset-of-record writes, one statement each)."""

from __future__ import annotations

from functools import partial

import asyncpg
import msgspec
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.statements import StatementObserver, asyncpg_pool_logger
from infra.settings import Settings

SESSION_SETTINGS = {"timezone": "UTC", "idle_in_transaction_session_timeout": "60000"}
"""Every connection's session: UTC, and PostgreSQL ends a transaction left idle for a minute (a connection lost
mid-transaction by a crashed or cancelled task must not hold its locks for ever)."""

ASYNCPG_SESSION_SETTINGS = {**SESSION_SETTINGS, "plan_cache_mode": "force_generic_plan"}
"""The asyncpg pool's statements are prepared once per connection and run thousands of times: each is planned once.

Why: under the default (`auto`) PostgreSQL re-planned every page read (~0.2 ms for a page's statement, more than its
execution), because the generic plan of `LIMIT $2` looks costlier than a custom plan for 51 rows. Every statement of
this pool reads by key or by the owner's range of an index that matches it whatever the parameters, so the generic plan
is the custom plan without the planning (tests/integration/test_query_discipline.py checks those plans)."""


BROKEN_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
)
"""What a connection lost or left mid-operation raises (`cannot switch to state 12; another operation is in
progress`): the connection is unusable, though its socket may look open."""
_BROKEN_INTERFACE_MESSAGES = ("another operation is in progress", "connection is closed", "cannot switch to state")
"""The `InterfaceError`s that mean the same. Others are the caller's mistakes on a healthy connection (a bad
argument, a wrong number of them): bugs, answered 500 and logged, which must not empty the pools."""


def is_broken_connection(error: BaseException | None) -> bool:
    if isinstance(error, BROKEN_CONNECTION_ERRORS):
        return True
    return isinstance(error, asyncpg.exceptions.InterfaceError) and any(
        message in str(error) for message in _BROKEN_INTERFACE_MESSAGES
    )


SERVER_GONE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
"""What PostgreSQL itself answers when it is unreachable, shutting down or restarting."""
LOST_CONNECTION_ERRORS: tuple[type[Exception], ...] = (OSError, *SERVER_GONE_ERRORS)
"""What a statement raises when its connection, not the statement, failed (cut, or the server shutting down or
restarting): the same statement on another connection may succeed."""


def is_lost_connection(error: BaseException) -> bool:
    return isinstance(error, LOST_CONNECTION_ERRORS) or is_broken_connection(error)


def _count_broken_as_disconnect(context: ExceptionContext) -> None:
    """SQLAlchemy invalidates a connection (and the pool's older ones) only for what its dialect calls a
    disconnect, which asyncpg's dialect decides by the socket alone: a connection whose protocol was left
    mid-operation went back to the pool, and failed the next request that drew it."""
    error = context.original_exception
    if is_broken_connection(error) or is_broken_connection(error.__cause__):
        context.is_disconnect = True


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a `postgresql+asyncpg://` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


_SPACED_KEY = b'" : '
_SPACED = (_SPACED_KEY, b", \n ")
"""What `json_build_object` puts around a key's colon (`{"id" : 1}`), and `json_agg` between rows
(`[{"x":1}, \n {"x":2}]`)."""


def compact_json(text: bytes) -> bytes:
    """PostgreSQL's `json_build_object` writes `{"id" : 1, "name" : "x"}`: 12 % of a workflow page was those
    spaces. Stripping them (msgspec, without decoding) costs ~2 µs per KB, so JSON without that spacing, as the
    workflow documents are stored (migration 0009), is handed over as it is. Formatting is idempotent: a string
    value that happens to hold `" : ` costs the time, never the answer."""
    if not any(spacing in text for spacing in _SPACED):
        return text
    return msgspec.json.format(text, indent=-1)


def written_spaced(json_object: bytes) -> bool:
    """Whether a JSON object has `json_build_object`'s spacing, told by its first key alone (`{"id" : …`).

    Why not search the whole text: over a 70 kB page, the search cost ~60 µs, 12 % of the API worker's CPU for the
    page (perf). A first key with an escaped quote reads as compact: the JSON goes out as valid, only not compacted.
    """
    end = json_object.find(b'"', 2)
    return json_object[end : end + len(_SPACED_KEY)] == _SPACED_KEY


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
    min_size: int = 1,
) -> asyncpg.Pool:
    """A pool whose `json` results arrive as bytes; every statement is reported to each of `observers`.

    With `min_size` 0 it opens no connection until the first statement, so it can be created while PostgreSQL is
    down (an API process that starts then answers 503 until it is back, instead of failing to start).

    `observers` is read at call time, so observers added later (the slow-query log, a test's counter) see everything.
    """
    assert settings.database_url, "DATABASE_URL is set before anything connects"
    return await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=min_size,
        max_size=max_size or settings.db_asyncpg_pool_size,
        init=partial(_prepare_connection, observers if observers is not None else []),
        reset=_keep_session,
        server_settings={"application_name": application_name, **ASYNCPG_SESSION_SETTINGS},
    )


def create_engine(settings: Settings, application_name: str) -> AsyncEngine:
    """The ORM engine: pre-pinged, recycled, bounded, statement errors logged without their parameters (no emails
    or password hashes in the log)."""
    assert settings.database_url, "DATABASE_URL is set before anything connects"
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
        pool_recycle=settings.db_pool_recycle_s,
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={"server_settings": {"application_name": application_name, **SESSION_SETTINGS}},
    )
    event.listen(engine.sync_engine, "handle_error", _count_broken_as_disconnect)
    return engine
