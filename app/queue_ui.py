"""SAQ's web UI (queues, depth, jobs, abort) for admins, served by the API on ADMIN_UI_PATH."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, ControllerRouterHandler, Receive, Scope, Send
from litestar_saq.base import Job
from litestar_saq.config import TaskQueues
from litestar_saq.controllers import build_controller
from saq.queue.base import Queue
from saq.types import QueueInfo
from saq.web.common import STATIC_PATH

from domain.accounts.security import ADMIN_UI_PATH, admin_only
from domain.services import provide_services
from infra.jobs import PRIORITIES, Priority
from infra.queue import PriorityRedisQueue


def redirect_to_the_ui_root(app: ASGIApp) -> ASGIApp:
    """`/saq` → `/saq/`: the UI's script routes on the browser's path and shows its own 404 page without the slash,
    while Litestar's routing treats both paths as one, so the redirect comes before routing."""
    root = f"{ADMIN_UI_PATH}/".encode()

    async def with_ui_redirect(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == ADMIN_UI_PATH and scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"")
            location = root + (b"?" + query if query else b"")
            headers = [(b"location", location), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 308, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await app(scope, receive, send)

    return with_ui_redirect


class LaneView:
    """One priority lane of the queue, as the UI lists queues: its own depth, its active jobs and its jobs; anything
    else (a job's detail, abort, retry) is the whole queue's."""

    def __init__(self, queue: PriorityRedisQueue, priority: Priority) -> None:
        self.queue = queue
        self.priority = priority
        self.name = priority

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.queue, attribute)

    async def info(self, jobs: bool = False, offset: int = 0, limit: int = 10) -> QueueInfo:
        """The whole queue's workers and totals, with this lane's depth, running jobs and a page of its waiting ones
        (read from the lane itself: a page of the whole queue could hold none of them)."""
        whole = await self.queue.info()
        depth, active, waiting = await self.queue.lane_view(self.priority, offset, limit)
        return {
            **whole,
            "name": self.name,
            "queued": depth,
            "active": len(active),
            "jobs": [job.to_dict() for job in (*active, *waiting)] if jobs else [],
        }


def provide_task_queues(state: State) -> TaskQueues:
    """The whole queue (its workers, totals) and each of its lanes, highest first."""
    queue = provide_services(state).queue
    lanes = {view.name: view for view in (LaneView(queue, priority) for priority in PRIORITIES)}
    return TaskQueues(queues={queue.name: queue, **lanes})  # type: ignore[dict-item]


def queue_ui_handlers() -> list[ControllerRouterHandler]:
    static = create_static_files_router(
        directories=[STATIC_PATH],
        path=f"{ADMIN_UI_PATH}/static",
        name="saq-static",
        include_in_schema=False,
        guards=[admin_only],
    )
    return [static, build_controller(ADMIN_UI_PATH, [admin_only])]


QUEUE_UI_DEPENDENCIES: dict[str, Any] = {"task_queues": Provide(provide_task_queues, sync_to_thread=False)}

# The UI's controller annotates with these names as strings; Litestar resolves them here.
QUEUE_UI_NAMESPACE: dict[str, Any] = {"TaskQueues": TaskQueues, "Queue": Queue, "QueueInfo": QueueInfo, "Job": Job}
