"""The task page (its form, its document, the instance history), claiming and starting a process.
An instance's own page is in `instances.py`.

Who may see what, checked on every request:
- a task is visible to the holders of its role, its assignee and whoever completed it; to anyone
  else it does not exist (GET answers 404) and every action on it is refused (POST answers 403);
- a user excluded from a task (four-eyes: the requester of what it approves) sees a 403 page
  without the form, and the POST is refused with 403;
- an instance: see `instances.py`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_date, format_datetime, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select

from engine import Actor, TaskView
from engine.db import db
from engine.errors import Conflict, InvalidData
from engine.models import AuditEvent, HumanTask

from . import form_render
from .auth import current_actor, safe_next
from .inbox import display_names, process_names, runtime

bp = Blueprint("tasks", __name__)

# Who may start which process from the web app (None: everyone). Overridable as START_ROLES.
START_ROLES: dict[str, frozenset[str] | None] = {
    "lead_to_invoice": frozenset({"marketing", "receptionist", "sales"}),
    "repair_ticket": frozenset({"receptionist", "customer_service"}),
    "purchase_approval": None,
}
START_LABELS = {
    "lead_to_invoice": _l("Capture a lead"),
    "repair_ticket": _l("Open a repair ticket"),
    "purchase_approval": _l("Request a purchase"),
}
SEES_EVERY_INSTANCE = frozenset({"director", "admin"})
EVENT_LABELS = {
    "started": _l("Started"),
    "task_created": _l("Task waiting"),
    "task_claimed": _l("Claimed"),
    "task_unclaimed": _l("Released"),
    "task_completed": _l("Done"),
    "timer_fired": _l("Timer fired"),
    "message_received": _l("Message received"),
    "incident": _l("Incident"),
    "retried": _l("Retried"),
    "suspended": _l("Suspended"),
    "resumed": _l("Resumed"),
    "cancelled": _l("Cancelled"),
    "migrated": _l("Moved to another version"),
    "completed": _l("Process finished"),
}
_HIDDEN_DETAIL = frozenset({"task", "spec", "process", "version"})


def humanize(value: Any) -> str:
    return str(value).replace("_", " ").capitalize() if value is not None else ""


def task_title(task: Any) -> str:
    """The title a user reads: the process's own (computed, English) title in English, else the
    task's BPMN name from the catalogue in the user's language (with the document it is about)."""
    title = str(getattr(task, "title", "") or "")
    name = str(getattr(task, "name", "") or "")
    if not name or str(get_locale() or "en").startswith("en"):
        return title
    translated = _(name)
    if translated == name:  # no translation for this name: the computed title says more
        return title
    key = getattr(task, "document_key", None)
    return f"{translated} · {key}" if key else translated


bp.add_app_template_filter(task_title, "task_title")


@bp.app_template_filter("humanize")
def _humanize_filter(value: Any) -> str:
    return humanize(value)


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@bp.app_template_filter("data_value")
def _data_value(value: Any) -> Any:
    """Dates and times in data shown in the user's language and time zone; the rest as it is."""
    if isinstance(value, datetime):
        return format_datetime(value, "short")
    if isinstance(value, str) and len(value) <= 40:
        try:
            if _ISO_DATETIME.match(value):
                return format_datetime(datetime.fromisoformat(value), "short")
            if _ISO_DATE.match(value):
                return format_date(date.fromisoformat(value), "medium")
        except ValueError:
            return value
    return value


def start_roles() -> dict[str, frozenset[str] | None]:
    roles: dict[str, frozenset[str] | None] = current_app.config.get("START_ROLES") or START_ROLES
    return roles


def may_start(actor: Actor, process_id: str) -> bool:
    roles = start_roles()
    if process_id not in roles:
        return False
    allowed = roles[process_id]
    return allowed is None or bool(allowed & actor.roles)


@bp.app_context_processor
def _startable() -> dict[str, Any]:
    """The processes the signed-in user may start, for the menu (no database query)."""
    if not current_user or not current_user.is_authenticated:
        return {"startable": []}
    actor = current_actor()
    return {
        "startable": [
            (pid, START_LABELS.get(pid) or humanize(pid)) for pid in start_roles() if may_start(actor, pid)
        ]
    }


# -- who may see a task --------------------------------------------------------------------------------
def _completion(task_id: int) -> tuple[str | None, datetime | None]:
    row = db.session.execute(
        select(HumanTask.completed_by, HumanTask.completed_at).where(HumanTask.id == task_id)
    ).one()
    return row.completed_by, row.completed_at


