"""HTTP for agents."""

from __future__ import annotations

from litestar import Controller, Response, get

from domain.agents.schemas import AgentList
from domain.agents.service import AgentReader
from domain.http import json_bytes, public_cache
from infra.openapi import NOT_MODIFIED, documented, errors


class AgentController(Controller):
    path = "/api/agents"
    tags = ["agents"]

    @get(
        responses=documented(AgentList, "The agents and the step kinds they execute") | errors(401) | NOT_MODIFIED,
        opt=public_cache(60),
    )
    async def list_agents(self, agents: AgentReader) -> Response[bytes]:
        return json_bytes(await agents.list_json())
