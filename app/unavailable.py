"""A database that is down or restarting is the service's condition, not a bug: 503 with Retry-After, at once.

Both pools fail fast when PostgreSQL is gone (connections refused, or cut under a running query), so no request
hangs; the ORM pool's pre-ping and asyncpg's pool replace dead connections, so the service recovers by itself
when PostgreSQL is back. A connection broken mid-query can look alive (its protocol still busy with the lost
operation: `cannot switch to state 12; another operation is in progress`): the raw pool skips the reset round trip
that would notice, so on such an error every pooled connection is replaced, and the ORM engine counts the same errors
as disconnects (`db.pools`). Any other database error is still a 500 and logged as one.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from sqlalchemy import exc as sa

from db.pools import BROKEN_CONNECTION_ERRORS, SERVER_GONE_ERRORS, is_broken_connection

RETRY_AFTER_S = 2

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    *SERVER_GONE_ERRORS,
    asyncpg.exceptions.TooManyConnectionsError,
    *BROKEN_CONNECTION_ERRORS,
    ConnectionError,
    TimeoutError,
)
"""What a lost, refused or saturated PostgreSQL raises through the raw pool (the ORM wraps the same errors)."""

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.InterfaceError,
    sa.DBAPIError,
    sa.TimeoutError,
)
"""What `database_error_response` is asked about: a 503 when `is_unavailable`, else a 500."""


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa.TimeoutError):  # no pooled connection came free in DB_POOL_TIMEOUT_S
        return True
    if isinstance(error, sa.DBAPIError):
        return (
            error.connection_invalidated
            or _is_connection_error(error.orig)
            or is_unavailable_cause(error)
            or is_unavailable_cause(error.orig)
        )
    return _is_connection_error(error)


def _is_connection_error(error: BaseException | None) -> bool:
    return isinstance(error, CONNECTION_ERRORS) or is_broken_connection(error)


def is_unavailable_cause(error: BaseException | None) -> bool:
    """Whether `error` was raised from a connection error. SQLAlchemy's asyncpg dialect raises its own DBAPI error
    from asyncpg's (`the database system is starting up`, `too many clients`) and wraps that in a DBAPIError whose
    `orig` it is: the asyncpg error is then the cause of `orig`, not of the DBAPIError."""
    cause = None if error is None else error.__cause__
    return cause is not None and cause is not error and _is_connection_error(cause)


def database_error_response(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, object]]:
    if is_unavailable(error):
        return Response(
            {"status_code": 503, "detail": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            background=replace_pooled_connections(request, error),
        )
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


def replace_pooled_connections(request: Request[Any, Any, Any], error: Exception) -> BackgroundTask | None:
    """After a raw-pool connection broke (ORM errors arrive wrapped and are the engine's business), the pool's
    connections are replaced as they are next used, the broken one among them, instead of failing every request
    that draws it; the old ones are closed in the background. Run once the 503 is sent."""
    if not is_broken_connection(error):
        return None
    pool: asyncpg.Pool | None = getattr(getattr(request.app.state, "services", None), "asyncpg_pool", None)
    if pool is None:
        return None
    return BackgroundTask(pool.expire_connections)
