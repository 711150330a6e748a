"""HTTP for agents."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import Provide

from domain.agents.schemas import AgentList
from domain.agents.service import AgentReader
from domain.http import json_bytes, public_cache
from infra.openapi import NOT_MODIFIED, documented, errors


def provide_agent_reader(state: State) -> AgentReader:
    """One reader per process, made on first use (it holds only the pools), not one per request."""
    reader: AgentReader | None = state.get("agent_reader")
    if reader is None:
        reader = state.agent_reader = AgentReader(state.read_pool, state.cache)
    return reader


class AgentController(Controller):
    path = "/api/agents"
    tags = ["agents"]
    dependencies = {"agents": Provide(provide_agent_reader, sync_to_thread=False)}

    @get(
        responses=documented(AgentList, "The agents and the step kinds they execute") | errors(401) | NOT_MODIFIED,
        opt=public_cache(60),
    )
    async def list_agents(self, agents: AgentReader) -> Response[bytes]:
        return json_bytes(await agents.list_json())
