"""What is deployed: every version of every process with the instances running on it, the
newest content of every deployed file (the designer's workspace) and the file of one version.

Read-only queries; `Engine` exposes them and adds the commands that change definitions."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from . import errors
from .models import Deployment, DeploymentFile, ProcessDefinition, ProcessInstance


@dataclass(frozen=True)
class DefinitionInfo:
    """One version of one process, as the designer and operators see it."""

    id: int
    process_id: str
    version: int
    name: str
    file_name: str
    deployment_id: int
    deployed_at: datetime
    deployed_by: str
    latest: bool  # the version new instances start on
    instances: dict[str, int]  # status -> how many instances of this version have it

    @property
    def running(self) -> int:
        """Instances not finished: they keep this version until they end or are migrated."""
        return sum(n for status, n in self.instances.items() if status not in ("completed", "cancelled"))


def definitions(session: Any, process_id: str | None = None) -> list[DefinitionInfo]:
    """Every version of every process (or of one): process id ascending, newest version first."""
    q = (
        select(
            ProcessDefinition.id,
            ProcessDefinition.process_id,
            ProcessDefinition.version,
            ProcessDefinition.name,
            ProcessDefinition.file_name,
            ProcessDefinition.deployment_id,
            Deployment.deployed_at,
            Deployment.deployed_by,
        )
        .join(Deployment, Deployment.id == ProcessDefinition.deployment_id)
        .order_by(ProcessDefinition.process_id, ProcessDefinition.version.desc())
    )
    counts_q = select(ProcessInstance.definition_id, ProcessInstance.status, func.count()).group_by(
        ProcessInstance.definition_id, ProcessInstance.status
    )
    if process_id is not None:
        q = q.where(ProcessDefinition.process_id == process_id)
        counts_q = counts_q.where(ProcessInstance.process_id == process_id)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for definition_id, status, n in session.execute(counts_q):
        counts[definition_id][status] = n
    out: list[DefinitionInfo] = []
    seen: set[str] = set()
    for row in session.execute(q):
        out.append(
            DefinitionInfo(
                id=row.id,
                process_id=row.process_id,
                version=row.version,
                name=row.name,
                file_name=row.file_name,
                deployment_id=row.deployment_id,
                deployed_at=_aware(row.deployed_at),
                deployed_by=row.deployed_by,
                latest=row.process_id not in seen,
                instances=dict(counts.get(row.id, {})),
            )
        )
        seen.add(row.process_id)
    return out


def current_files(session: Any) -> dict[str, bytes]:
    """The newest deployed content of every BPMN/DMN file name, by name."""
    newest = (
        select(DeploymentFile.name, func.max(DeploymentFile.deployment_id).label("deployment_id"))
        .group_by(DeploymentFile.name)
        .subquery()
    )
    rows = session.execute(
        select(DeploymentFile.name, DeploymentFile.content)
        .join(
            newest,
            (DeploymentFile.name == newest.c.name) & (DeploymentFile.deployment_id == newest.c.deployment_id),
        )
        .order_by(DeploymentFile.name)
    )
    return {name: bytes(content) for name, content in rows}


def definition_source(session: Any, definition_id: int) -> tuple[str, bytes]:
    """The name and bytes of the file one process version was deployed from."""
    definition = session.get(ProcessDefinition, definition_id)
    if definition is None:
        raise errors.NotFound(f"process definition {definition_id} does not exist")
    content = session.scalar(
        select(DeploymentFile.content).where(
            DeploymentFile.deployment_id == definition.deployment_id,
            DeploymentFile.name == definition.file_name,
        )
    )
    if content is None:
        raise errors.NotFound(
            f"the file {definition.file_name!r} of {definition.process_id} version {definition.version} "
            "is not stored"
        )
    return definition.file_name, bytes(content)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
