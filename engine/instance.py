"""The one place that speaks SpiffWorkflow: wraps a BpmnWorkflow with what the engine needs.

Handles the defects listed in shared/spiffworkflow-notes.md that concern running:
`completed` is read from the attribute (point 1), a task runs only when READY (point 3),
the sandboxed script engine is attached on every load (point 5), timers are normalised to
absolute UTC (point 6) and long histories are pruned so cost and depth stay flat (points 1, 2).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit, _EndJoin
from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity, SubWorkflowTask
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, diff_workflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from .scripts import SandboxedScriptEngine, timer_expression

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# SpiffWorkflow reads the wall clock inside its timer classes. The engine's clock is injectable
# (tests fast-forward days), so timer code sees the clock of the command that runs it.
_current_clock: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("clock", default=None)


class _EngineClockDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _EngineClockDatetime:  # type: ignore[override]
        clock = _current_clock.get()
        value = clock() if clock is not None else datetime.now(UTC)
        if tz is not None:
            value = value.astimezone(tz)
        return cls.fromtimestamp(value.timestamp(), value.tzinfo)


_spiff_timer.datetime = _EngineClockDatetime  # type: ignore[misc]


@contextmanager
def engine_clock(clock: Clock) -> Iterator[None]:
    token = _current_clock.set(clock)
    try:
        yield
    finally:
        _current_clock.reset(token)


@dataclass(frozen=True)
class UserTaskInfo:
    task_id: str
    spec_id: str
    process_id: str
    title: str
    name: str
    role: str | None
    assignee: str | None
    excluded_users: list[str]
    form_ref: str | None
    priority: int
    due_at: datetime | None
    document_type: str | None
    document_key: str | None


@dataclass(frozen=True)
class TimerInfo:
    task_id: str
    spec_id: str
    kind: str
    due_at: datetime


@dataclass(frozen=True)
class MessageInfo:
    task_id: str
    name: str
    correlation_key: str


def correlation_key(values: dict[str, Any]) -> str:
    """The canonical text of correlation values, used to match waits and messages."""
    return json.dumps({k: str(v) for k, v in values.items()}, sort_keys=True) if values else ""


PRUNE_THRESHOLD = 40


class Instance:
    """A running workflow and the questions the engine asks it."""

    def __init__(self, workflow: BpmnWorkflow, script_engine: SandboxedScriptEngine) -> None:
        self.workflow = workflow
        workflow.script_engine = script_engine  # never the unrestricted default (notes point 5)
        self.script_engine = script_engine

    @classmethod
    def start(
        cls,
        spec: BpmnProcessSpec,
        subprocess_specs: dict[str, BpmnProcessSpec],
        script_engine: SandboxedScriptEngine,
        data: dict[str, Any],
    ) -> Instance:
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine)
        instance = cls(workflow, script_engine)
        workflow.task_tree.data.update(data)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(data)
        return instance

    # -- state -----------------------------------------------------------------------------
    @property
    def completed(self) -> bool:
        return bool(self.workflow.completed)

    @property
    def data(self) -> dict[str, Any]:
        return self.workflow.data

    def _all_tasks(self) -> Iterator[Task]:
        yield from self.workflow.tasks.values()
        for sub in self.workflow.subprocesses.values():
            yield from sub.tasks.values()

    def task(self, task_id: str) -> Task | None:
        try:
            return self.workflow.get_task_from_id(UUID(task_id))
        except Exception:
            return None

    def ready_user_tasks(self) -> list[Task]:
        return [t for t in self._all_tasks() if t.state == TaskState.READY and t.task_spec.manual]

    # -- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run engine steps until only user tasks, waits or the end are left."""
        wf = self.workflow
        for _ in range(10_000):
            wf.do_engine_steps()
            if not any(t.state == TaskState.READY and not t.task_spec.manual for t in self._all_tasks()):
                break
            self.prune()
        self.prune()

    def complete_user_task(self, task: Task, data: dict[str, Any]) -> None:
        if task.state != TaskState.READY:
            raise RuntimeError(f"task {task.id} is {TaskState.get_name(task.state)}, not READY")
        task.set_data(**data)
        task.run()
        self.run()

    def fire_timers(self, now: datetime) -> None:
        self.collapse_missed_cycles(now)
        self.workflow.refresh_timers()
        self.run()

    def deliver_message(self, task_id: str, payload: dict[str, Any]) -> None:
        task = self.task(task_id)
        if task is None or task.state != TaskState.WAITING:
            raise LookupError(f"task {task_id} is not waiting for a message")
        definition = task.task_spec.event_definition
        correlations = definition.calculate_correlations(
            self.script_engine, definition.correlation_properties, payload
        )
        event = BpmnEvent(definition, payload, correlations)
        task.task_spec.catch(task, event)
        task.task_spec._update(task)
        self.run()

    def cancel(self) -> None:
        self.workflow.cancel()

    # -- waits -----------------------------------------------------------------------------
    def waiting_timers(self) -> list[TimerInfo]:
        timers = []
        for task in list(self.workflow.event_manager.tasks.values()):
            definition = getattr(task.task_spec, "event_definition", None)
            if not isinstance(definition, TimerEventDefinition) or task.state != TaskState.WAITING:
                continue
            value = task._get_internal_data("event_value")
            if value is None:
                continue
            if isinstance(definition, CycleTimerEventDefinition):
                if not isinstance(value, dict) or value.get("cycles") == 0:
                    continue
                due = datetime.fromisoformat(value["next"])
                kind = "cycle"
            else:
                due = (
                    TimerEventDefinition.get_datetime(value)
                    if "T" in value or len(value) > 10
                    else (TimerEventDefinition.get_datetime(value + "T00:00:00+00:00"))
                )
                kind = "date" if definition.__class__.__name__.startswith("TimeDate") else "duration"
            timers.append(
                TimerInfo(
                    str(task.id), task.task_spec.bpmn_id or task.task_spec.name, kind, due.astimezone(UTC)
                )
            )
        return timers

    def collapse_missed_cycles(self, now: datetime) -> None:
        """Cycles missed while everything was down fire once, not once per missed slot."""
        for task in list(self.workflow.event_manager.tasks.values()):
            definition = getattr(task.task_spec, "event_definition", None)
            if not isinstance(definition, CycleTimerEventDefinition):
                continue
            value = task._get_internal_data("event_value")
            if not isinstance(value, dict) or not value.get("duration"):
                continue
            nxt = datetime.fromisoformat(value["next"])
            step = timedelta(seconds=value["duration"])
            while nxt + step <= now:
                nxt += step
            value["next"] = nxt.isoformat()

    def waiting_messages(self) -> list[MessageInfo]:
        waits = []
        for task in list(self.workflow.event_manager.tasks.values()):
            definition = getattr(task.task_spec, "event_definition", None)
            if not isinstance(definition, MessageEventDefinition) or task.state != TaskState.WAITING:
                continue
            values: dict[str, Any] = {}
            for prop in definition.correlation_properties:
                try:
                    values[prop.name] = self.script_engine.environment.evaluate(
                        prop.retrieval_expression, task.data
                    )
                except Exception:
                    values[prop.name] = None
            waits.append(MessageInfo(str(task.id), definition.name, correlation_key(values)))
        return waits

    # -- user task details -----------------------------------------------------------------
    def _property(self, task: Task, name: str) -> Any:
        props = (getattr(task.task_spec, "extensions", None) or {}).get("properties", {})
        expression = props.get(name)
        if expression in (None, ""):
            return None
        return self.script_engine.evaluate(task, timer_expression(expression))

    def describe(self, task: Task, now: datetime) -> UserTaskInfo:
        spec = task.task_spec
        extensions = getattr(spec, "extensions", None) or {}
        props = extensions.get("properties", {})
        process_id = _owning_process(task)
        role = extensions.get("role") or spec.lane or props.get("candidateGroups")
        form_file = extensions.get("form") or props.get("formJsonSchemaFilename") or extensions.get("formKey")
        excluded = self._property(task, "excludedUsers") or []
        if isinstance(excluded, str):
            excluded = [excluded]
        due = self._property(task, "dueDate")
        due_at = _due_from(due, now) if due else None
        priority = self._property(task, "priority")
        title = self._property(task, "title") or spec.bpmn_name or spec.name
        assignee = self._property(task, "assignee")
        doc_key = self._property(task, "documentKey")
        return UserTaskInfo(
            task_id=str(task.id),
            spec_id=spec.bpmn_id or spec.name,
            process_id=process_id,
            title=str(title)[:300],
            name=str(spec.bpmn_name or spec.name)[:300],
            role=str(role).split(",")[0].strip() if role else None,
            assignee=str(assignee) if assignee else None,
            excluded_users=sorted({str(u) for u in excluded if u}),
            form_ref=f"{process_id}/{form_file}" if form_file else None,
            priority=int(priority) if priority is not None else 50,
            due_at=due_at,
            document_type=self._property(task, "documentType"),
            document_key=str(doc_key) if doc_key is not None else None,
        )

    # -- history ---------------------------------------------------------------------------
    def prune(self) -> None:
        """Drop completed history SpiffWorkflow keeps forever (notes points 1 and 2).

        Completed tasks in the middle of a straight completed chain are spliced out; the
        audit trail, not the task tree, is the record of what happened. Trees with a join
        waiting for its branches are left alone, as joins read the tree to count inputs.
        """
        pruned: set[str] = set()
        for wf in [self.workflow, *self.workflow.subprocesses.values()]:
            if len(wf.tasks) > PRUNE_THRESHOLD:
                pruned |= _prune_workflow(wf, self.workflow.subprocesses)
        if pruned:
            # the instance diagram still shows these elements as passed through
            root = self.workflow.task_tree
            known = set(root.internal_data.get(PRUNED_ELEMENTS, ()))
            if not pruned <= known:
                root.internal_data[PRUNED_ELEMENTS] = sorted(known | pruned)

    # -- the diagram -------------------------------------------------------------------------
    def element_states(self) -> dict[str, str]:
        """BPMN element id -> the state the instance diagram shows for it. Where several tasks
        share an element (loops), the most pressing state wins: failed, active, waiting,
        completed, cancelled."""
        states: dict[str, str] = {}
        for element in self.workflow.task_tree.internal_data.get(PRUNED_ELEMENTS, ()):
            states[element] = "completed"
        for task in self._all_tasks():
            element = task.task_spec.bpmn_id
            shown = _SHOWN_STATE.get(task.state)
            if element is None or shown is None:
                continue
            if task.state == TaskState.READY and not task.task_spec.manual:
                shown = "active"
            current = states.get(element)
            if current is None or _STATE_RANK[shown] < _STATE_RANK[current]:
                states[element] = shown
        return states

    # -- moving to another version -------------------------------------------------------------
    def migration_plan(
        self, registry: Any, spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]
    ) -> MigrationPlan:
        """What moving this instance onto `spec` changes, and why it cannot be done if it cannot
        (SpiffWorkflow's spec diff: elements are matched by id, then by position)."""
        top, subs = diff_workflow(registry, self.workflow, spec, subprocess_specs)
        spec_diff = SpecDiff(registry, self.workflow.spec, spec)
        reasons = []
        for task in top.removed:
            if task.state in _LIVE_STATES:
                reasons.append(
                    f"{_describe(task.task_spec)} is {TaskState.get_name(task.state).lower()} in this "
                    "instance but does not exist in the new version"
                )
        for sp_id, diff in subs.items():
            sub = self.workflow.subprocesses[sp_id]
            if diff is None:
                reasons.append(f"the called process {sub.spec.name!r} is not part of the new version")
                continue
            for task in diff.removed:
                if task.state in _LIVE_STATES:
                    reasons.append(
                        f"{_describe(task.task_spec)} of {sub.spec.name!r} is "
                        f"{TaskState.get_name(task.state).lower()} but does not exist in the new version"
                    )
        changed_live = [
            t
            for t in [*top.changed, *(t for d in subs.values() if d for t in d.changed)]
            if t.state in _LIVE_STATES
        ]
        return MigrationPlan(
            possible=not reasons,
            reasons=reasons,
            changed=sorted({_describe(ts) for ts in spec_diff.changed if ts.bpmn_id}),
            added=sorted({_describe(ts) for ts in spec_diff.added if ts.bpmn_id}),
            removed=sorted({_describe(ts) for ts in spec_diff.removed if ts.bpmn_id}),
            restarted=sorted(
                {
                    _describe(t.task_spec)
                    for t in changed_live
                    if t.state == TaskState.WAITING and t.task_spec.bpmn_id
                }
            ),
            diffs=(top, subs),
        )

    def migrate(
        self, plan: MigrationPlan, spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]
    ) -> None:
        """Move the instance onto `spec`. Tasks keep their state and data; a waiting element whose
        definition changed (a timer's duration, a message's correlation) starts waiting afresh."""
        if not plan.possible:
            raise RuntimeError("; ".join(plan.reasons))
        top, subs = plan.diffs
        self.workflow.subprocess_specs = subprocess_specs
        _move_onto(top, self.workflow, spec)
        for sp_id, diff in subs.items():
            sub = self.workflow.subprocesses[sp_id]
            if diff is not None:
                _move_onto(diff, sub, subprocess_specs[sub.spec.name])
        self.run()


