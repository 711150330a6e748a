"""The workflows contract: request bodies are validated here, responses are typed here."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec

from db.models import StepStatusName, WorkflowStatusName
from domain.analysis import Metrics, SimulationSummary
from domain.text import NO_NUL
from infra.jobs import Priority

StepKind = Literal["ingest", "validate", "analyze", "simulate", "report"]

MAX_CASH_FLOWS = 100_000
MAX_SIMULATED_VALUES = 200_000_000

CashFlow = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15, description="a finite amount of money")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Description = Annotated[str, msgspec.Meta(max_length=5_000, pattern=NO_NUL)]


class Parameters(msgspec.Struct, forbid_unknown_fields=True):
    discount_rate: Annotated[float, msgspec.Meta(gt=-1, le=10)]
    simulations: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    volatility: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.1
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class WorkflowCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    parameters: Parameters
    description: Description | None = None
    cash_flows: Annotated[list[CashFlow], msgspec.Meta(min_length=1, max_length=MAX_CASH_FLOWS)] | None = None
    upload_id: uuid.UUID | None = None
    priority: Priority = "normal"


class WorkflowPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET


class StepOut(msgspec.Struct):
    id: uuid.UUID
    position: int
    kind: StepKind
    agent: str
    status: StepStatusName
    progress: float
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    error: str | None


class WorkflowOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str | None
    status: WorkflowStatusName
    priority: Priority
    progress: float
    parameters: Parameters
    upload_id: uuid.UUID | None
    job_id: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    queued_at: datetime.datetime | None
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    error: str | None
    steps: list[StepOut]


class WorkflowPage(msgspec.Struct):
    items: list[WorkflowOut]
    total: int
    limit: int
    offset: int
    next_cursor: str | None
    """Pass as `cursor` for the page after this one; null on the last page."""


class WorkflowStatus(msgspec.Struct):
    id: uuid.UUID
    status: WorkflowStatusName
    progress: float
    current_step: StepKind | None
    updated_at: datetime.datetime


class RunAccepted(msgspec.Struct):
    """The answer to run and cancel: the workflow's new status and the run it concerns."""

    id: uuid.UUID
    status: WorkflowStatusName
    job_id: str | None


class WorkflowCashFlows(msgspec.Struct):
    """What a chart of the workflow needs: its cash flows, period 0 first (`null` only if its ledger is gone)."""

    workflow_id: uuid.UUID
    upload_id: uuid.UUID | None
    cash_flows: list[float] | None


class WorkflowResultOut(msgspec.Struct):
    workflow_id: uuid.UUID
    finished_at: datetime.datetime
    metrics: Metrics
    simulation: SimulationSummary | None
