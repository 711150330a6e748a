"""SAQ's web UI (queues, depth, jobs, abort) for admins, served by the API on ADMIN_UI_PATH."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.di import Provide
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from litestar_saq.base import Job
from litestar_saq.config import TaskQueues
from litestar_saq.controllers import build_controller
from saq.queue.base import Queue
from saq.types import QueueInfo
from saq.web.common import STATIC_PATH

from domain.accounts.security import ADMIN_UI_PATH, admin_only


def provide_task_queues(state: State) -> TaskQueues:
    return TaskQueues(queues={state.queue.name: state.queue})


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