def _prunable(task: Task, subprocesses: dict[UUID, Any]) -> bool:
    spec = task.task_spec
    return (
        task.state == TaskState.COMPLETED
        and len(task._children) == 1
        and task.parent is not None
        and task.id not in subprocesses
        and not isinstance(spec, UnstructuredJoin | SubWorkflowTask | BoundaryEventSplit | _EndJoin)
    )


def _prune_workflow(wf: BpmnWorkflow, subprocesses: dict[UUID, Any]) -> set[str]:
    """Splice completed straight-line tasks out of the tree; returns their element ids."""
    for task in wf.tasks.values():
        if isinstance(task.task_spec, UnstructuredJoin) and task.state in (
            TaskState.WAITING,
            TaskState.READY,
        ):
            return set()
    keep = {wf.task_tree.id}
    if wf.last_task is not None:
        keep.add(wf.last_task.id)
    removable = [
        t
        for t in wf.tasks.values()
        if t.id not in keep
        and _prunable(t, subprocesses)
        and t.parent.state == TaskState.COMPLETED
        and len(t.parent._children) == 1
    ]
    for task in removable:
        parent = task.parent
        child_id = task._children[0]
        child = wf.tasks[child_id]
        index = parent._children.index(task.id)
        parent._children[index] = child_id
        child._parent = parent.id
        task._children = []
        del wf.tasks[task.id]
    return {t.task_spec.bpmn_id for t in removable if t.task_spec.bpmn_id}


