"""The agents that execute step kinds, read as one JSON document rendered by PostgreSQL."""

from __future__ import annotations

import asyncpg

AGENT_LIST = """
SELECT json_build_object('items', coalesce(json_agg(json_build_object(
    'slug', a.slug, 'name', a.name, 'description', a.description, 'step_kinds', a.step_kinds,
    'available', a.available
) ORDER BY a.slug), '[]'::json)) FROM agents a"""


class AgentReader:
    def __init__(self, read_pool: asyncpg.Pool) -> None:
        self.read_pool = read_pool

    async def list_json(self) -> bytes:
        agents: bytes = await self.read_pool.fetchval(AGENT_LIST)
        return agents
