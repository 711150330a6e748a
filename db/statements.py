"""One stream of executed SQL statements from both pools, for the slow-query log, metrics and tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from asyncpg.connection import LoggedQuery
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class ExecutedStatement(NamedTuple):
    sql: str
    elapsed_s: float
    pool: str


StatementObserver = Callable[[ExecutedStatement], None]


def notify(observers: list[StatementObserver], statement: ExecutedStatement) -> None:
    for observer in observers:
        observer(statement)


def asyncpg_pool_logger(observers: list[StatementObserver]) -> Callable[[LoggedQuery], None]:
    """An asyncpg query logger that forwards to `observers`, read at call time so later additions see everything."""

    def log(query: LoggedQuery) -> None:
        if observers:
            notify(observers, ExecutedStatement(query.query, query.elapsed, "asyncpg"))

    return log


def observe_engine(engine: AsyncEngine, observers: list[StatementObserver]) -> None:
    """Time every statement the ORM engine runs and forward it to `observers`."""

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        conn.info.setdefault("roi_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        elapsed = time.perf_counter() - conn.info["roi_started"].pop()
        if observers:
            notify(observers, ExecutedStatement(statement, elapsed, "orm"))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
