"""Process instances: the list with filters, one instance with its diagram, timers, incidents,
audit trail and data, and the operations of the role `admin`.

Who may see what, checked on every request:
- an instance is visible to whoever started it, to holders of the role of any of its tasks, to
  those who were assigned or completed one, and to directors and administrators
  (`SEES_EVERY_INSTANCE`); to anyone else it does not exist (404), in the list and on its page;
- its data (the instance variables, and what each completed task entered, in the audit trail)
  is shown to directors and administrators and to whoever has or had a task of it: holders of a
  task's role, its assignee, whoever completed it. They are the people who see the same data
  beside the task's form on the task page. Whoever only started the instance sees where it
  stands, its tasks and its history, not the data others entered;
- the operations (retry an incident, suspend, resume, cancel, move to the latest version) are
  for the role `admin`: their buttons are shown to administrators only, and every POST from
  anyone else is refused with 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import ColumnElement, Select, exists, func, or_, select, true
from werkzeug.datastructures import MultiDict

from engine import Actor
from engine.db import db
from engine.errors import ProcessFileErrors
from engine.models import HumanTask, Incident, ProcessDefinition, ProcessInstance, Timer, User
from engine.xmlsafe import parse_xml

from .auth import current_actor, role_required
from .inbox import display_names, process_names, runtime
from .tasks import SEES_EVERY_INSTANCE, history, readable_data

bp = Blueprint("instances", __name__, url_prefix="/instances")

PAGE_SIZE = 50
OPERATOR_ROLE = "admin"
STATUSES = {
    "running": _l("Running"),
    "waiting": _l("Waiting for an event"),
    "error": _l("Error"),
    "suspended": _l("Suspended"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
}
FINISHED = frozenset({"completed", "cancelled"})
OPEN_TASK_STATES = ("open", "claimed")
STATE_LABELS = {
    "active": _l("Waiting for a person"),
    "waiting": _l("Waiting for a timer or message"),
    "failed": _l("Failed"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
}
CURRENT_STATES = ("failed", "active", "waiting")  # where an instance stands, most pressing first
TIMER_KINDS = {"date": _l("At a date"), "duration": _l("After a duration"), "cycle": _l("Repeating")}
DATA_DETAIL = frozenset({"payload", "correlation"})  # audit details that carry data
BPMN_MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"


@bp.app_template_filter("instance_status")
def instance_status(value: str) -> str:
    return str(STATUSES.get(value, value))


# -- who may see what ---------------------------------------------------------------------------------
def _has_a_task(actor: Actor) -> ColumnElement[bool]:
    """A task row the actor has or had: its role, assigned to them, or completed by them."""
    return or_(
        HumanTask.role.in_(sorted(actor.roles)),
        HumanTask.assignee == actor.username,
        HumanTask.completed_by == actor.username,
    )


def visible_to(actor: Actor) -> ColumnElement[bool]:
    """`may_see_instance` as a condition on ProcessInstance rows, for lists (one query)."""
    if actor.roles & SEES_EVERY_INSTANCE:
        return true()
    involved = exists().where(HumanTask.instance_id == ProcessInstance.id, _has_a_task(actor))
    return or_(ProcessInstance.started_by == actor.username, involved)


def may_see_instance(actor: Actor, instance: ProcessInstance) -> bool:
    if actor.roles & SEES_EVERY_INSTANCE or instance.started_by == actor.username:
        return True
    return may_see_data(actor, instance)


def may_see_data(actor: Actor, instance: ProcessInstance) -> bool:
    """Directors, administrators, and whoever has or had a task of the instance (see above)."""
    if actor.roles & SEES_EVERY_INSTANCE:
        return True
    involved = exists().where(HumanTask.instance_id == instance.id, _has_a_task(actor))
    return bool(db.session.scalar(select(involved)))


def visible_instance(instance_id: int) -> ProcessInstance:
    """The instance if the signed-in user may see it; 404 otherwise (as if it did not exist)."""
    instance = runtime().instance(instance_id)  # NotFound -> 404
    if not may_see_instance(current_actor(), instance):
        abort(404)
    return instance


# -- the list -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """What the list is narrowed to, read from the query string (what cannot be read is ignored)."""

    process: str | None = None
    version: int | None = None
    status: str | None = None
    business_key: str | None = None
    started_by: str | None = None
    started_from: date | None = None
    started_to: date | None = None

    @classmethod
    def read(cls, args: MultiDict[str, str]) -> Filters:
        version = (args.get("version") or "").strip()
        status = args.get("status") or None
        return cls(
            process=_text(args.get("process"), 200),
            version=int(version) if version.isdigit() and len(version) <= 6 else None,
            status=status if status in STATUSES else None,
            business_key=_text(args.get("key"), 200),
            started_by=_text(args.get("by"), 80),
            started_from=_date(args.get("from")),
            started_to=_date(args.get("to")),
        )

    def query_args(self) -> dict[str, Any]:
        """The filters as query-string arguments (for the pager's links)."""
        values = {
            "process": self.process,
            "version": self.version,
            "status": self.status,
            "key": self.business_key,
            "by": self.started_by,
            "from": self.started_from.isoformat() if self.started_from else None,
            "to": self.started_to.isoformat() if self.started_to else None,
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def apply(self, q: Select[Any]) -> Select[Any]:
        if self.process:
            q = q.where(ProcessInstance.process_id == self.process)
        if self.version is not None:
            q = q.where(ProcessInstance.process_version == self.version)
        if self.status:
            q = q.where(ProcessInstance.status == self.status)
        if self.business_key:
            q = q.where(ProcessInstance.business_key.ilike(_contains(self.business_key), escape="\\"))
        if self.started_by:
            named = select(User.username).where(
                User.display_name.ilike(_contains(self.started_by), escape="\\")
            )
            q = q.where(
                or_(
                    func.lower(ProcessInstance.started_by) == self.started_by.lower(),
                    ProcessInstance.started_by.in_(named),
                )
            )
        if self.started_from:
            q = q.where(ProcessInstance.started_at >= _start_of_day(self.started_from))
        if self.started_to:
            q = q.where(ProcessInstance.started_at < _start_of_day(self.started_to + timedelta(days=1)))
        return q


def _text(value: str | None, limit: int) -> str | None:
    return (value or "").strip()[:limit] or None


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat((value or "").strip()) if value else None
    except ValueError:
        return None


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _start_of_day(day: date) -> datetime:
    """Midnight of `day` in the user's time zone, in UTC (what the database holds)."""
    moment: datetime = get_timezone().localize(datetime.combine(day, time.min))
    return moment.astimezone(UTC)


def list_instances(actor: Actor, filters: Filters, before: int | None) -> tuple[list[ProcessInstance], bool]:
    """One page of the instances `actor` may see, newest first; and whether older ones follow."""
    q = filters.apply(select(ProcessInstance).where(visible_to(actor)))
    if before is not None:
        q = q.where(ProcessInstance.id < before)
    rows = list(db.session.scalars(q.order_by(ProcessInstance.id.desc()).limit(PAGE_SIZE + 1)))
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def open_tasks(instance_ids: list[int]) -> dict[int, list[Any]]:
    """The open tasks of these instances (one query), by instance."""
    found: dict[int, list[Any]] = {i: [] for i in instance_ids}
    if not instance_ids:
        return found
    rows = db.session.execute(
        select(HumanTask.instance_id, HumanTask.title, HumanTask.name, HumanTask.document_key)
        .where(HumanTask.instance_id.in_(instance_ids), HumanTask.status.in_(OPEN_TASK_STATES))
        .order_by(HumanTask.id)
    )
    for row in rows:
        found[row.instance_id].append(row)
    return found


@bp.get("/")
@login_required
def listing() -> Any:
    actor = current_actor()
    filters = Filters.read(request.args)
    before_arg = request.args.get("before") or ""
    before = int(before_arg) if before_arg.isdigit() and len(before_arg) <= 12 else None
    rows, more = list_instances(actor, filters, before)
    args = filters.query_args()
    return render_template(
        "instances/list.html",
        rows=rows,
        filters=filters,
        filtered=bool(args),
        tasks=open_tasks([r.id for r in rows]),
        names=display_names({r.started_by for r in rows}),
        processes=process_names(),
        statuses=STATUSES,
        next_url=url_for("instances.listing", before=rows[-1].id, **args) if more else None,
        first_url=url_for("instances.listing", **args) if before is not None else None,
    )


# -- one instance --------------------------------------------------------------------------------------
def element_names(instance: ProcessInstance) -> dict[str, str]:
    """BPMN element id -> its name, from the file of the instance's own version."""
    file_name, source = runtime().definition_source(instance.definition_id)
    try:
        tree = parse_xml(source, file_name)
    except ProcessFileErrors:  # deployed files were parsed before; a broken one names nothing
        return {}
    names: dict[str, str] = {}
    for element in tree.iter(f"{{{BPMN_MODEL}}}*"):
        element_id, name = element.get("id"), element.get("name")
        if element_id and name:
            names[element_id] = " ".join(name.split())
    return names


def where_it_stands(states: dict[str, str], names: dict[str, str]) -> list[dict[str, str]]:
    """The elements the instance is at (failed, active, waiting), for readers of text."""
    order = {state: n for n, state in enumerate(CURRENT_STATES)}
    current = sorted(
        ((element, state) for element, state in states.items() if state in order),
        key=lambda item: (order[item[1]], names.get(item[0], item[0]), item[0]),
    )
    return [
        {
            "id": element,
            "name": names.get(element, element),
            "state": state,
            "label": str(STATE_LABELS[state]),
        }
        for element, state in current
    ]


def _history(instance_id: int, with_data: bool) -> list[dict[str, Any]]:
    """The audit trail; without what people entered (task data, message payloads) for those who
    may not see the data."""
    events = history(instance_id)
    for event in events:
        detail = event["detail"]
        if not with_data:
            event["data"] = {}
            detail = {k: v for k, v in detail.items() if k not in DATA_DETAIL}
        event["detail"] = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in detail.items()}
    return events


def _latest_version(process_id: str) -> int | None:
    version: int | None = db.session.scalar(
        select(func.max(ProcessDefinition.version)).where(ProcessDefinition.process_id == process_id)
    )
    return version


def _incidents(instance_id: int) -> list[Incident]:
    return list(
        db.session.scalars(select(Incident).where(Incident.instance_id == instance_id).order_by(Incident.id))
    )


def _aware(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _timers(instance_id: int, now: datetime) -> list[dict[str, Any]]:
    """The timers the instance waits for, soonest first, with whether they are due already."""
    rows = db.session.scalars(
        select(Timer).where(Timer.instance_id == instance_id).order_by(Timer.due_at, Timer.id)
    )
    return [
        {
            "spec_id": t.spec_id,
            "kind": t.kind,
            "due_at": _aware(t.due_at),
            "status": t.status,
            "overdue": _aware(t.due_at) <= now,
        }
        for t in rows
    ]


@bp.get("/<int:instance_id>")
@login_required
def detail(instance_id: int) -> Any:
    actor = current_actor()
    instance = visible_instance(instance_id)
    engine = runtime()
    shows_data = may_see_data(actor, instance)
    names = element_names(instance)
    tasks = db.session.scalars(
        select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(HumanTask.id)
    ).all()
    incidents = _incidents(instance_id)
    now = engine.now()
    latest = _latest_version(instance.process_id)
    people = {instance.started_by, *(i.resolved_by for i in incidents if i.resolved_by)}
    people |= {n for t in tasks for n in (t.assignee, t.completed_by) if n}
    return render_template(
        "instances/detail.html",
        instance=instance,
        process_name=process_names().get(instance.process_id, instance.process_id),
        names=names,
        now_at=where_it_stands(engine.element_states(instance_id), names),
        state_labels=STATE_LABELS,
        tasks=tasks,
        incidents=incidents,
        timers=_timers(instance_id, now),
        timer_kinds=TIMER_KINDS,
        people=display_names(people),
        shows_data=shows_data,
        data=readable_data(engine.instance_data(instance_id)) if shows_data else {},
        history=_history(instance_id, shows_data),
        operator=OPERATOR_ROLE in actor.roles,
        finished=instance.status in FINISHED,
        latest_version=latest,
    )


@bp.get("/<int:instance_id>/diagram.json")
@login_required
def diagram(instance_id: int) -> Any:
    """The BPMN of the instance's own version and the state of each of its elements."""
    instance = visible_instance(instance_id)
    engine = runtime()
    file_name, source = engine.definition_source(instance.definition_id)
    response = jsonify(
        instance_id=instance.id,
        process_id=instance.process_id,
        version=instance.process_version,
        file_name=file_name,
        xml=source.decode("utf-8"),
        states=engine.element_states(instance_id),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# -- operations (administrators) -----------------------------------------------------------------------
def _back(instance_id: int) -> Any:
    return redirect(url_for("instances.detail", instance_id=instance_id))


@bp.post("/<int:instance_id>/suspend")
@role_required(OPERATOR_ROLE)
def suspend(instance_id: int) -> Any:
    runtime().suspend(instance_id, current_actor())  # NotFound -> 404, InvalidState -> 409
    flash(
        _("Instance no. %(id)d is suspended: its tasks and timers wait until it is resumed.", id=instance_id),
        "success",
    )
    return _back(instance_id)


@bp.post("/<int:instance_id>/resume")
@role_required(OPERATOR_ROLE)
def resume(instance_id: int) -> Any:
    runtime().resume(instance_id, current_actor())
    flash(_("Instance no. %(id)d is resumed.", id=instance_id), "success")
    return _back(instance_id)


@bp.route("/<int:instance_id>/cancel", methods=["GET", "POST"])
@role_required(OPERATOR_ROLE)
def cancel(instance_id: int) -> Any:
    """Cancelling cannot be undone: a page says what it ends and asks for a confirmation."""
    engine = runtime()
    instance = engine.instance(instance_id)  # NotFound -> 404
    if request.method == "POST":
        if request.form.get("confirm") == "yes":
            engine.cancel(instance_id, current_actor())  # InvalidState (finished) -> 409
            flash(_("Instance no. %(id)d is cancelled.", id=instance_id), "success")
            return _back(instance_id)
        error = _("Tick the box to confirm that this instance should be cancelled.")
        return _cancel_page(instance, error), 422
    return _cancel_page(instance, None)


def _cancel_page(instance: ProcessInstance, error: str | None) -> str:
    open_count = db.session.scalar(
        select(func.count())
        .select_from(HumanTask)
        .where(HumanTask.instance_id == instance.id, HumanTask.status.in_((*OPEN_TASK_STATES, "suspended")))
    )
    return render_template(
        "instances/cancel.html",
        instance=instance,
        process_name=process_names().get(instance.process_id, instance.process_id),
        open_count=open_count or 0,
        finished=instance.status in FINISHED,
        error=error,
    )


@bp.post("/<int:instance_id>/incidents/<int:incident_id>/retry")
@role_required(OPERATOR_ROLE)
def retry(instance_id: int, incident_id: int) -> Any:
    incident = db.session.get(Incident, incident_id)
    if incident is None or incident.instance_id != instance_id:
        abort(404)
    runtime().retry_incident(incident_id, current_actor())  # Conflict (resolved) -> 409
    flash(_("The failed step of instance no. %(id)d was tried again.", id=instance_id), "success")
    return _back(instance_id)


@bp.route("/<int:instance_id>/migrate", methods=["GET", "POST"])
@role_required(OPERATOR_ROLE)
def migrate(instance_id: int) -> Any:
    """GET: what moving to the latest version changes, or why it cannot move. POST: move it."""
    engine = runtime()
    instance = engine.instance(instance_id)  # NotFound -> 404
    if request.method == "POST":
        version = engine.migrate_instance(instance_id, current_actor())  # InvalidState -> 409
        flash(
            _("Instance no. %(id)d now runs on version %(version)d.", id=instance_id, version=version),
            "success",
        )
        return _back(instance_id)
    return render_template(
        "instances/migrate.html",
        instance=instance,
        process_name=process_names().get(instance.process_id, instance.process_id),
        preview=engine.migration_preview(instance_id),
    )
