"""Approvals for managers and directors: the queue of documents awaiting their decision, each
document with its lines, totals, discount, requester and earlier decisions, approve or reject
with a mandatory reason, and bulk approval with a result per document.

Which tasks are approvals (`DECISION_TASKS`, `ESCALATION_TASKS`): the discount approvals of
`lead_to_invoice`, the purchase request approvals of `purchase_approval`, decided here with the
task form's own fields (`decision`, `reason`); and the overdue-invoice escalation, shown in the
queue but decided on its task page (its form has other fields).

Who may do what, checked on every request:
- the pages are for the `manager` and `director` roles (others get 403);
- the queue lists the approval tasks the engine's inbox gives the user (`tasks_for`), so
  tasks the four-eyes rule excludes them from are not in it;
- an approval page answers 404 to whoever may not see its task (the rule of the task page);
- a user the four-eyes rule excludes (the requester or author of the document) sees the
  document without the decision buttons, and their POST is refused with 403; in a bulk
  approval that task is refused with the reason, and the others go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import Actor, TaskView
from engine.errors import Conflict, Forbidden, InvalidData, InvalidState, NotFound

from .auth import current_actor
from .documents import SLUG_OF_TYPE, document_context, instance_decisions
from .errors import error_page
from .inbox import display_names, process_names, runtime
from .summaries import summaries
from .tasks import get_task

bp = Blueprint("approvals", __name__)

APPROVER_ROLES = frozenset({"manager", "director"})
# (process id, task id): decided here — approve, or reject with a reason (the task form's fields)
DECISION_TASKS = frozenset(
    {
        ("lead_to_invoice", "approve_discount"),
        ("lead_to_invoice", "approve_discount_director"),
        ("purchase_approval", "approve_manager"),
        ("purchase_approval", "approve_director"),
    }
)
# in the queue, decided on the task page: its form has other fields
ESCALATION_TASKS = frozenset({("lead_to_invoice", "escalate_overdue_invoice")})
APPROVAL_TASKS = DECISION_TASKS | ESCALATION_TASKS
APPROVAL_PROCESSES = tuple(sorted({process for process, _task in APPROVAL_TASKS}))
QUEUE_LIMIT = 200  # rows shown
SCAN_LIMIT = 2000  # inbox rows looked at per process to find them
BULK_LIMIT = 100
REASON_MAX = 2000


def is_approver(actor: Actor) -> bool:
    return bool(APPROVER_ROLES & actor.roles)


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    shown = bool(current_user and current_user.is_authenticated and is_approver(current_actor()))
    return {"approvals_visible": shown}


def _approver() -> Actor:
    actor = current_actor()
    if not is_approver(actor):
        abort(403)
    return actor


def _is_approval(task: TaskView) -> bool:
    return (task.process_id, task.spec_id) in APPROVAL_TASKS


def _is_decision(task: TaskView) -> bool:
    return (task.process_id, task.spec_id) in DECISION_TASKS


# -- the queue -----------------------------------------------------------------------------------------
def approval_queue(actor: Actor) -> tuple[list[TaskView], bool]:
    """The open approval tasks the actor's inbox holds (also those claimed by others), oldest
    first; and whether there were more than are returned."""
    engine = runtime()
    found: list[TaskView] = []
    more = False
    for process_id in APPROVAL_PROCESSES:
        cursor: str | None = None
        scanned = 0
        while True:
            page = engine.tasks_for(
                actor,
                process_id=process_id,
                sort="age",
                cursor=cursor,
                limit=200,
                include_claimed_by_others=True,
            )
            found.extend(t for t in page.tasks if _is_approval(t))
            scanned += len(page.tasks)
            cursor = page.next_cursor
            if cursor is None:
                break
            if scanned >= SCAN_LIMIT:
                more = True
                break
    found.sort(key=lambda t: (t.created_at, t.id))
    if len(found) > QUEUE_LIMIT:
        found, more = found[:QUEUE_LIMIT], True
    return found, more


@dataclass
class Row:
    """One document awaiting a decision, as the queue shows it."""

    task: TaskView
    number: str
    amount: Decimal | None
    currency: str | None
    requester: str | None
    customer: str | None
    decidable: bool  # approve/reject here (not the escalation)
    selectable: bool  # may be ticked for bulk approval by this user now


def _rows(actor: Actor, tasks: list[TaskView]) -> list[Row]:
    about = summaries(tasks)
    rows = []
    for t in tasks:
        key = t.document_key or ""
        found = about.get((t.document_type or "", key))
        amount = found.amount if found else None
        currency = found.currency if found else None
        requester = found.author if found else None
        customer = found.party if found and t.document_type in ("quote", "invoice") else None
        decidable = _is_decision(t)
        rows.append(
            Row(
                task=t,
                number=key or t.title,
                amount=amount,
                currency=currency,
                requester=requester,
                customer=customer,
                decidable=decidable,
                selectable=decidable and runtime().may_act(actor, t),
            )
        )
    return rows


@bp.get("/approvals")
@login_required
def queue() -> Any:
    actor = _approver()
    tasks, more = approval_queue(actor)
    rows = _rows(actor, tasks)
    people = {r.requester for r in rows if r.requester} | {t.assignee for t in tasks if t.assignee}
    return render_template(
        "approvals/queue.html",
        rows=rows,
        more=more,
        names=display_names(people),
        processes=process_names(),
        now=runtime().now(),
        any_selectable=any(r.selectable for r in rows),
    )


# -- bulk approval -------------------------------------------------------------------------------------
@bp.post("/approvals")
@login_required
def bulk() -> Any:
    actor = _approver()
    if request.form.get("bulk") != "approve":
        abort(400)
    raw = request.form.getlist("task_ids")
    if any(not value.isdigit() or len(value) > 12 for value in raw):
        abort(400)
    ids = list(dict.fromkeys(int(value) for value in raw))
    if not ids:
        flash(_("Tick the documents you want to approve first."), "info")
        return redirect(url_for("approvals.queue"))
    if len(ids) > BULK_LIMIT:
        flash(_("At most %(n)d documents at a time.", n=BULK_LIMIT), "error")
        return redirect(url_for("approvals.queue"))
    for task_id in ids:
        label, refusal = _approve_one(actor, task_id)
        if refusal is None:
            flash(_("%(document)s: approved.", document=label), "success")
        else:
            flash(_("%(document)s: not approved — %(reason)s", document=label, reason=refusal), "error")
    return redirect(url_for("approvals.queue"))


def _approve_one(actor: Actor, task_id: int) -> tuple[str, str | None]:
    """Approve one task for the bulk action: (document, None) when approved, else the refusal."""
    engine = runtime()
    try:
        task = engine.task(task_id)
    except NotFound:
        return _("task no. %(id)d", id=task_id), _("there is no such approval.")
    label = task.document_key or task.title
    if not (task.role in actor.roles or task.assignee == actor.username):
        return _("task no. %(id)d", id=task_id), _("there is no such approval.")
    if not _is_decision(task):
        return label, _("it cannot be approved in bulk; open it to decide.")
    if actor.username in task.excluded_users:
        return label, _("the four-eyes rule excludes you: someone else must decide on it.")
    if task.status == "completed":
        who = display_names({task.completed_by} if task.completed_by else set())
        return label, _(
            "already decided by %(who)s.", who=who.get(task.completed_by or "", task.completed_by or "?")
        )
    if task.status not in ("open", "claimed"):
        return label, _("it no longer waits for a decision.")
    if task.assignee and task.assignee != actor.username:
        who = display_names({task.assignee})
        return label, _("%(who)s is working on it.", who=who.get(task.assignee, task.assignee))
    try:
        engine.complete_task(task.id, actor, {"decision": "approve"})
    except Forbidden:
        return label, _("your roles do not allow it.")
    except (Conflict, InvalidState):
        return label, _("it was changed meanwhile; nothing was changed by you.")
    except InvalidData as exc:
        return label, "; ".join(str(e) for e in exc.errors)
    return label, None


# -- one approval ----------------------------------------------------------------------------------------
def _render(
    task: TaskView,
    *,
    errors: dict[str, str] | None = None,
    reason: str = "",
    status: int = 200,
) -> Any:
    actor = current_actor()
    slug = SLUG_OF_TYPE.get(task.document_type or "")
    document: dict[str, Any] = {}
    if slug is not None and task.document_key:
        try:
            document = document_context(actor, slug, task.document_key)
        except NotFound:
            document = {}
    document["may_register_payment"] = False
    document["payment"] = None
    if "decisions" not in document:
        document["decisions"] = instance_decisions(task.instance_id)
    if task.status == "completed":
        mode = "completed"
    elif task.status not in ("open", "claimed"):
        mode = "closed"
    elif actor.username in task.excluded_users:
        mode = "excluded"
    elif task.assignee and task.assignee != actor.username:
        mode = "claimed_by_other"
    elif not _is_decision(task):
        mode = "task_page"
    else:
        mode = "decide"
    names = display_names({n for n in (task.assignee, task.completed_by) if n})
    return render_template(
        "approvals/detail.html",
        task=task,
        mode=mode,
        errors=errors or {},
        reason=reason,
        task_names=names,
        process_name=process_names().get(task.process_id, task.process_id),
        now=runtime().now(),
        reason_max=REASON_MAX,
        **{k: v for k, v in document.items() if k != "task"},
    ), status


def _approval_task(task_id: int, *, for_action: bool) -> TaskView:
    task = get_task(task_id, for_action=for_action)  # not visible: 404 to look, 403 to act
    if not _is_approval(task):
        abort(404)
    return task


@bp.get("/approvals/<int:task_id>")
@login_required
def show(task_id: int) -> Any:
    _approver()
    return _render(_approval_task(task_id, for_action=False))


@bp.post("/approvals/<int:task_id>")
@login_required
def decide(task_id: int) -> Any:
    actor = _approver()
    engine = runtime()
    task = _approval_task(task_id, for_action=True)
    if actor.username in task.excluded_users:
        abort(403, _("The four-eyes rule excludes you from this decision: someone else must take it."))
    if task.status == "completed":
        return _completed(task)
    if not _is_decision(task):
        abort(404)
    decision = request.form.get("decision") or ""
    reason = (request.form.get("reason") or "").strip()
    errors: dict[str, str] = {}
    if decision not in ("approve", "reject"):
        errors["decision"] = _("Choose: approve or reject.")
    elif decision == "reject" and not reason:
        errors["reason"] = _("Give the reason for the rejection: the requester will read it.")
    if len(reason) > REASON_MAX:
        errors["reason"] = _("At most %(n)d characters.", n=REASON_MAX)
    if errors:
        return _render(task, errors=errors, reason=reason, status=422)
    data: dict[str, Any] = {"decision": decision}
    if reason:
        data["reason"] = reason
    try:
        engine.complete_task(task.id, actor, data)
    except InvalidData as exc:
        return _render(task, errors=_field_errors(exc), reason=reason, status=422)
    except Conflict:
        fresh = engine.task(task.id)
        if fresh.status == "completed":
            return _completed(fresh)
        raise
    label = task.document_key or task.title
    if decision == "approve":
        flash(_("%(document)s: approved.", document=label), "success")
    else:
        flash(_("%(document)s: rejected and sent back with your reason.", document=label), "success")
    return redirect(url_for("approvals.queue"))


def _field_errors(exc: InvalidData) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors:
        if e.field == "reason":
            if e.message == "this field is required":
                errors["reason"] = _("Give the reason for the rejection: the requester will read it.")
            elif "is too short" in e.message:
                errors["reason"] = _("Say a little more: at least 3 characters.")
            elif "is too long" in e.message:
                errors["reason"] = _("At most %(n)d characters.", n=REASON_MAX)
            else:
                errors["reason"] = e.message
        else:
            errors["decision" if e.field == "decision" else "form"] = str(e)
    return errors


def _completed(task: TaskView) -> Any:
    fresh = runtime().task(task.id)
    names = display_names({fresh.completed_by} if fresh.completed_by else set())
    who = names.get(fresh.completed_by or "", fresh.completed_by or _("someone"))
    when = format_datetime(fresh.completed_at, "medium") if fresh.completed_at else "?"
    return error_page(
        409,
        _(
            "%(document)s was already decided by %(who)s at %(when)s. Nothing was changed by you.",
            document=task.document_key or task.title,
            who=who,
            when=when,
        ),
    )
