"""create_app(): the one place where plugins, pools, middleware and routes are wired."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusController

from app.compression import compression_middleware
from app.console import console_handlers, head_as_get, offline_render_plugins
from app.health import health, ready
from app.http_cache import ConditionalGetMiddleware
from app.logs import configure_logging, log_server_error
from app.metrics import PrometheusLiveStats, count_cache_request, pool_metrics
from app.queue_ui import QUEUE_UI_DEPENDENCIES, QUEUE_UI_NAMESPACE, queue_ui_handlers
from app.request_log import RequestObserverMiddleware
from app.security_headers import response_headers
from app.settings import Settings, get_settings
from app.slow_queries import SlowQueryLog
from app.tus_headers import method_override
from app.unavailable import DATABASE_ERRORS, database_error_response
from db.pools import SESSION_SETTINGS, create_read_pool
from db.statements import observe_engine
from domain.accounts.controller import AccountController
from domain.accounts.security import build_jwt_auth
from domain.accounts.throttle import LoginThrottle
from domain.agents.controller import AgentController
from domain.cache import Cache, create_cache_redis
from domain.errors import DomainError
from domain.events.bus import EventBus
from domain.events.socket import LiveConfig
from domain.events.ws import live_events_endpoint, live_events_lifespan, with_direct_send
from domain.http import public_cache
from domain.pagination import CursorSigner
from domain.redis_get import PipelinedGet
from domain.uploads.controller import UploadController
from domain.uploads.service import UploadService
from domain.uploads.storage import local_storage
from domain.uploads.store import UploadStore
from domain.workflows.controller import WorkflowController
from workers.queues import create_queue


class MetricsController(PrometheusController):
    """Prometheus text for scrapers, left out of the OpenAPI document, which describes the JSON API."""

    include_in_schema = False


class MissingServiceURL(RuntimeError):
    """Raised when the app is built without a database or Redis to talk to."""


def domain_error_response(_: Request[Any, Any, Any], error: DomainError) -> Response[dict[str, object]]:
    """Domain errors in Litestar's standard error body."""
    return Response(
        {"status_code": error.status_code, "detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


def freeze_startup_objects() -> None:
    """What starting up allocated (modules, ORM, routes, pools) lives as long as the app: kept out of the garbage
    collector's scans, a full collection no longer pauses the loop for ~100 ms (seen with 1,000 sockets open).
    Unfrozen on shutdown, so that a process building many apps (the tests) can still collect the old ones."""
    gc.freeze()


def cors_config(settings: Settings) -> CORSConfig | None:
    """Off unless origins are configured: the API authenticates with bearer tokens, never cookies, so a browser
    app on another origin needs CORS only to read answers; tus clients need its headers exposed."""
    origins = [origin.strip() for origin in settings.cors_allow_origins.split(",") if origin.strip()]
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Tus-Resumable",
            "Upload-Length",
            "Upload-Offset",
            "Upload-Metadata",
            "Upload-Checksum",
            "X-HTTP-Method-Override",
            "X-Request-ID",
        ],
        expose_headers=[
            "Location",
            "Upload-Offset",
            "Upload-Length",
            "Upload-Expires",
            "Upload-Metadata",
            "Tus-Resumable",
            "Tus-Version",
            "Tus-Extension",
            "Tus-Max-Size",
            "Tus-Checksum-Algorithm",
            "Retry-After",
            "X-Request-ID",
        ],
        allow_credentials=False,
        max_age=600,
    )