PRUNED_ELEMENTS = "pruned_elements"  # kept in the root task's internal data
_SHOWN_STATE = {
    TaskState.COMPLETED: "completed",
    TaskState.READY: "active",
    TaskState.STARTED: "active",
    TaskState.WAITING: "waiting",
    TaskState.ERROR: "failed",
    TaskState.CANCELLED: "cancelled",
}
_STATE_RANK = {"failed": 0, "active": 1, "waiting": 2, "completed": 3, "cancelled": 4}
_LIVE_STATES = (TaskState.READY, TaskState.STARTED, TaskState.WAITING, TaskState.ERROR)


@dataclass(frozen=True)
class MigrationPlan:
    possible: bool
    reasons: list[str]
    changed: list[str]
    added: list[str]
    removed: list[str]
    restarted: list[str]  # waiting elements whose definition changed: they start waiting afresh
    diffs: tuple[Any, dict[Any, Any]]


def _describe(task_spec: Any) -> str:
    name = getattr(task_spec, "bpmn_name", None)
    return f"{task_spec.bpmn_id} ({name})" if name else str(task_spec.bpmn_id or task_spec.name)


def _move_onto(diff: WorkflowDiff, wf: Any, spec: BpmnProcessSpec) -> None:
    """Point every task at its counterpart in `spec`; restart waits whose definition changed."""
    wf.spec = spec
    for task in wf.tasks.values():
        target = diff.alignment.get(task)
        if target is not None:
            task.task_spec = target
    for task in diff.changed:
        if task.state == TaskState.WAITING and task.id in wf.tasks:
            task.reset_branch(None)


def start_form(spec: BpmnProcessSpec) -> str | None:
    """The form file declared on the process's (none-)start event, if any."""
    for task_spec in spec.task_specs.values():
        if type(task_spec).__name__ == "StartEvent":
            props = (getattr(task_spec, "extensions", None) or {}).get("properties", {})
            if props.get("formJsonSchemaFilename"):
                return str(props["formJsonSchemaFilename"])
    return None


def _owning_process(task: Task) -> str:
    """The process whose file holds the task: embedded subprocesses belong to their parent,
    call activities start a process of their own."""
    wf = task.workflow
    while getattr(wf, "parent_task_id", None) is not None:
        parent_task = wf.top_workflow.get_task_from_id(wf.parent_task_id)
        if isinstance(parent_task.task_spec, CallActivity):
            break
        wf = parent_task.workflow
    return str(wf.spec.name)


def _due_from(value: Any, now: datetime) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.upper().startswith("P"):
        parsed = TimerEventDefinition.parse_iso_duration(text)
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, now)
    if len(text) == 10:
        text += "T23:59:59+00:00"
    return TimerEventDefinition.get_datetime(text)