def may_see_task(actor: Actor, task: TaskView) -> bool:
    if task.role in actor.roles or task.assignee == actor.username:
        return True
    if task.status == "completed":
        return _completion(task.id)[0] == actor.username
    return False


def get_task(task_id: int, *, for_action: bool) -> TaskView:
    """The task if the signed-in user may see it; else 404 to look at it, 403 to act on it."""
    task = runtime().task(task_id)  # NotFound -> 404
    if not may_see_task(current_actor(), task):
        abort(403 if for_action else 404)
    return task


def _excluded_page(task: TaskView) -> Any:
    message = _(
        "You cannot work on “%(title)s”: the four-eyes rule excludes you from it (for example, you "
        "asked for what it approves).",
        title=task_title(task),
    )
    return render_template(
        "errors/error.html",
        status=403,
        title=_("Not yours to decide"),
        explanation=message,
        details=[],
        minimal=False,
    ), 403


def _completed_page(task: TaskView) -> Any:
    who, when = _completion(task.id)
    names = display_names({who} if who else set())
    message = _(
        "“%(title)s” was already completed by %(who)s at %(when)s. Nothing was changed by you.",
        title=task_title(task),
        who=names.get(who or "", who or _("someone")),
        when=format_datetime(when, "medium") if when else "?",
    )
    return render_template(
        "errors/error.html",
        status=409,
        title=_("Completed meanwhile"),
        explanation=message,
        details=[],
        minimal=False,
    ), 409


# -- the task page --------------------------------------------------------------------------------------
def _context(task: TaskView) -> dict[str, Any]:
    """What stands beside the form: the document, the instance data, the history."""
    engine = runtime()
    data = engine.instance_data(task.instance_id)
    return {
        "instance": engine.instance(task.instance_id),
        "data": readable_data(data),
        "history": history(task.instance_id),
        "process_name": process_names().get(task.process_id, task.process_id),
    }


def readable_data(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "completed_by"}


def history(instance_id: int) -> list[dict[str, Any]]:
    titles = dict(
        db.session.execute(
            select(HumanTask.task_id, HumanTask.title).where(HumanTask.instance_id == instance_id)
        )
        .tuples()
        .all()
    )
    events: list[AuditEvent] = runtime().audit_trail(instance_id)
    names = display_names({e.actor for e in events})
    out = []
    for e in events:
        detail = dict(e.detail or {})
        data = detail.pop("data", None) if e.event == "task_completed" else None
        out.append(
            {
                "at": e.at,
                "actor": names.get(e.actor, e.actor),
                "label": EVENT_LABELS.get(e.event) or humanize(e.event),
                "task": titles.get(e.task_id or "", ""),
                "data": data or {},
                "detail": {
                    k: v for k, v in detail.items() if k not in _HIDDEN_DETAIL and v not in (None, "")
                },
            }
        )
    return out


def _render_task(task: TaskView, rendered: form_render.RenderedForm | None, status: int = 200) -> Any:
    actor = current_actor()
    mode = "form"
    if task.status == "completed":
        mode = "completed"
    elif task.status not in ("open", "claimed"):
        mode = "closed"
    elif task.assignee and task.assignee != actor.username:
        mode = "claimed_by_other"
    who, when = _completion(task.id) if mode == "completed" else (None, None)
    names = display_names({n for n in (task.assignee, who) if n})
    return render_template(
        "tasks/task.html",
        task=task,
        form=rendered,
        mode=mode,
        completed_by=names.get(who or "", who),
        completed_at=when,
        assignee_name=names.get(task.assignee or "", task.assignee),
        is_admin="admin" in actor.roles,
        now=runtime().now(),
        **_context(task),
    ), status


def _schema(form_ref: str | None) -> dict[str, Any] | None:
    return runtime().forms.schema(form_ref) if form_ref else None


@bp.get("/tasks/<int:task_id>")
@login_required
def show(task_id: int) -> Any:
    task = get_task(task_id, for_action=False)
    if current_user.username in task.excluded_users:
        return _excluded_page(task)
    schema = _schema(task.form_ref)
    return _render_task(task, form_render.build(schema) if schema else None)


