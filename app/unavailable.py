"""A database that is down or restarting is the service's condition, not a bug: 503 with Retry-After, at once.

Both pools fail fast when PostgreSQL is gone (connections refused, or cut under a running query), so no request
hangs; the ORM pool's pre-ping and asyncpg's pool replace dead connections, so the service recovers by itself
when PostgreSQL is back. Any other database error is still a 500 and logged as one.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response
from sqlalchemy import exc as sa

RETRY_AFTER_S = 2

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    TimeoutError,
)
"""What a lost, refused or saturated PostgreSQL raises through the raw pool (the ORM wraps the same errors)."""

DATABASE_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, sa.DBAPIError, sa.TimeoutError)


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa.TimeoutError):  # no pooled connection came free in DB_POOL_TIMEOUT_S
        return True
    if isinstance(error, sa.DBAPIError):
        return (
            error.connection_invalidated
            or isinstance(error.orig, CONNECTION_ERRORS)
            or is_unavailable_cause(error)
            or is_unavailable_cause(error.orig)
        )
    return isinstance(error, CONNECTION_ERRORS)


def is_unavailable_cause(error: BaseException | None) -> bool:
    """Whether `error` was raised from a connection error. SQLAlchemy's asyncpg dialect raises its own DBAPI error
    from asyncpg's (`the database system is starting up`, `too many clients`) and wraps that in a DBAPIError whose
    `orig` it is: the asyncpg error is then the cause of `orig`, not of the DBAPIError."""
    cause = None if error is None else error.__cause__
    return cause is not None and cause is not error and isinstance(cause, CONNECTION_ERRORS)


def database_error_response(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, object]]:
    if is_unavailable(error):
        return Response(
            {"status_code": 503, "detail": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)
