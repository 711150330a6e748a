"""The service with its Redis read cache bypassed, served only by `roi bench`.

Why: the figures without the cache (issue 2's goal, the cache's speed-up) must come from the same code under the
same load, and the deployed service has no switch for that. Writes still invalidate as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import Litestar

from app.asgi import create_app as create_deployed_app
from domain.cache import Cache, Entry
from domain.services import provide_services


class ReadsFromSource(Cache):
    """Every read goes to its source (PostgreSQL), as on a cold cache without the cost of filling it."""

    async def read_through(self, entry: Entry, load: Callable[[], Awaitable[bytes]]) -> bytes:
        return await load()


async def _bypass_read_cache(app: Litestar) -> None:
    """Runs after the lifespan opened the services, and gives every reader a cache that always reads the source."""
    services = provide_services(app.state)
    deployed = services.cache
    bypass = ReadsFromSource(deployed.redis, deployed.namespace, deployed.record)
    services.cache = services.workflows.cache = services.agents.cache = bypass


def create_app() -> Litestar:
    app = create_deployed_app()
    app.on_startup.append(_bypass_read_cache)
    return app
