"""HTTP for workflows: parse, call the service, return."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from db.models import WorkflowStatusName
from domain.accounts.security import BEARER_REQUIREMENT, Caller
from domain.http import json_bytes, strict_body
from domain.workflows.runs import RunQueue
from domain.workflows.schemas import (
    RunAccepted,
    WorkflowCashFlows,
    WorkflowCreate,
    WorkflowOut,
    WorkflowPage,
    WorkflowPatch,
    WorkflowResultOut,
    WorkflowStatus,
)
from domain.workflows.service import WorkflowReader, WorkflowService
from infra.openapi import documented, errors, with_body_examples

CREATE_EXAMPLES = {
    "typed_in": Example(
        summary="Typed-in cash flows, with a simulation",
        value={
            "name": "New warehouse",
            "description": "Payback of the Lyon site",
            "cash_flows": [-1000, 300, 400, 500],
            "parameters": {"discount_rate": 0.08, "simulations": 1000, "volatility": 0.1, "seed": 42},
            "priority": "normal",
        },
    ),
    "from_an_upload": Example(
        summary="The cash flows of a ready upload (a ledger)",
        value={
            "name": "From the ledger",
            "upload_id": "5f0c6d1e-3b1a-4c55-9a43-2f7c1f0d9b21",
            "parameters": {"discount_rate": 0.08},
        },
    ),
}
"""Request bodies the API accepts (the first is what Swagger's "Try it out" sends): a body generated from the schema
alone would send both `cash_flows` and `upload_id`, which is a 400."""


class WorkflowController(Controller):
    """Handlers take the caller from `request.user` and at most one dependency on the hot reads: Litestar resolves
    two or more dependencies of a handler in an anyio task group, ~75 µs per request. The app provides
    `workflow_reader` (one per process) and `workflows` (one per request, on its session)."""

    security = [BEARER_REQUIREMENT]
    path = "/api/workflows"
    tags = ["workflows"]

    @post(
        status_code=HTTP_201_CREATED,
        before_request=strict_body(WorkflowCreate),
        responses=documented(WorkflowOut, "The new workflow, in draft", HTTP_201_CREATED) | errors(400, 401, 413),
        operation_class=with_body_examples(CREATE_EXAMPLES),
    )
    async def create_workflow(
        self, data: WorkflowCreate, request: Caller, workflows: WorkflowService
    ) -> Response[bytes]:
        return json_bytes(await workflows.create_workflow(request.user.id, data), HTTP_201_CREATED)

    @get(responses=documented(WorkflowPage, "The caller's workflows, newest first") | errors(400, 401))
    async def list_workflows(
        self,
        request: Caller,
        workflow_reader: WorkflowReader,
        status: WorkflowStatusName | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        offset: Annotated[int, Parameter(ge=0, le=1_000_000_000)] = 0,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> Response[bytes]:
        return json_bytes(await workflow_reader.page_json(request.user.id, status, limit, offset, cursor))

    @get("/{workflow_id:str}", responses=documented(WorkflowOut, "The workflow with its steps") | errors(400, 401, 404))
    async def get_workflow(
        self, workflow_id: uuid.UUID, request: Caller, workflow_reader: WorkflowReader
    ) -> Response[bytes]:
        return json_bytes(await workflow_reader.detail_json(workflow_id, request.user.id))

    @get(
        "/{workflow_id:str}/status",
        responses=documented(WorkflowStatus, "Status and progress") | errors(400, 401, 404),
    )
    async def get_workflow_status(
        self, workflow_id: uuid.UUID, request: Caller, workflow_reader: WorkflowReader
    ) -> Response[bytes]:
        return json_bytes(await workflow_reader.status_json(workflow_id, request.user.id))

    @patch(
        "/{workflow_id:str}",
        before_request=strict_body(WorkflowPatch),
        responses=documented(WorkflowOut, "The updated workflow") | errors(400, 401, 404, 413),
    )
    async def update_workflow(
        self, workflow_id: uuid.UUID, data: WorkflowPatch, request: Caller, workflows: WorkflowService
    ) -> Response[bytes]:
        return json_bytes(await workflows.update_workflow(workflow_id, request.user.id, data))

    @post(
        "/{workflow_id:str}/run",
        status_code=HTTP_202_ACCEPTED,
        summary="Queue a run of the workflow",
        responses=errors(400, 401, 404, 409),
    )
    async def run_workflow(self, workflow_id: uuid.UUID, request: Caller, runs: RunQueue) -> RunAccepted:
        return await runs.run_workflow(workflow_id, request.user.id)

    @post(
        "/{workflow_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        summary="Cancel a queued or running run",
        responses=errors(400, 401, 404, 409),
    )
    async def cancel_workflow(self, workflow_id: uuid.UUID, request: Caller, workflows: WorkflowService) -> RunAccepted:
        return await workflows.cancel_workflow(workflow_id, request.user.id)

    @get(
        "/{workflow_id:str}/result",
        responses=documented(WorkflowResultOut, "The last successful run's result") | errors(400, 401, 404, 409),
    )
    async def get_workflow_result(
        self, workflow_id: uuid.UUID, request: Caller, workflow_reader: WorkflowReader
    ) -> Response[bytes]:
        return json_bytes(await workflow_reader.result_json(workflow_id, request.user.id))

    @get(
        "/{workflow_id:str}/cash-flows",
        summary="The workflow's cash flows, for charts",
        responses=documented(WorkflowCashFlows, "Its cash flows, typed in or summed from its ledger")
        | errors(400, 401, 404),
    )
    async def get_workflow_cash_flows(
        self, workflow_id: uuid.UUID, request: Caller, workflow_reader: WorkflowReader
    ) -> Response[bytes]:
        return json_bytes(await workflow_reader.cash_flows_json(workflow_id, request.user.id))

    @delete("/{workflow_id:str}", status_code=HTTP_204_NO_CONTENT, responses=errors(400, 401, 404))
    async def delete_workflow(self, workflow_id: uuid.UUID, request: Caller, workflows: WorkflowService) -> None:
        await workflows.delete_workflow(workflow_id, request.user.id)
