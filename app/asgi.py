"""create_app(): the one place where plugins, pools, middleware and routes are wired."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusController
from litestar.types import Method
from litestar.types.internal_types import PathParameterDefinition

from app.admission import AdmissionMiddleware
from app.compression import compression_middleware
from app.console import console_handlers, head_as_get, offline_render_plugins
from app.dependencies import SERVICE_DEPENDENCIES
from app.health import health, ready
from app.http_cache import ConditionalGetMiddleware
from app.logs import configure_logging, log_server_error
from app.metrics import PrometheusLiveStats, count_cache_request, pool_metrics
from app.queue_ui import QUEUE_UI_DEPENDENCIES, QUEUE_UI_NAMESPACE, queue_ui_handlers, redirect_to_the_ui_root
from app.queue_ui_signin import QUEUE_UI_SIGN_IN_HANDLERS, is_ui_page, sign_in_redirect
from app.request_log import RequestObserverMiddleware
from app.security_headers import response_headers
from app.slow_queries import SlowQueryLog
from app.tus_headers import method_override
from app.unavailable import DATABASE_ERRORS, database_error_response
from db.pools import create_engine
from db.statements import StatementObserver, observe_engine
from domain.accounts.controller import AccountController
from domain.accounts.security import build_jwt_auth
from domain.agents.controller import AgentController
from domain.errors import DomainError
from domain.events.socket import LiveConfig
from domain.events.ws import live_events_endpoint, live_events_lifespan, with_direct_send
from domain.http import public_cache
from domain.services import ApiServices, provide_services
from domain.uploads.controller import UploadController
from domain.workflows.controller import WorkflowController
from infra.closing import close_within
from infra.settings import Settings, get_settings


class MetricsController(PrometheusController):
    """Prometheus text for scrapers, left out of the OpenAPI document, which describes the JSON API."""

    include_in_schema = False


class MissingServiceURL(RuntimeError):
    """Raised when the app is built without a database or Redis to talk to."""


def domain_error_response(_: Request[Any, Any, Any], error: DomainError) -> Response[dict[str, object]]:
    """Domain errors in Litestar's standard error body."""
    headers = {**(error.headers or {}), **(BEARER_CHALLENGE if error.status_code == 401 else {})}
    return Response(
        {"status_code": error.status_code, "detail": error.detail}, status_code=error.status_code, headers=headers
    )


BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
"""What a 401 must say (RFC 9110): the scheme the client should authenticate with."""


def unauthorized_response(request: Request[Any, Any, Any], error: NotAuthorizedException) -> Response[Any]:
    """The token middleware's and guards' 401s, in the standard body, with the challenge; a page of the queue UI
    sends the browser to its sign-in form instead."""
    if is_ui_page(request):
        return sign_in_redirect()
    return Response({"status_code": 401, "detail": error.detail}, status_code=401, headers=BEARER_CHALLENGE)


def operation_id(handler: HTTPRouteHandler, method: Method, path: list[str | PathParameterDefinition]) -> str:
    """The handler's own name in camelCase (`listWorkflows`): what a generated client calls the operation."""
    first, *rest = handler.handler_name.split("_")
    return first + "".join(word.title() for word in rest)


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
            "ETag",
            "Content-Disposition",
        ],
        allow_credentials=False,
        max_age=600,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    if not settings.database_url or not settings.redis_url:
        raise MissingServiceURL(
            "DATABASE_URL and REDIS_URL must be set (`roi serve` starts embedded servers otherwise)"
        )
    configure_logging(settings.log_level)

    engine = create_engine(settings, "roi")
    jwt_auth = build_jwt_auth(settings.secret_key, settings.access_token_ttl_s)
    query_observers: list[StatementObserver] = [SlowQueryLog(settings.slow_query_ms)]
    observe_engine(engine, query_observers)

    @asynccontextmanager
    async def services(app: Litestar) -> AsyncIterator[None]:
        opened = await ApiServices.open_api(settings, engine, jwt_auth, query_observers, count_cache_request)
        app.state.services = opened
        try:
            yield
        finally:
            await opened.close()
            # Last out: a session closed after the SQLAlchemy plugin's own dispose (seen with the test client) must
            # not leave its connection open for the life of the process.
            await close_within("the ORM engine", engine.dispose())

    sqlalchemy = SQLAlchemyAsyncConfig(
        engine_instance=engine, session_config=AsyncSessionConfig(expire_on_commit=False)
    )

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
            *QUEUE_UI_SIGN_IN_HANDLERS,
            *console_handlers(),
        ],
        dependencies={**QUEUE_UI_DEPENDENCIES, **SERVICE_DEPENDENCIES},
        signature_namespace=QUEUE_UI_NAMESPACE,
        plugins=[SQLAlchemyPlugin(config=sqlalchemy)],
        on_app_init=[jwt_auth.on_app_init],
        on_startup=[freeze_startup_objects],
        on_shutdown=[gc.unfreeze],
        middleware=[compression_middleware(), ConditionalGetMiddleware],
        lifespan=[
            services,
            live_events_lifespan(
                LiveConfig(heartbeat_s=settings.ws_heartbeat_s, backlog=settings.ws_send_backlog),
                PrometheusLiveStats(),
                lambda app: provide_services(app.state),
            ),
            pool_metrics,
        ],
        before_send=[response_headers],
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_json_body_bytes,
        after_exception=[log_server_error],
        logging_config=None,
        exception_handlers={
            DomainError: domain_error_response,
            NotAuthorizedException: unauthorized_response,
            **dict.fromkeys(DATABASE_ERRORS, database_error_response),
        },
        openapi_config=OpenAPIConfig(
            title="roi",
            version="0.1.0",
            operation_id_creator=operation_id,
            openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, opt=public_cache(300)),
            render_plugins=offline_render_plugins(),
        ),
    )
    # outside routing: sees 404s and 401s too; /ws frames skip Litestar's per-message wrappers
    app.asgi_handler = AdmissionMiddleware(
        RequestObserverMiddleware(
            head_as_get(method_override(redirect_to_the_ui_root(with_direct_send(app.asgi_handler))))
        ),
        settings.api_max_in_flight,
        settings.api_max_queue_ms,
        settings.api_retry_after_s,
    )
    return app
