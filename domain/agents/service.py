"""The agents that execute step kinds, read as one JSON document rendered by PostgreSQL and cached in Redis."""

from __future__ import annotations

import asyncpg

from domain.cache import Cache, Entry

AGENTS_TTL_S = 300
AGENT_LIST = """
SELECT json_build_object('items', coalesce(json_agg(json_build_object(
    'slug', a.slug, 'name', a.name, 'description', a.description, 'step_kinds', a.step_kinds,
    'available', a.available
) ORDER BY a.slug), '[]'::json)) FROM agents a"""


class AgentReader:
    def __init__(self, asyncpg_pool: asyncpg.Pool, cache: Cache) -> None:
        self.asyncpg_pool = asyncpg_pool
        self.cache = cache

    @property
    def entry(self) -> Entry:
        """Agents change only through migrations: the key expires rather than being invalidated by a writer."""
        return Entry("agents", self.cache.key("agents", "available"), AGENTS_TTL_S)

    async def list_json(self) -> bytes:
        return await self.cache.read_through(self.entry, self._load)

    async def _load(self) -> bytes:
        agents: bytes = await self.asyncpg_pool.fetchval(AGENT_LIST)
        return agents
