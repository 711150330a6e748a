"""A PostgreSQL that is restarting answers 503, whatever layer of SQLAlchemy's asyncpg dialect wraps its refusal.

The errors are made by the dialect's own translation (the code that runs when a connection attempt fails), from
the asyncpg errors a restarting server sends: after `pg_ctl stop -m immediate` a client connecting during crash
recovery gets `the database system is starting up`, which once answered 500.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi

from app.unavailable import database_error_response, is_unavailable

REFUSALS = [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
]


def _as_sqlalchemy_raises_it(error: Exception) -> sa.DBAPIError:
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, error)
    except dbapi.Error as translated:
        try:
            raise sa.DBAPIError.instance(None, None, translated, dbapi.Error) from translated
        except sa.DBAPIError as wrapped:
            return wrapped
    raise AssertionError("the dialect did not raise")


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda error: type(error).__name__)
def test_a_refused_connection_answers_503_with_retry_after(refusal: Exception) -> None:
    answer = database_error_response(None, _as_sqlalchemy_raises_it(refusal))  # type: ignore[arg-type]

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"


def test_a_query_error_is_still_a_500() -> None:
    error = asyncpg.exceptions.UndefinedTableError('relation "nope" does not exist')

    assert database_error_response(None, _as_sqlalchemy_raises_it(error)).status_code == 500  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "lost",
    [
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation is in progress"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.InterfaceError("cannot perform operation: connection is closed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_connection_lost_mid_query_is_unavailability_raw_or_through_the_orm(lost: Exception) -> None:
    assert is_unavailable(lost)
    assert is_unavailable(_as_sqlalchemy_raises_it(lost))


@pytest.mark.parametrize(
    "mistake",
    [
        asyncpg.exceptions.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
        asyncpg.exceptions.DataError("invalid input for query argument $1: 'x' (expected str, got int)"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_statement_called_wrong_is_a_bug_not_an_outage(mistake: Exception) -> None:
    """A 503 would hide the bug behind "retry shortly", and replacing every pooled connection would not fix it."""
    assert not is_unavailable(mistake)
    assert database_error_response(None, mistake).status_code == 500  # type: ignore[arg-type]
