"""Service endpoints: liveness (touches nothing) and readiness (PostgreSQL and Redis answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from domain.services import ApiServices, provide_services

DependencyState = Literal["up", "down"]
READY_TIMEOUT_S = 1.0


class Health(msgspec.Struct):
    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    dependencies: dict[str, DependencyState]


@get("/health", tags=["service"], summary="Liveness: answers without touching any dependency")
async def health() -> Health:
    return Health()


async def _answers(probe: Awaitable[object]) -> DependencyState:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any failure of a probe means the dependency is down
        return "down"
    return "up"


async def _postgresql(services: ApiServices) -> None:
    """PostgreSQL answers, and this process has read the revoked tokens from it (it refuses every token until then)."""
    await services.asyncpg_pool.fetchval("SELECT 1")
    await services.revocations.read_if_unread()


@get(
    "/ready",
    tags=["service"],
    summary="Readiness: PostgreSQL and Redis both answer",
    responses={503: ResponseSpec(Readiness, description="A dependency is down")},
)
async def ready(state: State) -> Response[Readiness]:
    services = provide_services(state)
    postgresql, redis = await asyncio.gather(_answers(_postgresql(services)), _answers(services.redis.ping()))
    dependencies: dict[str, DependencyState] = {"postgresql": postgresql, "redis": redis}
    is_ready = all(value == "up" for value in dependencies.values())
    return Response(
        Readiness(status="ok" if is_ready else "unavailable", dependencies=dependencies),
        status_code=HTTP_200_OK if is_ready else HTTP_503_SERVICE_UNAVAILABLE,
    )
