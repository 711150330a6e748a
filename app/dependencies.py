"""What handlers receive by name: the process's services (opened once by the `services` lifespan), and a
`WorkflowService` per request on the request's session (opened only for the handlers that take it: creating and
closing an ORM session costs a request ~0.2 ms). Each provider is a plain function, resolved inline."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from domain.accounts.revocation import RevocationFeed
from domain.accounts.security import TokenIssuer
from domain.accounts.throttle import LoginThrottle
from domain.agents.service import AgentReader
from domain.services import provide_services
from domain.uploads.service import UploadService
from domain.workflows.runs import RunQueue
from domain.workflows.service import WorkflowReader, WorkflowService


def provide_workflow_reader(state: State) -> WorkflowReader:
    return provide_services(state).workflows


def provide_workflow_service(db_session: AsyncSession, state: State) -> WorkflowService:
    services = provide_services(state)
    return WorkflowService(db_session, services.workflows, services.events, services.queue)


def provide_run_queue(state: State) -> RunQueue:
    return provide_services(state).runs


def provide_upload_service(state: State) -> UploadService:
    return provide_services(state).uploads


def provide_agent_reader(state: State) -> AgentReader:
    return provide_services(state).agents


def provide_login_throttle(state: State) -> LoginThrottle:
    return provide_services(state).login_throttle


def provide_token_issuer(state: State) -> TokenIssuer:
    return provide_services(state).tokens


def provide_revocations(state: State) -> RevocationFeed:
    return provide_services(state).revocations


SERVICE_DEPENDENCIES: dict[str, Any] = {
    "workflow_reader": Provide(provide_workflow_reader, sync_to_thread=False),
    "workflows": Provide(provide_workflow_service, sync_to_thread=False),
    "runs": Provide(provide_run_queue, sync_to_thread=False),
    "uploads": Provide(provide_upload_service, sync_to_thread=False),
    "agents": Provide(provide_agent_reader, sync_to_thread=False),
    "login_throttle": Provide(provide_login_throttle, sync_to_thread=False),
    "tokens": Provide(provide_token_issuer, sync_to_thread=False),
    "revocations": Provide(provide_revocations, sync_to_thread=False),
}
