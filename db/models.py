"""Tables and indexes: the schema of record. Nothing here imports the domain."""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Literal, get_args

from advanced_alchemy.base import DefaultBase as Base
from advanced_alchemy.base import UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from infra.jobs import PRIORITIES, Priority

WorkflowStatusName = Literal["draft", "queued", "running", "succeeded", "failed", "cancelled"]
StepStatusName = Literal["pending", "running", "succeeded", "failed", "cancelled", "skipped"]
UploadStatusName = Literal["uploading", "processing", "ready", "failed", "expired"]
"""The values a status column may hold (its CHECK constraint), shared with the schemas and the code that writes them."""

WORKFLOW_STATUSES: tuple[WorkflowStatusName, ...] = get_args(WorkflowStatusName)
STEP_STATUSES: tuple[StepStatusName, ...] = get_args(StepStatusName)
UPLOAD_STATUSES: tuple[UploadStatusName, ...] = get_args(UploadStatusName)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(UUIDAuditBase):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Tokens carry the generation they were issued in; a password change raises it, refusing every older token."""


class TokenRevocation(Base):
    """A revoked token (`jti`, at logout) or a user's older tokens (`generation`, at a password change), kept until
    the tokens it refuses have expired anyway. Every API process reads the rows created since its last look."""

    __tablename__ = "token_revocations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    jti: Mapped[str | None] = mapped_column(String(64), default=None)
    generation: Mapped[int | None] = mapped_column(Integer, default=None)
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=text("clock_timestamp()")
    )


Index("idx_token_revocations_created", TokenRevocation.created_at)
Index("idx_token_revocations_expires", TokenRevocation.expires_at)


class Agent(UUIDAuditBase):
    __tablename__ = "agents"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    step_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    available: Mapped[bool] = mapped_column(Boolean, default=True)


class Workflow(UUIDAuditBase):
    """A workflow. Its columns `steps_json` and `doc` (its JSON document, for the hot reads) are kept by triggers
    (migration 0003) and deliberately not mapped: the ORM never reads or writes them."""

    __tablename__ = "roi_workflows"
    __table_args__ = (
        CheckConstraint(_one_of("status", WORKFLOW_STATUSES), name="status"),
        CheckConstraint(_one_of("priority", PRIORITIES), name="priority"),
        Index("idx_workflow_status", "status"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[WorkflowStatusName] = mapped_column(String(16), default="draft")
    priority: Mapped[Priority] = mapped_column(String(8), default="normal")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(32), default=None)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    cash_flows: Mapped[list[float] | None] = deferred(mapped_column(ARRAY(Float), default=None))
    upload_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    job_id: Mapped[str | None] = mapped_column(String(64), default=None)
    queued_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    heartbeat_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    steps: Mapped[list[WorkflowStep]] = relationship(
        back_populates="workflow",
        order_by="WorkflowStep.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )


class WorkflowStep(UUIDAuditBase):
    __tablename__ = "workflow_steps"
    __table_args__ = (
        CheckConstraint(_one_of("status", STEP_STATUSES), name="status"),
        Index("idx_steps_workflow", "workflow_id", "position", unique=True),
    )

    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roi_workflows.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(64))
    status: Mapped[StepStatusName] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    workflow: Mapped[Workflow] = relationship(back_populates="steps", lazy="raise")


class WorkflowResult(Base):
    """The result of a workflow's last successful run; a rerun that succeeds replaces it."""

    __tablename__ = "workflow_results"

    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roi_workflows.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    finished_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    simulation: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)


class Upload(UUIDAuditBase):
    """A tus upload: the offset of record (any API process may take the next chunk), who may write it now (a lease
    that lapses if its holder dies), and once parsed, the file's cash flows summed per period."""

    __tablename__ = "uploads"
    __table_args__ = (
        CheckConstraint(_one_of("status", UPLOAD_STATUSES), name="status"),
        CheckConstraint("upload_offset >= 0 AND upload_offset <= length", name="offset_within_length"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    filetype: Mapped[str | None] = mapped_column(String(255), default=None)
    tus_metadata: Mapped[str | None] = mapped_column(Text, default=None)
    length: Mapped[int] = mapped_column(BigInteger)
    upload_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[UploadStatusName] = mapped_column(String(16), default="uploading")
    rows: Mapped[int | None] = mapped_column(Integer, default=None)
    periods: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    cash_flows: Mapped[list[float] | None] = deferred(mapped_column(ARRAY(Float), default=None))
    expires_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


Index("idx_upload_owner_created_id", Upload.owner_id, Upload.created_at, Upload.id)
Index("idx_upload_uploading_expires", Upload.expires_at, postgresql_where=Upload.status == "uploading")
Index("idx_upload_processing_updated", Upload.updated_at, postgresql_where=Upload.status == "processing")

Index("idx_workflow_owner_created_id", Workflow.owner_id, Workflow.created_at, Workflow.id)
Index("idx_workflow_owner_status_created_id", Workflow.owner_id, Workflow.status, Workflow.created_at, Workflow.id)
Index(
    "idx_workflow_active_heartbeat",
    Workflow.status,
    Workflow.heartbeat_at,
    postgresql_where=Workflow.status.in_(("queued", "running")),
)
