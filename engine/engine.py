"""Engine(...): every command is one unit of work — load, run, save, commit.

The engine never reads Flask request state: who acts is passed in as an `Actor`, and the
clock is injected so tests can fast-forward days.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import hashlib
import json
import logging
import os
import sys
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union,
    union_all,
    update,
)

from . import definitions as _definitions
from . import errors
from .db import db, is_postgres
from .definitions import DefinitionInfo
from .forms import FormRegistry
from .instance import (
    Clock,
    Instance,
    MessageInfo,
    TimerInfo,
    correlation_key,
    engine_clock,
    start_form,
    utcnow,
)
from .models import (
    AuditEvent,
    Deployment,
    DeploymentFile,
    HumanTask,
    Incident,
    MessageWait,
    ProcessDefinition,
    ProcessInstance,
    Timer,
)
from .operations import OperationContext, get_operation, registered_operations
from .scripts import SandboxedScriptEngine
from .serializer import SERIALIZER_VERSION, dump_spec, dump_state, load_spec, load_state, spec_registry
from .specs import check_files as _check_files
from .specs import parse_files

log = logging.getLogger(__name__)

NO_DUE = datetime(9999, 12, 31, tzinfo=UTC)
OPEN_STATES = ("open", "claimed")
MIGRATABLE = ("running", "waiting")
CLAIM_LEASE_SECONDS = 300


@dataclass(frozen=True)
class Actor:
    """Who acts: a username and the roles they hold."""

    username: str
    roles: frozenset[str] = frozenset()

    @classmethod
    def of(cls, username: str, *roles: str) -> Actor:
        return cls(username, frozenset(roles))


SYSTEM = Actor("system", frozenset())


@dataclass(frozen=True)
class DeployResult:
    deployment_id: int
    content_hash: str
    created: bool
    new_versions: dict[str, int]
    unchanged: list[str]


@dataclass(frozen=True)
class TaskView:
    id: int
    instance_id: int
    process_id: str
    spec_id: str
    title: str
    role: str | None
    assignee: str | None
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    form_ref: str | None
    document_type: str | None
    document_key: str | None
    business_key: str | None
    excluded_users: tuple[str, ...]
    completed_by: str | None = None
    completed_at: datetime | None = None
    name: str = ""  # the BPMN task name (translatable); `title` may be text computed by the process

    def overdue(self, now: datetime) -> bool:
        return self.due_at is not None and _aware(self.due_at) < now


@dataclass(frozen=True)
class MigrationPreview:
    """What moving an instance to the latest version of its process changes (element ids with
    names), or why it cannot move."""

    instance_id: int
    process_id: str
    from_version: int
    to_version: int
    possible: bool
    reasons: list[str]
    changed: list[str]
    added: list[str]
    removed: list[str]
    restarted: list[str]  # waiting elements whose definition changed: they start waiting afresh


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskView]
    next_cursor: str | None


@dataclass
class _InstanceRef:
    """The columns of a process instance a command needs (no ORM object on the hot path)."""

    id: int
    revision: int
    status: str
    definition_id: int
    business_key: str | None


@dataclass
class _Step:
    """What one command changed, to be written in its transaction."""

    row: _InstanceRef
    instance: Instance
    tasks_before: set[str]
    timers_before: dict[str, TimerInfo]
    messages_before: dict[str, MessageInfo]
    completed_task: str | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    incident: tuple[str | None, str | None, str, str] | None = None
    actor: str = "system"


_fixed_now: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("fixed_now", default=None)
_command_step: contextvars.ContextVar[_Step | None] = contextvars.ContextVar("step", default=None)
_REF_COLUMNS = (
    ProcessInstance.id,
    ProcessInstance.revision,
    ProcessInstance.status,
    ProcessInstance.definition_id,
    ProcessInstance.business_key,
)
_TASK_COLUMNS = tuple(HumanTask.__table__.c)

# Hot-path statements are built once and run on the session's connection: building and
# ORM-executing them per call cost more than the SQL and SpiffWorkflow work together.
_T = cast(Table, HumanTask.__table__)
_I = cast(Table, ProcessInstance.__table__)
_TIMER = cast(Table, Timer.__table__)
_WAIT = cast(Table, MessageWait.__table__)
_SELECT_TASK = select(*_T.c).where(_T.c.id == bindparam("task_pk"))
_SELECT_REF = select(*_REF_COLUMNS).where(_I.c.id == bindparam("iid"))
_SELECT_REF_STATE = select(*_REF_COLUMNS, _I.c.state, _I.c.serializer_version).where(
    _I.c.id == bindparam("iid")
)
_INSERT_TASK = _T.insert()
_INSERT_INSTANCE = _I.insert().returning(_I.c.id)
_LATEST_DEFINITION = (
    select(ProcessDefinition.id, ProcessDefinition.version)
    .where(ProcessDefinition.process_id == bindparam("pid"))
    .order_by(ProcessDefinition.version.desc())
    .limit(1)
)
_INSERT_AUDIT = cast(Table, AuditEvent.__table__).insert()
_INSERT_TIMER = _TIMER.insert()
_INSERT_WAIT = _WAIT.insert()
_SAVE_INSTANCE = (
    _I.update()
    .where(_I.c.id == bindparam("iid"), _I.c.revision == bindparam("expected"))
    .values(
        state=bindparam("new_state"),
        status=bindparam("new_status"),
        updated_at=bindparam("now"),
        revision=bindparam("new_revision"),
        serializer_version=bindparam("new_sv"),
        completed_at=bindparam("done_at"),
    )
)
_CANCEL_TASKS = (
    _T.update()
    .where(_T.c.task_id.in_(bindparam("ids", expanding=True)), _T.c.status.in_(OPEN_STATES))
    .values(status="cancelled", completed_at=bindparam("now"), revision=_T.c.revision + 1)
)
_DELETE_TIMERS = _TIMER.delete().where(
    _TIMER.c.instance_id == bindparam("iid"), _TIMER.c.task_id.in_(bindparam("ids", expanding=True))
)
_DELETE_WAITS = _WAIT.delete().where(
    _WAIT.c.instance_id == bindparam("iid"), _WAIT.c.task_id.in_(bindparam("ids", expanding=True))
)
_TASK_UPDATES: dict[tuple[str, ...], Any] = {}


def _task_update(keys: tuple[str, ...]) -> Any:
    """`UPDATE human_task SET ... WHERE id = ? AND revision = ? AND status is open`, built once per shape."""
    statement = _TASK_UPDATES.get(keys)
    if statement is None:
        statement = _TASK_UPDATES[keys] = (
            _T.update()
            .where(
                _T.c.id == bindparam("task_pk"),
                _T.c.revision == bindparam("expected"),
                _T.c.status.in_(OPEN_STATES),
            )
            .values(revision=bindparam("new_revision"), **{k: bindparam(f"v_{k}") for k in keys})
        )
    return statement


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _excluded_text(users: Iterable[str]) -> str:
    return "".join(f"|{u}|" for u in users)


class Engine:
    def __init__(
        self,
        forms_dir: Path,
        clock: Clock | None = None,
        session: Callable[[], Any] | None = None,
        cache_size: int = 2000,
    ) -> None:
        self.forms = FormRegistry(forms_dir)
        self.forms_dir = Path(forms_dir)
        self.clock: Clock = clock or utcnow
        self._session_factory = session
        self._specs: dict[str, tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]] = {}
        self._definition_hash: dict[int, str] = {}
        self._cache: OrderedDict[int, tuple[int, Instance]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._inbox_statements: dict[tuple[Any, ...], Any] = {}
        self._count_statements: dict[int, Any] = {}
        # called with the rows of new human tasks, inside the transaction that creates them
        # (e.g. to queue "a task is waiting for you" mail)
        self.task_listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.script_engine = SandboxedScriptEngine(clock=self.now, service_handler=self._call_service)

    # -- infrastructure -------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The Flask-SQLAlchemy scoped session (or a factory given in tests/tools)."""
        return self._session_factory() if self._session_factory else db.session

    def now(self) -> datetime:
        override = _fixed_now.get()
        return override if override is not None else self.clock()

    @contextmanager
    def at(self, moment: datetime) -> Iterator[None]:
        """Run this thread's commands as if it were `moment` (back-dating demo data, imports)."""
        token = _fixed_now.set(moment)
        try:
            yield
        finally:
            _fixed_now.reset(token)

    def _audit(
        self, actor: str, event: str, instance_id: int | None, task_id: str | None = None, **detail: Any
    ) -> dict[str, Any]:
        return {
            "at": self.now(),
            "actor": actor,
            "event": event,
            "instance_id": instance_id,
            "task_id": task_id,
            "detail": _jsonable(detail),
        }

    def _exec(self, statement: Any, params: Any = None) -> Any:
        """Run a prebuilt Core statement in the session's transaction."""
        return self.session.connection().execute(statement, params)

    def _write_audit(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._exec(_INSERT_AUDIT, rows)

    # -- deployments ----------------------------------------------------------------------
    def deploy(self, files: dict[str, bytes], actor: Actor = SYSTEM) -> DeployResult:
        """Parse, validate and lint the files; store a new version of every changed process."""
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        content_hash = digest.hexdigest()
        session = self.session
        # the same files again are a no-op while they are what is live; deployed again after
        # other changes (a change taken back) they are a deployment of their own
        existing = session.scalar(
            select(Deployment.id)
            .where(Deployment.content_hash == content_hash)
            .order_by(Deployment.id.desc())
            .limit(1)
        )
        if existing is not None and self._live(files):
            return DeployResult(existing, content_hash, False, {}, [])
        bundle = parse_files(files, self.forms_dir)
        self._check_operations(bundle)
        now = self.now()
        deployment = Deployment(content_hash=content_hash, deployed_by=actor.username, deployed_at=now)
        session.add(deployment)
        session.flush()
        for name in sorted(files):
            session.add(
                DeploymentFile(
                    deployment_id=deployment.id,
                    name=name,
                    sha256=hashlib.sha256(files[name]).hexdigest(),
                    content=files[name],
                )
            )
        new_versions: dict[str, int] = {}
        unchanged: list[str] = []
        for process_id in sorted(bundle.processes):
            spec = bundle.processes[process_id]
            spec_json = dump_spec(spec, bundle.subprocess_specs.get(process_id, {}))
            spec_hash = hashlib.sha256(spec_json.encode()).hexdigest()
            latest = self._latest_definition(process_id)
            if latest is not None and latest.spec_hash == spec_hash:
                unchanged.append(process_id)
                continue
            version = (latest.version + 1) if latest is not None else 1
            session.add(
                ProcessDefinition(
                    process_id=process_id,
                    version=version,
                    name=spec.description or process_id,
                    deployment_id=deployment.id,
                    file_name=bundle.process_files.get(process_id, ""),
                    spec_hash=spec_hash,
                    spec_json=spec_json,
                    created_at=now,
                )
            )
            new_versions[process_id] = version
        self._write_audit(
            [
                self._audit(
                    actor.username,
                    "deployed",
                    None,
                    deployment=deployment.id,
                    new_versions=new_versions,
                    files=sorted(files),
                )
            ]
        )
        session.commit()
        return DeployResult(deployment.id, content_hash, True, new_versions, unchanged)

    # -- definitions: what the designer reads and changes ---------------------------------------
    def definitions(self, process_id: str | None = None) -> list[DefinitionInfo]:
        """Every version of every process (or of one), with how many instances each has."""
        return _definitions.definitions(self.session, process_id)

    def current_files(self) -> dict[str, bytes]:
        """The newest deployed content of every BPMN/DMN file: the designer's workspace."""
        return _definitions.current_files(self.session)

    def definition_source(self, definition_id: int) -> tuple[str, bytes]:
        """The file name and bytes one process version was deployed from."""
        return _definitions.definition_source(self.session, definition_id)

    def check_files(self, changed: dict[str, bytes]) -> list[errors.ProcessFileError]:
        """What `backoffice check` and `deploy` would refuse in the deployed files with `changed`
        laid over them; [] when `deploy_changes(changed)` would succeed."""
        files = {**self.current_files(), **changed}
        bundle, problems = _check_files(files, self.forms_dir)
        if bundle is not None:
            try:
                self._check_operations(bundle)
            except errors.ProcessFileErrors as exc:
                problems = list(exc.errors)
        return problems

    def deploy_changes(self, changed: dict[str, bytes], actor: Actor = SYSTEM) -> DeployResult:
        """Deploy the deployed files with `changed` laid over them (a designer's save): changed
        processes get a new version, the others keep theirs, running instances keep their own."""
        return self.deploy({**self.current_files(), **changed}, actor)

    def _live(self, files: dict[str, bytes]) -> bool:
        """Is each of these files' content the newest deployed content of its name?"""
        current = self.current_files()
        return all(current.get(name) == content for name, content in files.items())

    def _check_operations(self, bundle: Any) -> None:
        known = registered_operations()
        problems = []
        for process_id, spec in bundle.processes.items():
            specs = [spec, *bundle.subprocess_specs.get(process_id, {}).values()]
            for proc in specs:
                for task_spec in proc.task_specs.values():
                    name = getattr(task_spec, "operation_name", None)
                    if name and name not in known:
                        file = bundle.process_files.get(proc.name, proc.file or "")
                        problems.append(
                            errors.ProcessFileError(
                                Path(file).name,
                                bundle.line_of(file, task_spec.bpmn_id)
                                if hasattr(bundle, "line_of")
                                else None,
                                task_spec.bpmn_id,
                                f"service task calls operation {name!r}, which is not registered with "
                                "the engine",
                            )
                        )
        if problems:
            raise errors.ProcessFileErrors(sorted(set(problems), key=str))

    def _latest_definition(self, process_id: str) -> ProcessDefinition | None:
        return self.session.scalar(
            select(ProcessDefinition)
            .where(ProcessDefinition.process_id == process_id)
            .order_by(ProcessDefinition.version.desc())
            .limit(1)
        )

    def _spec_for(self, definition_id: int) -> tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]:
        spec_hash = self._definition_hash.get(definition_id)
        if spec_hash is not None and spec_hash in self._specs:
            return self._specs[spec_hash]
        row = self.session.execute(
            select(ProcessDefinition.spec_hash, ProcessDefinition.spec_json).where(
                ProcessDefinition.id == definition_id
            )
        ).one()
        with self._lock:
            if row.spec_hash not in self._specs:
                self._specs[row.spec_hash] = load_spec(row.spec_json)
            self._definition_hash[definition_id] = row.spec_hash
        return self._specs[row.spec_hash]

    # -- loading and saving instances ---------------------------------------------------------
    def _load(self, instance_id: int, actor: str = "system") -> _Step:
        with self._lock:
            cached = self._cache.pop(instance_id, None)
        found = self._exec(
            _SELECT_REF if cached is not None else _SELECT_REF_STATE, {"iid": instance_id}
        ).first()
        if found is None:
            raise errors.NotFound(f"process instance {instance_id} does not exist")
        if cached is not None and cached[0] != found.revision:
            cached = None
            found = self._exec(_SELECT_REF_STATE, {"iid": instance_id}).one()
        row = _InstanceRef(found.id, found.revision, found.status, found.definition_id, found.business_key)
        if cached is not None:
            inst = cached[1]
        else:
            spec, subs = self._spec_for(row.definition_id)
            wf = load_state(found.state, spec, subs, found.serializer_version)
            inst = Instance(wf, self.script_engine)
        return self._step(row, inst, actor)

    def _step(self, row: _InstanceRef, inst: Instance, actor: str = "system") -> _Step:
        return _Step(
            row=row,
            instance=inst,
            actor=actor,
            tasks_before={str(t.id) for t in inst.ready_user_tasks()},
            timers_before={t.task_id: t for t in inst.waiting_timers()},
            messages_before={m.task_id: m for m in inst.waiting_messages()},
        )

    def _run(self, step: _Step, action: Callable[[], None], *, refusal_is_incident: bool = False) -> None:
        """Run `action` on the workflow; a failure becomes an incident, not a lost step.

        A refusal (an EngineError such as InvalidData from a service operation) goes back to
        the caller — the user or the message sender sees which field is wrong and nothing
        changes — unless nobody is there to tell (`refusal_is_incident`: timers)."""
        token = _command_step.set(step)
        try:
            with engine_clock(self.now):
                action()
        except errors.EngineError:
            if not refusal_is_incident:
                raise
            self._record_incident(step)
        except Exception:
            self._record_incident(step)
        finally:
            _command_step.reset(token)

    @staticmethod
    def _record_incident(step: _Step) -> None:
        """Called while handling the exception: the failed task, the message, the traceback."""
        exc = sys.exc_info()[1]
        failed = next((t for t in step.instance._all_tasks() if t.state == TaskState.ERROR), None)
        step.incident = (
            str(failed.id) if failed else None,
            (failed.task_spec.bpmn_id or failed.task_spec.name) if failed else None,
            _error_message(exc) if exc is not None else "unknown failure",
            traceback.format_exc(),
        )

    def _save(self, step: _Step, actor: str, *, status: str | None = None) -> None:
        """Write the instance and everything derived from it; conditional on the revision."""
        session = self.session
        row, inst, now = step.row, step.instance, self.now()
        with engine_clock(self.now):
            ready = inst.ready_user_tasks()
        if status is None:
            if step.incident is not None:
                status = "error"
            elif inst.completed:
                status = "completed"
            elif ready:
                status = "running"
            else:
                status = "waiting"
        result = self._exec(
            _SAVE_INSTANCE,
            {
                "iid": row.id,
                "expected": row.revision,
                "new_state": dump_state(inst.workflow),
                "new_status": status,
                "now": now,
                "new_revision": row.revision + 1,
                "new_sv": SERIALIZER_VERSION,
                "done_at": now if status == "completed" else None,
            },
        )
        if result.rowcount != 1:
            raise errors.Conflict(f"process instance {row.id} was changed meanwhile; nothing was changed")
        new_revision = row.revision + 1
        self._sync_tasks(step, ready, actor, now)
        self._sync_timers(step, now)
        self._sync_messages(step, now)
        if step.incident is not None:
            task_id, spec_id, message, tb = step.incident
            session.add(
                Incident(
                    instance_id=row.id,
                    task_id=task_id,
                    spec_id=spec_id,
                    message=message,
                    traceback=tb,
                    created_at=now,
                )
            )
            step.audit.append(self._audit(actor, "incident", row.id, task_id, spec=spec_id, message=message))
        if status == "completed" and row.status != "completed":
            step.audit.append(self._audit(actor, "completed", row.id))
        self._write_audit(step.audit)
        session.commit()
        row.revision, row.status = new_revision, status
        if status not in ("completed", "cancelled"):
            with self._lock:
                self._cache[row.id] = (new_revision, inst)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)

    def _sync_tasks(self, step: _Step, ready: list[Any], actor: str, now: datetime) -> None:
        row, inst = step.row, step.instance
        after = {str(t.id): t for t in ready}
        gone = step.tasks_before - set(after) - {step.completed_task or ""}
        if gone:
            self._exec(_CANCEL_TASKS, {"ids": sorted(gone), "now": now})
        new_rows = []
        with engine_clock(self.now):
            for task_id in sorted(set(after) - step.tasks_before):
                info = inst.describe(after[task_id], now)
                new_rows.append(
                    {
                        "instance_id": row.id,
                        "task_id": info.task_id,
                        "spec_id": info.spec_id,
                        "process_id": info.process_id,
                        "title": info.title,
                        "name": info.name,
                        "role": info.role,
                        "assignee": info.assignee,
                        "excluded": _excluded_text(info.excluded_users),
                        "form_ref": info.form_ref,
                        "status": "claimed" if info.assignee else "open",
                        "priority": info.priority,
                        "priority_rank": 1000 - info.priority,
                        "due_at": info.due_at,
                        "due_key": info.due_at or NO_DUE,
                        "created_at": now,
                        "document_type": info.document_type,
                        "document_key": info.document_key,
                        "business_key": row.business_key,
                        "revision": 1,
                    }
                )
                step.audit.append(
                    self._audit(
                        actor,
                        "task_created",
                        row.id,
                        info.task_id,
                        spec=info.spec_id,
                        role=info.role,
                        assignee=info.assignee,
                    )
                )
        if new_rows:
            self._exec(_INSERT_TASK, new_rows)
            for listener in self.task_listeners:
                listener(new_rows)

    def _sync_timers(self, step: _Step, now: datetime) -> None:
        row = step.row
        after = {t.task_id: t for t in step.instance.waiting_timers()} if not step.instance.completed else {}
        before = step.timers_before
        stale = [tid for tid, t in before.items() if after.get(tid) != t]
        fresh = [t for tid, t in after.items() if before.get(tid) != t]
        if stale:
            self._exec(_DELETE_TIMERS, {"iid": row.id, "ids": stale})
        if fresh:
            self._exec(
                _INSERT_TIMER,
                [
                    {
                        "instance_id": row.id,
                        "task_id": t.task_id,
                        "spec_id": t.spec_id,
                        "kind": t.kind,
                        "due_at": t.due_at,
                        "status": "pending",
                    }
                    for t in fresh
                ],
            )

    def _sync_messages(self, step: _Step, now: datetime) -> None:
        row = step.row
        after = (
            {m.task_id: m for m in step.instance.waiting_messages()} if not step.instance.completed else {}
        )
        before = step.messages_before
        stale = [tid for tid, m in before.items() if after.get(tid) != m]
        fresh = [m for tid, m in after.items() if before.get(tid) != m]
        if stale:
            self._exec(_DELETE_WAITS, {"iid": row.id, "ids": stale})
        if fresh:
            self._exec(
                _INSERT_WAIT,
                [
                    {
                        "instance_id": row.id,
                        "task_id": m.task_id,
                        "message_name": m.name,
                        "correlation_key": m.correlation_key,
                        "created_at": now,
                    }
                    for m in fresh
                ],
            )

    def _evict(self, instance_id: int) -> None:
        with self._lock:
            self._cache.pop(instance_id, None)

    def _abort(self, instance_id: int | None = None) -> None:
        self.session.rollback()
        if instance_id is not None:
            self._evict(instance_id)

    # -- service tasks -------------------------------------------------------------------------
    def _call_service(self, task: Any, operation_name: str, params: dict[str, Any]) -> Any:
        step = _command_step.get()
        row = step.row if step is not None else None
        func = get_operation(operation_name)
        ctx = OperationContext(
            instance_id=row.id if row is not None else 0,
            process_id=task.workflow.spec.name,
            task_spec_id=task.task_spec.bpmn_id or task.task_spec.name,
            now=self.now(),
            data=task.data,
            business_key=row.business_key if row is not None else None,
            actor=step.actor if step is not None else SYSTEM.username,
            task_id=str(task.id),
        )
        # a savepoint: an operation that fails leaves none of its writes behind
        with self.session.begin_nested():
            return func(ctx, **{name: p["value"] for name, p in params.items()})

    def start_form_ref(self, process_id: str) -> str | None:
        """The form an instance of this process starts with (a start-event form), if any."""
        definition = self._exec(_LATEST_DEFINITION, {"pid": process_id}).first()
        if definition is None:
            raise errors.NotFound(f"process {process_id!r} is not deployed")
        form = start_form(self._spec_for(definition.id)[0])
        return f"{process_id}/{form}" if form else None

    # -- instances --------------------------------------------------------------------------------
    def start_process(
        self, process_id: str, data: dict[str, Any], actor: Actor, business_key: str | None = None
    ) -> int:
        """Start the latest version of a process and run it to its first wait state."""
        definition = self._exec(_LATEST_DEFINITION, {"pid": process_id}).first()
        if definition is None:
            raise errors.NotFound(f"process {process_id!r} is not deployed")
        spec, subs = self._spec_for(definition.id)
        now = self.now()
        form = start_form(spec)
        start_data = dict(self.forms.validate(f"{process_id}/{form}", data) if form else data)
        start_data.update(started_by=actor.username, business_key=business_key, completed_by={})
        with engine_clock(self.now):
            inst = Instance.start(spec, subs, self.script_engine, start_data)
        row = None
        try:
            new_id = self._exec(
                _INSERT_INSTANCE,
                dict(
                    definition_id=definition.id,
                    process_id=process_id,
                    process_version=definition.version,
                    status="running",
                    business_key=business_key,
                    revision=0,
                    started_by=actor.username,
                    started_at=now,
                    updated_at=now,
                    serializer_version=SERIALIZER_VERSION,
                    state="{}",
                ),
            ).scalar_one()
            row = _InstanceRef(new_id, 0, "running", definition.id, business_key)
            step = self._step(row, inst, actor.username)
            step.tasks_before, step.timers_before, step.messages_before = set(), {}, {}
            step.audit.append(
                self._audit(
                    actor.username,
                    "started",
                    row.id,
                    process=process_id,
                    version=definition.version,
                    business_key=business_key,
                )
            )
            self._run(step, inst.run)
            self._save(step, actor.username)
        except BaseException:
            self._abort(row.id if row is not None else None)
            raise
        return row.id

    def instance(self, instance_id: int) -> ProcessInstance:
        row = self.session.get(ProcessInstance, instance_id)
        if row is None:
            raise errors.NotFound(f"process instance {instance_id} does not exist")
        return row

    def _read_workflow(self, instance_id: int) -> Any:
        """The instance's workflow to read from: neither the caller's transaction nor the
        instance cache is disturbed (never run or change what this returns)."""
        found = self._exec(_SELECT_REF_STATE, {"iid": instance_id}).first()
        if found is None:
            raise errors.NotFound(f"process instance {instance_id} does not exist")
        with self._lock:
            cached = self._cache.get(instance_id)
        if cached is not None and cached[0] == found.revision:
            return cached[1].workflow
        spec, subs = self._spec_for(found.definition_id)
        return load_state(found.state, spec, subs, found.serializer_version)

    def instance_data(self, instance_id: int) -> dict[str, Any]:
        """The current data of an instance (its last completed step). Read-only."""
        wf = self._read_workflow(instance_id)
        if wf.completed:
            return copy.deepcopy(dict(wf.data))
        last = wf.last_task or wf.task_tree
        data = dict(last.data)
        for task in Instance(wf, self.script_engine).ready_user_tasks():
            data.update(task.data)
        return copy.deepcopy(data)

    # -- human tasks ---------------------------------------------------------------------------------
    def task(self, task_id: int) -> TaskView:
        row = self._exec(_SELECT_TASK, {"task_pk": task_id}).first()
        if row is None:
            raise errors.NotFound(f"task {task_id} does not exist")
        return _view(row)

    def may_act(self, actor: Actor, task: TaskView | HumanTask) -> bool:
        excluded = task.excluded_users if isinstance(task, TaskView) else _excluded_list(task.excluded)
        if actor.username in excluded:
            return False
        if task.assignee is not None:
            return task.assignee == actor.username
        return task.role is not None and task.role in actor.roles

    def _check_may_act(self, actor: Actor, row: Any, verb: str) -> None:
        if actor.username in _excluded_list(row.excluded):
            raise errors.Forbidden(
                f"{actor.username} may not {verb} task {row.id} ({row.title}): four-eyes rule, "
                f"{actor.username} is excluded from it"
            )
        if row.assignee is not None and row.assignee != actor.username:
            raise errors.Forbidden(f"task {row.id} ({row.title}) is assigned to {row.assignee}")
        if row.assignee is None and row.role not in actor.roles:
            raise errors.Forbidden(f"task {row.id} ({row.title}) is for role {row.role!r}")

    def _open_task(self, task_id: int) -> Any:
        row = self._exec(_SELECT_TASK, {"task_pk": task_id}).first()
        if row is None:
            raise errors.NotFound(f"task {task_id} does not exist")
        if row.status == "completed":
            raise errors.Conflict(
                f"task {task_id} ({row.title}) was already completed by {row.completed_by} "
                f"at {_aware(row.completed_at).isoformat() if row.completed_at else '?'}"
            )
        if row.status not in OPEN_STATES:
            raise errors.Conflict(f"task {task_id} ({row.title}) is {row.status}")
        return row

    def claim_task(self, task_id: int, actor: Actor) -> TaskView:
        try:
            row = self._open_task(task_id)
            if row.assignee == actor.username:
                return _view(row)
            if row.assignee is not None:
                raise errors.Conflict(f"task {task_id} ({row.title}) is already claimed by {row.assignee}")
            self._check_may_act(actor, row, "claim")
            self._conditional_task_update(
                row, assignee=actor.username, status="claimed", claimed_at=self.now()
            )
            self._write_audit(
                [self._audit(actor.username, "task_claimed", row.instance_id, row.task_id, task=row.id)]
            )
            self.session.commit()
        except BaseException:
            self._abort()
            raise
        return self.task(task_id)

    def unclaim_task(self, task_id: int, actor: Actor) -> TaskView:
        try:
            row = self._open_task(task_id)
            if row.assignee is None:
                return _view(row)
            if row.assignee != actor.username and "admin" not in actor.roles:
                raise errors.Forbidden(
                    f"task {task_id} is claimed by {row.assignee}, not by {actor.username}"
                )
            previous = row.assignee
            self._conditional_task_update(row, assignee=None, status="open", claimed_at=None)
            self._write_audit(
                [
                    self._audit(
                        actor.username,
                        "task_unclaimed",
                        row.instance_id,
                        row.task_id,
                        task=row.id,
                        previous_assignee=previous,
                    )
                ]
            )
            self.session.commit()
        except BaseException:
            self._abort()
            raise
        return self.task(task_id)

    def _conditional_task_update(self, row: Any, **values: Any) -> None:
        params = {"task_pk": row.id, "expected": row.revision, "new_revision": row.revision + 1}
        params.update({f"v_{k}": v for k, v in values.items()})
        result = self._exec(_task_update(tuple(sorted(values))), params)
        if result.rowcount != 1:
            raise errors.Conflict(f"task {row.id} ({row.title}) was changed meanwhile; nothing was changed")

    def complete_task(self, task_id: int, actor: Actor, data: dict[str, Any]) -> int:
        """Complete an open task with form data; returns the instance id."""
        instance_id = None
        try:
            row = self._open_task(task_id)
            instance_id = row.instance_id
            self._check_may_act(actor, row, "complete")
            clean = self.forms.validate(row.form_ref, data)
            step = self._load(row.instance_id, actor.username)
            if step.row.status in ("suspended", "cancelled", "error", "completed"):
                raise errors.InvalidState(
                    f"process instance {row.instance_id} is {step.row.status}; "
                    f"task {task_id} cannot be completed"
                )
            task = step.instance.task(row.task_id)
            if task is None or task.state != TaskState.READY:
                raise errors.Conflict(f"task {task_id} ({row.title}) is no longer ready in its process")
            completed_by = dict(task.data.get("completed_by") or {})
            completed_by[row.spec_id] = actor.username
            step.completed_task = row.task_id
            self._conditional_task_update(
                row, status="completed", completed_by=actor.username, completed_at=self.now()
            )
            step.audit.append(
                self._audit(
                    actor.username,
                    "task_completed",
                    row.instance_id,
                    row.task_id,
                    task=row.id,
                    spec=row.spec_id,
                    data=clean,
                )
            )
            self._run(
                step, lambda: step.instance.complete_user_task(task, {**clean, "completed_by": completed_by})
            )
            self._save(step, actor.username)
        except BaseException:
            self._abort(instance_id)
            raise
        return row.instance_id

    def tasks_for(
        self,
        actor: Actor,
        *,
        role: str | None = None,
        process_id: str | None = None,
        overdue: bool | None = None,
        text: str | None = None,
        sort: str = "due",
        cursor: str | None = None,
        limit: int = 50,
        include_claimed_by_others: bool = False,
    ) -> TaskPage:
        """The actor's inbox: assigned to them, or open to one of their roles and not excluding them."""
        if sort not in _SORT_KEYS:
            raise errors.InvalidData(
                [errors.FieldError("sort", f"unknown sort {sort!r}; use due, priority or age")]
            )
        roles = sorted(actor.roles if role is None else ({role} & actor.roles))
        params: dict[str, Any] = {
            "excluded": f"%|{_like_escape(actor.username)}|%",
            "me": actor.username,
            "limit": limit + 1,
        }
        params.update({f"role_{i}": r for i, r in enumerate(roles)})
        if process_id:
            params["process_id"] = process_id
        if overdue is not None:  # True: only overdue tasks; False: only tasks not overdue
            params["now"] = self.now()
        if text:
            params["text"] = f"%{_like_escape(text)}%"
        if cursor:
            params["last_key"], params["last_id"] = _decode_cursor(cursor, sort)
        if role is not None:
            params["only_role"] = role
        shape = (
            sort,
            len(roles),
            role is not None,
            bool(process_id),
            overdue,
            bool(text),
            bool(cursor),
            include_claimed_by_others,
        )
        statement = self._inbox_statements.get(shape)
        if statement is None:
            statement = self._inbox_statements[shape] = _inbox_statement(*shape)
        views = [_view(r) for r in self._exec(statement, params)]
        next_cursor = None
        if len(views) > limit:
            views = views[:limit]
            last = views[-1]
            next_cursor = _encode_cursor(sort, last)
        return TaskPage(views, next_cursor)

    def task_counts(self, actor: Actor, cap: int = 99) -> dict[str, int]:
        """Open tasks per role of the actor (not excluding them), plus `mine` for tasks assigned
        to them. Each count stops at `cap + 1` ("99+"): an inbox badge needs no more, and an
        exact count of a large queue would read every row of it on every poll."""
        roles = sorted(actor.roles)
        statement = self._count_statements.get(len(roles))
        if statement is None:
            statement = self._count_statements[len(roles)] = _count_statement(len(roles))
        params: dict[str, Any] = {
            "excluded": f"%|{_like_escape(actor.username)}|%",
            "me": actor.username,
            "cap": cap + 1,
        }
        params.update({f"role_{i}": r for i, r in enumerate(roles)})
        counts = {int(key): int(n) for key, n in self._exec(statement, params)}
        mine = counts.pop(-1, 0)
        return {**{roles[i]: n for i, n in counts.items() if n}, "mine": mine}

    # -- timers ---------------------------------------------------------------------------------------
    def _claim_due_timers(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        session = self.session
        due = or_(Timer.status == "pending", and_(Timer.status == "claimed", Timer.claimed_until < now))
        # strictly before: SpiffWorkflow fires a timer only once its due time has passed
        candidates = select(Timer.id).where(due, Timer.due_at < now).order_by(Timer.due_at).limit(limit)
        if is_postgres():
            candidates = candidates.with_for_update(skip_locked=True)
        lease = datetime.fromtimestamp(now.timestamp() + CLAIM_LEASE_SECONDS, UTC)
        result = session.execute(
            update(Timer)
            .where(Timer.id.in_(candidates.scalar_subquery()), due)
            .values(status="claimed", claimed_by=self.worker_id, claimed_until=lease)
            .returning(Timer.id, Timer.instance_id)
            .execution_options(synchronize_session=False)
        )
        claimed = [(r.id, r.instance_id) for r in result]
        session.commit()
        return claimed

    def fire_due_timers(self, now: datetime | None = None, limit: int = 500) -> int:
        """Fire every timer due at `now`; returns how many instances were advanced.

        Rows are claimed atomically first, so two schedulers never fire one timer; each
        instance commits on its own and a failing one becomes an incident without stopping
        the others.
        """
        now = now or self.now()
        fired = 0
        while True:
            claimed = self._claim_due_timers(now, limit)
            if not claimed:
                return fired
            by_instance: dict[int, list[int]] = {}
            for timer_id, instance_id in claimed:
                by_instance.setdefault(instance_id, []).append(timer_id)
            for instance_id, timer_ids in by_instance.items():
                if self._fire_instance_timers(instance_id, timer_ids, now):
                    fired += 1
            if len(claimed) < limit:
                return fired

    def _fire_instance_timers(self, instance_id: int, timer_ids: list[int], now: datetime) -> bool:
        token = _fixed_now.set(now)  # this thread's commands see the firing time; others are unaffected
        try:
            step = self._load(instance_id, "scheduler")
            if step.row.status not in ("running", "waiting"):
                self.session.execute(
                    update(Timer)
                    .where(Timer.id.in_(timer_ids))
                    .values(status="held", claimed_by=None, claimed_until=None)
                )
                self.session.commit()
                self._evict(instance_id)
                return False
            due = [t for t in step.timers_before.values() if t.due_at < now]
            step.audit.extend(
                self._audit(
                    "scheduler",
                    "timer_fired",
                    instance_id,
                    t.task_id,
                    spec=t.spec_id,
                    kind=t.kind,
                    due_at=t.due_at.isoformat(),
                )
                for t in due
            )

            self._run(step, lambda: step.instance.fire_timers(now), refusal_is_incident=True)
            self.session.execute(delete(Timer).where(Timer.id.in_(timer_ids)))
            # rows deleted above are re-created by the sync for timers still waiting
            step.timers_before = {k: v for k, v in step.timers_before.items() if v.due_at >= now}
            self._save(step, "scheduler")
            return True
        except errors.Conflict:
            self._abort(instance_id)
            self.session.execute(
                update(Timer)
                .where(Timer.id.in_(timer_ids), Timer.status == "claimed")
                .values(status="pending", claimed_by=None, claimed_until=None)
            )
            self.session.commit()
            return False
        except Exception as exc:  # the instance could not even be loaded: an incident, then go on
            log.exception("timer firing failed for instance %s", instance_id)
            self._abort(instance_id)
            self._record_failure(instance_id, exc, timer_ids)
            return False
        finally:
            _fixed_now.reset(token)

    def _record_failure(self, instance_id: int, exc: BaseException, timer_ids: list[int]) -> None:
        session, now = self.session, self.now()
        session.add(
            Incident(
                instance_id=instance_id,
                message=_error_message(exc),
                traceback=traceback.format_exc(),
                created_at=now,
            )
        )
        session.execute(
            update(ProcessInstance)
            .where(ProcessInstance.id == instance_id)
            .values(status="error", revision=ProcessInstance.revision + 1, updated_at=now)
        )
        session.execute(
            update(Timer)
            .where(Timer.id.in_(timer_ids))
            .values(status="held", claimed_by=None, claimed_until=None)
        )
        self._write_audit([self._audit("scheduler", "incident", instance_id, message=_error_message(exc))])
        session.commit()

    def next_timer_due(self) -> datetime | None:
        value = self.session.scalar(select(func.min(Timer.due_at)).where(Timer.status == "pending"))
        return _aware(value) if value is not None else None

    # -- messages ----------------------------------------------------------------------------------
    def correlate_message(
        self, name: str, correlation: dict[str, Any], payload: dict[str, Any], actor: Actor = SYSTEM
    ) -> list[int]:
        """Deliver a message to the instance(s) waiting for it; returns their ids."""
        key = correlation_key(correlation)
        waits = self.session.execute(
            select(MessageWait.instance_id, MessageWait.task_id)
            .where(MessageWait.message_name == name, MessageWait.correlation_key == key)
            .order_by(MessageWait.id)
        ).all()
        if not waits:
            shown = ", ".join(f"{k}={v}" for k, v in correlation.items()) or "no correlation"
            raise errors.NotWaiting(f"no instance is waiting for message {name!r} with {shown}")
        delivered = []
        for instance_id, task_id in waits:
            try:
                step = self._load(instance_id, actor.username)
                if step.row.status not in ("running", "waiting"):
                    raise errors.InvalidState(f"process instance {instance_id} is {step.row.status}")
                step.audit.append(
                    self._audit(
                        actor.username,
                        "message_received",
                        instance_id,
                        task_id,
                        message=name,
                        correlation=correlation,
                        payload=payload,
                    )
                )
                self._run(step, partial(step.instance.deliver_message, task_id, dict(payload)))
                self._save(step, actor.username)
                delivered.append(instance_id)
            except BaseException:
                self._abort(instance_id)
                raise
        return delivered

    # -- operations on instances ----------------------------------------------------------------------
    def retry_incident(self, incident_id: int, actor: Actor) -> int:
        session = self.session
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise errors.NotFound(f"incident {incident_id} does not exist")
        if incident.resolved_at is not None:
            raise errors.Conflict(f"incident {incident_id} was already resolved by {incident.resolved_by}")
        instance_id = incident.instance_id
        try:
            step = self._load(instance_id, actor.username)
            if step.row.status != "error":
                raise errors.InvalidState(
                    f"process instance {instance_id} is {step.row.status}, not in error"
                )
            for task in step.instance._all_tasks():
                if task.state == TaskState.ERROR:
                    task._set_state(TaskState.READY)
            incident.resolved_at, incident.resolved_by = self.now(), actor.username
            step.audit.append(self._audit(actor.username, "retried", instance_id, incident=incident_id))
            self._run(step, step.instance.run)
            session.execute(
                update(Timer)
                .where(Timer.instance_id == instance_id, Timer.status == "held")
                .values(status="pending")
            )
            self._save(step, actor.username)
        except BaseException:
            self._abort(instance_id)
            raise
        return instance_id

    def suspend(self, instance_id: int, actor: Actor) -> None:
        self._set_status(instance_id, actor, "suspended", ("running", "waiting", "error"))

    def resume(self, instance_id: int, actor: Actor) -> None:
        self._set_status(instance_id, actor, "resumed", ("suspended",))

    def cancel(self, instance_id: int, actor: Actor) -> None:
        self._set_status(instance_id, actor, "cancelled", ("running", "waiting", "error", "suspended"))

    def _set_status(self, instance_id: int, actor: Actor, event: str, allowed: tuple[str, ...]) -> None:
        session = self.session
        try:
            step = self._load(instance_id)
            row = step.row
            if row.status not in allowed:
                raise errors.InvalidState(
                    f"process instance {instance_id} is {row.status}; cannot be {event}"
                )
            step.audit.append(self._audit(actor.username, event, instance_id, previous=row.status))
            now = self.now()
            if event == "suspended":
                session.execute(
                    update(HumanTask)
                    .where(HumanTask.instance_id == instance_id, HumanTask.status.in_(OPEN_STATES))
                    .values(status="suspended", revision=HumanTask.revision + 1)
                )
                session.execute(update(Timer).where(Timer.instance_id == instance_id).values(status="held"))
                self._save(step, actor.username, status="suspended")
            elif event == "resumed":
                session.execute(
                    update(HumanTask)
                    .where(HumanTask.instance_id == instance_id, HumanTask.status == "suspended")
                    .values(status="open", assignee=None, revision=HumanTask.revision + 1)
                )
                session.execute(
                    update(Timer).where(Timer.instance_id == instance_id).values(status="pending")
                )
                has_incident = session.scalar(
                    select(func.count()).where(
                        Incident.instance_id == instance_id, Incident.resolved_at.is_(None)
                    )
                )
                self._save(step, actor.username, status="error" if has_incident else None)
            else:
                step.instance.cancel()
                session.execute(
                    update(HumanTask)
                    .where(
                        HumanTask.instance_id == instance_id,
                        HumanTask.status.in_((*OPEN_STATES, "suspended")),
                    )
                    .values(status="cancelled", completed_at=now, revision=HumanTask.revision + 1)
                )
                step.tasks_before = set()
                self._save(step, actor.username, status="cancelled")
        except BaseException:
            self._abort(instance_id)
            raise

    def element_states(self, instance_id: int) -> dict[str, str]:
        """BPMN element id -> completed / active / waiting / failed / cancelled, for the diagram."""
        states = Instance(self._read_workflow(instance_id), self.script_engine).element_states()
        for incident in self.incidents(instance_id):
            if incident.spec_id:
                states[incident.spec_id] = "failed"
        return states

    def _migration_target(self, instance_id: int) -> tuple[ProcessInstance, ProcessDefinition, list[str]]:
        row = self.instance(instance_id)
        latest = self._latest_definition(row.process_id)
        if latest is None:  # a definition is never deleted; only a broken database gets here
            raise errors.NotFound(f"process {row.process_id!r} is not deployed")
        reasons = []
        if row.status not in MIGRATABLE:
            reasons.append(
                f"the instance is {row.status}; only running or waiting instances move (resume it first)"
            )
        if latest.version == row.process_version:
            reasons.append(f"the instance is already on the latest version ({latest.version})")
        return row, latest, reasons

    def migration_preview(self, instance_id: int) -> MigrationPreview:
        """What moving the instance to the latest version of its process would change."""
        row, latest, reasons = self._migration_target(instance_id)
        plan = None
        if not reasons:
            spec, subs = self._spec_for(latest.id)
            wf = self._read_workflow(instance_id)
            plan = Instance(wf, self.script_engine).migration_plan(spec_registry(), spec, subs)
            reasons = plan.reasons
        return MigrationPreview(
            instance_id=row.id,
            process_id=row.process_id,
            from_version=row.process_version,
            to_version=latest.version,
            possible=not reasons,
            reasons=list(reasons),
            changed=plan.changed if plan else [],
            added=plan.added if plan else [],
            removed=plan.removed if plan else [],
            restarted=plan.restarted if plan else [],
        )

    def migrate_instance(self, instance_id: int, actor: Actor) -> int:
        """Move a running instance to the latest version of its process; returns that version."""
        try:
            row, latest, reasons = self._migration_target(instance_id)
            if reasons:
                raise errors.InvalidState("; ".join(reasons))
            step = self._load(instance_id, actor.username)
            spec, subs = self._spec_for(latest.id)
            plan = step.instance.migration_plan(spec_registry(), spec, subs)
            if not plan.possible:
                raise errors.InvalidState("; ".join(plan.reasons))
            previous = row.process_version
            self.session.execute(
                update(ProcessInstance)
                .where(ProcessInstance.id == instance_id)
                .values(definition_id=latest.id, process_version=latest.version)
            )
            step.audit.append(
                self._audit(
                    actor.username,
                    "migrated",
                    instance_id,
                    from_version=previous,
                    to_version=latest.version,
                    changed=plan.changed,
                    added=plan.added,
                    removed=plan.removed,
                )
            )
            self._run(step, partial(step.instance.migrate, plan, spec, subs))
            self._refresh_task_rows(step)
            self._save(step, actor.username)
            step.row.definition_id = latest.id
        except BaseException:
            self._abort(instance_id)
            raise
        return latest.version

    def _refresh_task_rows(self, step: _Step) -> None:
        """Open task rows take the title, role and form of their element in the new version."""
        now = self.now()
        with engine_clock(self.now):
            for task in step.instance.ready_user_tasks():
                if str(task.id) not in step.tasks_before:
                    continue
                info = step.instance.describe(task, now)
                self.session.execute(
                    update(HumanTask)
                    .where(
                        HumanTask.task_id == info.task_id, HumanTask.status.in_((*OPEN_STATES, "suspended"))
                    )
                    .values(
                        spec_id=info.spec_id,
                        title=info.title,
                        name=info.name,
                        role=info.role,
                        form_ref=info.form_ref,
                        excluded=_excluded_text(info.excluded_users),
                        revision=HumanTask.revision + 1,
                    )
                )

    def incidents(self, instance_id: int | None = None, open_only: bool = True) -> list[Incident]:
        q = select(Incident).order_by(Incident.id)
        if instance_id is not None:
            q = q.where(Incident.instance_id == instance_id)
        if open_only:
            q = q.where(Incident.resolved_at.is_(None))
        return list(self.session.scalars(q))

    def audit_trail(self, instance_id: int) -> list[AuditEvent]:
        return list(
            self.session.scalars(
                select(AuditEvent).where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.id)
            )
        )


