"""My tasks, one task with its form, and claiming, giving back and completing tasks.

The rules are the web app's, decided by the same code: a task is visible to the holders of its
role, its assignee and whoever completed it — to anyone else it does not exist (404 to look at
it, 403 to act on it, as `tasks.get_task`); a user the four-eyes rule excludes gets 403; the
engine checks who may act, validates the data against the task's form and refuses a second
completion (409)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from engine import Actor, TaskView
from engine.errors import FieldError

from ..inbox import runtime
from ..tasks import may_see_task
from . import api_actor, bp, json_body, limit_arg
from .problems import Problem
from .representations import instance_detail_json, task_detail_json, task_json

PAGE_SIZE = 25
SORTS = ("due", "priority", "age")
FLAGS = {"true": True, "1": True, "false": False, "0": False}


def _visible_task(task_id: int, actor: Actor, *, for_action: bool) -> TaskView:
    task = runtime().task(task_id)  # NotFound -> 404
    if not may_see_task(actor, task):
        if for_action:
            raise Problem(403, f"{actor.username} may not act on task {task_id}")
        raise Problem(404, f"task {task_id} does not exist")
    return task


def _four_eyes(actor: Actor, task: TaskView) -> Problem:
    return Problem(
        403, f"{actor.username} may not work on task {task.id}: the four-eyes rule excludes them from it"
    )


@bp.get("/tasks")
def list_tasks() -> Any:
    """The caller's tasks: assigned to them, or open to one of their roles and not excluding
    them; the inbox's filters, sorts and cursor pages."""
    actor = api_actor()
    args = request.args
    problems = []
    role = args.get("role") or None
    if role is not None and role not in actor.roles:
        problems.append(FieldError("role", f"{actor.username} does not hold the role {role!r}"))
    sort = args.get("sort") or "due"
    if sort not in SORTS:
        problems.append(FieldError("sort", "one of " + ", ".join(SORTS)))
    overdue_arg = args.get("overdue")
    if overdue_arg is not None and overdue_arg not in FLAGS:
        problems.append(FieldError("overdue", "true or false"))
    if problems:
        raise Problem(422, "Invalid query parameter.", problems)
    page = runtime().tasks_for(
        actor,
        role=role,
        process_id=(args.get("process_id") or "").strip()[:200] or None,
        overdue=FLAGS[overdue_arg] if overdue_arg is not None else None,
        text=(args.get("q") or "").strip()[:100] or None,
        sort=sort,
        cursor=args.get("cursor") or None,  # InvalidData (field "cursor") -> 422
        limit=limit_arg(PAGE_SIZE),
    )
    return jsonify(tasks=[task_json(t, actor) for t in page.tasks], next_cursor=page.next_cursor)


@bp.get("/tasks/<int:task_id>")
def task(task_id: int) -> Any:
    """One task with the JSON Schema of its form."""
    actor = api_actor()
    found = _visible_task(task_id, actor, for_action=False)
    if actor.username in found.excluded_users:
        raise _four_eyes(actor, found)
    return jsonify(task_detail_json(found, actor))


@bp.post("/tasks/<int:task_id>/claim")
def claim_task(task_id: int) -> Any:
    """Take an open task of one's role (409 when someone else has it)."""
    actor = api_actor()
    found = _visible_task(task_id, actor, for_action=True)
    claimed = runtime().claim_task(found.id, actor)
    return jsonify(task_json(claimed, actor))


@bp.post("/tasks/<int:task_id>/unclaim")
def unclaim_task(task_id: int) -> Any:
    """Give a claimed task back to its role (an administrator may release anyone's claim)."""
    actor = api_actor()
    engine = runtime()
    found = engine.task(task_id) if "admin" in actor.roles else _visible_task(task_id, actor, for_action=True)
    released = engine.unclaim_task(found.id, actor)
    return jsonify(task_json(released, actor))


@bp.post("/tasks/<int:task_id>/complete")
def complete_task(task_id: int) -> Any:
    """Complete a task with its form's data (the body); answers the task and its instance."""
    actor = api_actor()
    found = _visible_task(task_id, actor, for_action=True)
    if actor.username in found.excluded_users:
        raise _four_eyes(actor, found)
    data = json_body()
    engine = runtime()
    instance_id = engine.complete_task(found.id, actor, data)
    return jsonify(
        task=task_json(engine.task(found.id), actor),
        instance=instance_detail_json(engine.instance(instance_id), actor),
    )
