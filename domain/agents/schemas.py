"""The agents contract."""

from __future__ import annotations

import msgspec


class AgentOut(msgspec.Struct):
    slug: str
    name: str
    description: str
    step_kinds: list[str]
    available: bool


class AgentList(msgspec.Struct):
    items: list[AgentOut]