# -- helpers -------------------------------------------------------------------------------------------
_SORT_KEYS = {"due": HumanTask.due_key, "priority": HumanTask.priority_rank, "age": HumanTask.created_at}


def _count_statement(n_roles: int) -> Any:
    """Per role (keyed by its position): the open tasks not excluding the actor, read from the
    index at most `cap` deep; plus the actor's own tasks (key -1)."""

    def capped(key: Any, *conditions: Any) -> Any:
        inner = select(literal_column("1").label("one")).where(*conditions).limit(bindparam("cap")).subquery()
        return select(key.label("key"), select(func.count()).select_from(inner).scalar_subquery().label("n"))

    parts = [
        capped(
            literal_column(str(i)),
            HumanTask.role == bindparam(f"role_{i}"),
            HumanTask.status == "open",
            HumanTask.excluded.notlike(bindparam("excluded"), escape="\\"),
        )
        for i in range(n_roles)
    ]
    parts.append(
        capped(literal_column("-1"), HumanTask.assignee == bindparam("me"), HumanTask.status.in_(OPEN_STATES))
    )
    return union_all(*parts)


def _inbox_statement(
    sort: str,
    n_roles: int,
    one_role: bool,
    by_process: bool,
    overdue: bool | None,
    text: bool,
    cursor: bool,
    include_claimed_by_others: bool,
) -> Any:
    """The inbox query for one shape of request, built once: a UNION of one index range scan
    per role (and one for the actor's own tasks), each already sorted and limited."""
    sort_col = _SORT_KEYS[sort]

    def part(q: Any) -> Any:
        q = q.where(HumanTask.excluded.notlike(bindparam("excluded"), escape="\\"))
        if by_process:
            q = q.where(HumanTask.process_id == bindparam("process_id"))
        if overdue is not None:
            now = bindparam("now", type_=HumanTask.due_key.type)
            q = q.where(HumanTask.due_key < now if overdue else HumanTask.due_key >= now)
        if text:
            pattern: Any = bindparam("text")
            q = q.where(
                or_(
                    HumanTask.title.ilike(pattern, escape="\\"),
                    HumanTask.business_key.ilike(pattern, escape="\\"),
                    HumanTask.document_key.ilike(pattern, escape="\\"),
                )
            )
        if cursor:
            q = q.where(
                tuple_(sort_col, HumanTask.id)
                > tuple_(bindparam("last_key", type_=sort_col.type), bindparam("last_id"))
            )
        return q.order_by(sort_col, HumanTask.id).limit(bindparam("limit"))

    # one part per role and status: an equality on both lets the index deliver rows in sort order
    statuses = OPEN_STATES if include_claimed_by_others else ("open",)
    parts = [
        part(
            select(*_TASK_COLUMNS, sort_col.label("k")).where(
                HumanTask.role == bindparam(f"role_{i}"), HumanTask.status == status
            )
        )
        for i in range(n_roles)
        for status in statuses
    ]
    mine = select(*_TASK_COLUMNS, sort_col.label("k")).where(
        HumanTask.assignee == bindparam("me"), HumanTask.status.in_(OPEN_STATES)
    )
    if one_role:
        mine = mine.where(HumanTask.role == bindparam("only_role"))
    if not (one_role and include_claimed_by_others):  # else the role's own parts hold these already
        parts.append(part(mine))
    sub = union(*[p.subquery().select() for p in parts]).subquery()
    return select(sub).order_by(sub.c.k, sub.c.id).limit(bindparam("limit"))


