"""Every Redis key that caches something of a workflow, in one place: readers fill them, `changed` drops them."""

from __future__ import annotations

import uuid

from db.models import WorkflowStatusName
from domain.cache import Cache, Entry

STATUS_TTL_S = 60
LIST_TTL_S = 60


class WorkflowCacheKeys:
    """Every cache key of a workflow, in one place."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def status(self, workflow_id: uuid.UUID) -> Entry:
        return Entry("workflow_status", self.cache.key("workflow", workflow_id, "status"), STATUS_TTL_S)

    def page(
        self, owner_id: uuid.UUID, status: WorkflowStatusName | None, limit: int, offset: int, cursor: str | None
    ) -> Entry:
        field = f"{status or '*'}:{limit}:{offset}:{cursor or ''}"
        return Entry("workflow_list", self.pages(owner_id), LIST_TTL_S, field=field, local=True)

    def pages(self, owner_id: uuid.UUID) -> str:
        return self.cache.key("workflows", "user", owner_id, "list")

    def of(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> tuple[str, ...]:
        """The keys a change to the workflow or its steps makes stale."""
        return self.status(workflow_id).key, self.pages(owner_id)

    async def changed(self, workflow_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """Call after committing any change to a workflow or its steps."""
        await self.cache.invalidate(*self.of(workflow_id, owner_id))
