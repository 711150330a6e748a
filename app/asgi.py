"""create_app(): the one place where plugins, pools, middleware and routes are wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from app.health import health, ready
from app.resources import create_redis
from app.settings import Settings, get_settings
from db.pools import create_read_pool
from db.statements import observe_engine
from domain.accounts.controller import AccountController
from domain.accounts.security import build_jwt_auth
from domain.agents.controller import AgentController
from domain.cache import Cache
from domain.errors import DomainError
from domain.workflows.controller import WorkflowController


class MissingServiceURL(RuntimeError):
    """Raised when the app is built without a database or Redis to talk to."""


def domain_error_response(_: Request[Any, Any, Any], error: DomainError) -> Response[dict[str, object]]:
    """Domain errors in Litestar's standard error body."""
    return Response({"status_code": error.status_code, "detail": error.detail}, status_code=error.status_code)


def _no_metrics(family: str, outcome: str) -> None:
    """Replaced by the metrics counter once metrics are wired."""


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    if not settings.database_url or not settings.redis_url:
        raise MissingServiceURL(
            "DATABASE_URL and REDIS_URL must be set (`roi serve` starts embedded servers otherwise)"
        )
    database_url, redis_url = settings.database_url, settings.redis_url

    @asynccontextmanager
    async def pools(app: Litestar) -> AsyncIterator[None]:
        app.state.read_pool = await create_read_pool(
            database_url, settings.db_fast_pool_size, observers=app.state.query_observers
        )
        app.state.redis = create_redis(settings, redis_url)
        app.state.cache = Cache(app.state.redis, settings.redis_namespace, record=app.state.cache_outcome)
        observe_engine(sqlalchemy.get_engine(), app.state.query_observers)
        try:
            yield
        finally:
            await app.state.cache.close()
            await app.state.redis.aclose()
            await app.state.read_pool.close()

    sqlalchemy = SQLAlchemyAsyncConfig(
        connection_string=database_url,
        engine_config=EngineConfig(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=True,
            pool_recycle=settings.db_pool_recycle_s,
            pool_timeout=int(settings.db_pool_timeout_s),
            connect_args={"server_settings": {"application_name": "roi", "timezone": "UTC"}},
        ),
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )
    jwt_auth = build_jwt_auth(settings.secret_key, settings.access_token_ttl_s)
    prometheus = PrometheusConfig(app_name="roi", prefix="roi", group_path=True, exclude=["^/metrics"])

    return Litestar(
        route_handlers=[
            health,
            ready,
            PrometheusController,
            AccountController,
            AgentController,
            WorkflowController,
        ],
        plugins=[SQLAlchemyPlugin(config=sqlalchemy)],
        on_app_init=[jwt_auth.on_app_init],
        middleware=[prometheus.middleware],
        lifespan=[pools],
        exception_handlers={DomainError: domain_error_response},
        openapi_config=OpenAPIConfig(title="roi", version="0.1.0", path="/schema"),
        state=State({"jwt_auth": jwt_auth, "settings": settings, "query_observers": [], "cache_outcome": _no_metrics}),
    )