def _excluded_list(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split("|") if p)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _view(row: Any) -> TaskView:
    return TaskView(
        id=row.id,
        instance_id=row.instance_id,
        process_id=row.process_id,
        spec_id=row.spec_id,
        title=row.title,
        role=row.role,
        assignee=row.assignee,
        status=row.status,
        priority=row.priority,
        due_at=_aware(row.due_at) if row.due_at else None,
        created_at=_aware(row.created_at),
        form_ref=row.form_ref,
        document_type=row.document_type,
        document_key=row.document_key,
        business_key=row.business_key,
        excluded_users=_excluded_list(row.excluded),
        completed_by=row.completed_by,
        name=row.name,
        completed_at=_aware(row.completed_at) if row.completed_at else None,
    )


def _encode_cursor(sort: str, view: TaskView) -> str:
    if sort == "due":
        key: Any = (view.due_at or NO_DUE).isoformat()
    elif sort == "priority":
        key = 1000 - view.priority
    else:
        key = view.created_at.isoformat()
    return base64.urlsafe_b64encode(json.dumps([key, view.id]).encode()).decode()


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        key, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if sort in ("due", "age"):
            key = datetime.fromisoformat(key)
        return key, int(last_id)
    except Exception:
        raise errors.InvalidData([errors.FieldError("cursor", "not a valid page cursor")]) from None


def _error_message(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in parts[0]:
        parts.append(f"caused by {type(cause).__name__}: {cause}")
    notes = getattr(exc, "__notes__", None)
    if notes:
        parts.extend(notes)
    return " — ".join(parts)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