def upload_lease_s(settings: Settings) -> float:
    """An appending request renews its lease whenever bytes arrive and gives up after the idle timeout: a lease
    outliving that timeout can only lapse when its holder died."""
    return settings.upload_idle_timeout_s + 10.0


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    if not settings.database_url or not settings.redis_url:
        raise MissingServiceURL(
            "DATABASE_URL and REDIS_URL must be set (`roi serve` starts embedded servers otherwise)"
        )
    database_url, redis_url = settings.database_url, settings.redis_url
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def pools(app: Litestar) -> AsyncIterator[None]:
        app.state.read_pool = await create_read_pool(
            database_url, settings.db_fast_pool_size, observers=app.state.query_observers
        )
        app.state.redis = create_cache_redis(redis_url, settings.redis_max_connections, settings.redis_timeout_s)
        app.state.fast_get = PipelinedGet(redis_url, settings.redis_timeout_s)
        app.state.cache = Cache(
            app.state.redis, settings.redis_namespace, record=app.state.cache_outcome, fast_get=app.state.fast_get
        )
        app.state.cursors = CursorSigner(settings.secret_key)
        app.state.events = EventBus(
            app.state.redis, settings.redis_namespace, settings.event_history_size, settings.event_history_age_s
        )
        app.state.queue = create_queue(redis_url, settings.redis_namespace)
        app.state.login_throttle = LoginThrottle(
            app.state.redis,
            settings.redis_namespace,
            settings.login_max_failures_per_account,
            settings.login_max_failures_per_address,
            settings.login_failure_window_s,
        )
        app.state.upload_service = UploadService(
            UploadStore(app.state.read_pool, upload_lease_s(settings), settings.upload_expiry_s),
            local_storage(settings.roi_data_dir),
            app.state.events,
            app.state.queue,
            max_size=settings.tus_max_size,
            idle_timeout_s=settings.upload_idle_timeout_s,
            cursors=app.state.cursors,
        )
        observe_engine(sqlalchemy.get_engine(), app.state.query_observers)
        try:
            yield
        finally:
            await app.state.queue.disconnect()
            await app.state.cache.close()
            app.state.fast_get.close()
            await app.state.redis.aclose()
            await app.state.read_pool.close()
            # Last out: a session closed after the SQLAlchemy plugin's own dispose (seen with the test client) must
            # not leave its connection open for the life of the process.
            await sqlalchemy.get_engine().dispose()

    sqlalchemy = SQLAlchemyAsyncConfig(
        connection_string=database_url,
        engine_config=EngineConfig(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=True,
            hide_parameters=True,  # statement errors are logged: no emails or password hashes in their text
            pool_recycle=settings.db_pool_recycle_s,
            pool_timeout=int(settings.db_pool_timeout_s),
            connect_args={"server_settings": {"application_name": "roi", **SESSION_SETTINGS}},
        ),
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )
    jwt_auth = build_jwt_auth(settings.secret_key, settings.access_token_ttl_s)

    app = Litestar(
        route_handlers=[
            health,
            ready,
            MetricsController,
            AccountController,
            AgentController,
            WorkflowController,
            UploadController,
            live_events_endpoint,
            *queue_ui_handlers(),
            *console_handlers(),
        ],
        dependencies=QUEUE_UI_DEPENDENCIES,
        signature_namespace=QUEUE_UI_NAMESPACE,
        plugins=[SQLAlchemyPlugin(config=sqlalchemy)],
        on_app_init=[jwt_auth.on_app_init],
        on_startup=[freeze_startup_objects],
        on_shutdown=[gc.unfreeze],
        middleware=[compression_middleware(), ConditionalGetMiddleware],
        lifespan=[
            pools,
            live_events_lifespan(
                redis_url,
                settings.redis_namespace,
                LiveConfig(heartbeat_s=settings.ws_heartbeat_s, backlog=settings.ws_send_backlog),
                PrometheusLiveStats(),
            ),
            pool_metrics(sqlalchemy.get_engine),
        ],
        before_send=[response_headers],
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_json_body_bytes,
        after_exception=[log_server_error],
        logging_config=None,
        exception_handlers={
            DomainError: domain_error_response,
            **dict.fromkeys(DATABASE_ERRORS, database_error_response),
        },
        openapi_config=OpenAPIConfig(
            title="roi",
            version="0.1.0",
            openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, opt=public_cache(300)),
            render_plugins=offline_render_plugins(),
        ),
        state=State(
            {
                "jwt_auth": jwt_auth,
                "settings": settings,
                "query_observers": [SlowQueryLog(settings.slow_query_ms)],
                "cache_outcome": count_cache_request,
            }
        ),
    )
    # outside routing: sees 404s and 401s too; /ws frames skip Litestar's per-message wrappers
    app.asgi_handler = RequestObserverMiddleware(head_as_get(method_override(with_direct_send(app.asgi_handler))))
    return app
