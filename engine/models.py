"""Tables of the runtime: deployments, definitions, instances, the task inbox, timers,
message subscriptions, incidents and the append-only audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from .db import Base, db

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class Role(Model):
    __tablename__ = "role"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")


class UserRole(Model):
    __tablename__ = "user_role"
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    role_name: Mapped[str] = mapped_column(ForeignKey("role.name", ondelete="CASCADE"), primary_key=True)


class User(Model):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    language: Mapped[str] = mapped_column(String(10), default="en")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    role_links: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(link.role_name for link in self.role_links)


class Deployment(Model):
    __tablename__ = "deployment"
    id: Mapped[int] = mapped_column(primary_key=True)
    # not unique: the files of an earlier deployment may be deployed again (a change taken back)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    deployed_by: Mapped[str] = mapped_column(String(80))
    deployed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    files: Mapped[list[DeploymentFile]] = relationship(back_populates="deployment", lazy="selectin")


class DeploymentFile(Model):
    __tablename__ = "deployment_file"
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    deployment: Mapped[Deployment] = relationship(back_populates="files")


class ProcessDefinition(Model):
    """One version of one process; its parsed spec is stored once here, never per instance."""

    __tablename__ = "process_definition"
    __table_args__ = (UniqueConstraint("process_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300), default="")
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    spec_hash: Mapped[str] = mapped_column(String(64), index=True)
    spec_json: Mapped[str] = deferred(mapped_column(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessInstance(Model):
    __tablename__ = "process_instance"
    __table_args__ = (Index("ix_instance_status_process", "status", "process_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    process_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    business_key: Mapped[str | None] = mapped_column(String(200), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    started_by: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    serializer_version: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = deferred(mapped_column(Text))


class HumanTask(Model):
    """One row per READY user task: the inbox reads this table, never a workflow."""

    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_task_role_inbox", "role", "status", "due_key", "id"),
        Index("ix_task_role_priority", "role", "status", "priority_rank", "id"),
        Index("ix_task_role_age", "role", "status", "created_at", "id"),
        Index("ix_task_assignee_inbox", "assignee", "status", "due_key", "id"),
        Index("ix_task_instance", "instance_id", "status"),
        Index("ix_task_open_due", "status", "due_key"),  # overdue notices, every scheduler tick
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(36), unique=True)
    spec_id: Mapped[str] = mapped_column(String(200))
    process_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    # the BPMN name of the task: a translatable catalogue string (the title may be computed text)
    name: Mapped[str] = mapped_column(String(300), default="", server_default="")
    role: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(80))
    # four-eyes: "|alice||bob|" so the inbox query can filter with NOT LIKE on the index scan
    excluded: Mapped[str] = mapped_column(String(1000), default="")
    form_ref: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=50)
    priority_rank: Mapped[int] = mapped_column(Integer, default=950)  # 1000 - priority: ascending sort
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_key: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # due_at, or 9999-12-31 when none
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by: Mapped[str | None] = mapped_column(String(80))
    document_type: Mapped[str | None] = mapped_column(String(64))
    document_key: Mapped[str | None] = mapped_column(String(200))
    business_key: Mapped[str | None] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer, default=1)


class Timer(Model):
    """One row per waiting timer event; the scheduler claims due rows from here."""

    __tablename__ = "timer"
    __table_args__ = (Index("ix_timer_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str] = mapped_column(String(36))
    spec_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MessageWait(Model):
    """An instance waiting for a message, with the correlation values it expects."""

    __tablename__ = "message_wait"
    __table_args__ = (Index("ix_message_wait_name", "message_name", "correlation_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str] = mapped_column(String(36))
    message_name: Mapped[str] = mapped_column(String(200))
    correlation_key: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Incident(Model):
    __tablename__ = "incident"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(String(36))
    spec_id: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(80))


class AuditEvent(Model):
    """Append-only: rows are inserted, never updated or deleted (triggers refuse it)."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class SchedulerHeartbeat(Model):
    """One row per scheduler process: when it last ticked (readiness and metrics read this)."""

    __tablename__ = "scheduler_heartbeat"
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_tick_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