@bp.post("/tasks/<int:task_id>")
@login_required
def complete(task_id: int) -> Any:
    engine = runtime()
    actor = current_actor()
    task = get_task(task_id, for_action=True)
    if actor.username in task.excluded_users:
        return _excluded_page(task)
    if task.status == "completed":
        return _completed_page(task)
    schema = _schema(task.form_ref)
    submission = _submission(schema)
    if request.form.get("_add_rows") and schema:
        rendered = form_render.build(schema, submission.raw, more_rows=request.form["_add_rows"])
        return _render_task(task, rendered)
    if submission.errors:
        return _render_task(task, _refused(schema, submission, task.form_ref), 422)
    try:
        engine.complete_task(task.id, actor, submission.data)
    except InvalidData as exc:
        return _render_task(task, form_render.build(schema or {}, submission.raw, exc.errors), 422)
    except Conflict:
        fresh = engine.task(task.id)
        if fresh.status == "completed":
            return _completed_page(fresh)
        raise
    flash(_("Done: %(title)s.", title=task_title(task)), "success")
    following = engine.tasks_for(actor, limit=1).tasks
    if following:
        return redirect(url_for("tasks.show", task_id=following[0].id))
    return redirect(url_for("inbox.index"))


def _submission(schema: dict[str, Any] | None) -> form_render.Submission:
    if schema is not None:
        return form_render.parse(schema, request.form)
    # a task without a form takes no data; anything sent is passed on for the engine to refuse
    extra = {k: v for k, v in request.form.items() if k not in form_render.IGNORED}
    return form_render.Submission(extra, {}, [])


def _refused(
    schema: dict[str, Any] | None, submission: form_render.Submission, form_ref: str | None
) -> form_render.RenderedForm:
    """The form again with the fields that could not be read, plus what the engine says of the rest."""
    unreadable = {e.field for e in submission.errors}
    errors = list(submission.errors)
    try:
        runtime().forms.validate(form_ref, submission.data)
    except InvalidData as exc:
        errors.extend(e for e in exc.errors if e.field not in unreadable)
    return form_render.build(schema or {}, submission.raw, errors)


# -- claiming -----------------------------------------------------------------------------------------
@bp.post("/tasks/<int:task_id>/claim")
@login_required
def claim(task_id: int) -> Any:
    task = get_task(task_id, for_action=True)
    runtime().claim_task(task.id, current_actor())
    flash(_("You took “%(title)s”.", title=task_title(task)), "success")
    return redirect(safe_next(request.form.get("next")) or url_for("tasks.show", task_id=task.id))


@bp.post("/tasks/<int:task_id>/unclaim")
@login_required
def unclaim(task_id: int) -> Any:
    actor = current_actor()
    # an administrator may release anyone's claim (e.g. of someone on holiday)
    task = runtime().task(task_id) if "admin" in actor.roles else get_task(task_id, for_action=True)
    runtime().unclaim_task(task.id, actor)
    flash(_("“%(title)s” is back in the queue of its role.", title=task_title(task)), "success")
    return redirect(safe_next(request.form.get("next")) or url_for("inbox.index"))


# -- starting a process ----------------------------------------------------------------------------------
@bp.route("/start/<process_id>", methods=["GET", "POST"])
@login_required
def start(process_id: str) -> Any:
    actor = current_actor()
    if process_id not in start_roles():
        abort(404)
    if not may_start(actor, process_id):
        abort(403)
    engine = runtime()
    schema = _schema(engine.start_form_ref(process_id))  # NotFound (not deployed) -> 404
    label = START_LABELS.get(process_id) or process_names().get(process_id, process_id)
    if request.method == "GET":
        rendered = form_render.build(schema) if schema else None
        return render_template("tasks/start.html", process_id=process_id, label=label, form=rendered)
    submission = _submission(schema)
    if request.form.get("_add_rows") and schema:
        rendered = form_render.build(schema, submission.raw, more_rows=request.form["_add_rows"])
        return render_template("tasks/start.html", process_id=process_id, label=label, form=rendered)
    if submission.errors:
        rendered = _refused(schema, submission, engine.start_form_ref(process_id))
        return render_template("tasks/start.html", process_id=process_id, label=label, form=rendered), 422
    try:
        instance_id = engine.start_process(process_id, submission.data, actor)
    except InvalidData as exc:
        rendered = form_render.build(schema or {}, submission.raw, exc.errors)
        return render_template("tasks/start.html", process_id=process_id, label=label, form=rendered), 422
    key = db.session.scalar(
        select(HumanTask.document_key)
        .where(HumanTask.instance_id == instance_id, HumanTask.document_key.is_not(None))
        .order_by(HumanTask.id)
        .limit(1)
    )
    name = process_names().get(process_id, process_id)
    if key:
        flash(
            _("%(process)s no. %(id)d started (%(key)s).", process=name, id=instance_id, key=key), "success"
        )
    else:
        flash(_("%(process)s no. %(id)d started.", process=name, id=instance_id), "success")
    return redirect(url_for("inbox.index"))
