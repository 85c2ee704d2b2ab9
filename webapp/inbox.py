"""The inbox: the signed-in user's tasks across their roles, with counts that refresh themselves."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import select

from engine import Engine, TaskPage, TaskView
from engine.db import db
from engine.errors import InvalidData
from engine.models import ProcessDefinition, User

from .auth import current_actor
from .summaries import summaries

bp = Blueprint("inbox", __name__)

PAGE_SIZE = 25
SORTS = {"due": _l("Due date"), "priority": _l("Priority"), "age": _l("Oldest first")}


def runtime() -> Engine:
    engine: Engine = current_app.extensions["engine"]
    return engine


def process_names() -> dict[str, str]:
    """process id -> the name of its latest version."""
    names: dict[str, str] = {}
    rows = db.session.execute(
        select(ProcessDefinition.process_id, ProcessDefinition.name).order_by(ProcessDefinition.version)
    )
    for process_id, name in rows:
        names[process_id] = name or process_id
    return names


def display_names(usernames: set[str]) -> dict[str, str]:
    if not usernames:
        return {}
    rows = db.session.execute(select(User.username, User.display_name).where(User.username.in_(usernames)))
    return {u: (n or u) for u, n in rows}


COUNT_CAP = 99  # badges say "99+" beyond this: counting a huge queue exactly on every poll is waste


def _shown(n: int) -> int | str:
    return f"{COUNT_CAP}+" if n > COUNT_CAP else n


def counts_for_actor() -> dict[str, Any]:
    counts = runtime().task_counts(current_actor(), cap=COUNT_CAP)
    mine = counts.pop("mine", 0)
    total = sum(counts.values()) + mine
    return {"roles": {r: _shown(n) for r, n in counts.items()}, "mine": _shown(mine), "total": _shown(total)}


@bp.get("/inbox")
@login_required
def index() -> Any:
    actor = current_actor()
    engine = runtime()
    role = request.args.get("role") or None
    if role is not None and role not in actor.roles:
        role = None
    process = (request.args.get("process") or "").strip()[:200] or None
    text = (request.args.get("q") or "").strip()[:100] or None
    sort = request.args.get("sort", "due")
    if sort not in SORTS:
        sort = "due"
    overdue_only = request.args.get("overdue") == "1"
    cursor = request.args.get("cursor") or None
    filters: dict[str, Any] = {"role": role, "process_id": process, "text": text}
    now = engine.now()

    # Overdue first: sorted by due date they come first anyway; for the other sorts they get
    # their own section on top, and when that section is complete the list below leaves them out.
    overdue: list[TaskView] = []
    overdue_complete = False
    if sort != "due" and not overdue_only:
        first = engine.tasks_for(
            actor, **filters, overdue=True, sort="due", limit=PAGE_SIZE, include_claimed_by_others=True
        )
        overdue_complete = first.next_cursor is None
        overdue = first.tasks if cursor is None else []
    try:
        page: TaskPage = engine.tasks_for(
            actor,
            **filters,
            # overdue only; or, when the overdue section above is complete, only the rest
            overdue=True if overdue_only else (False if overdue_complete else None),
            sort=sort,
            cursor=cursor,
            limit=PAGE_SIZE,
            include_claimed_by_others=True,
        )
    except InvalidData:
        abort(400)
    tasks = page.tasks

    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor" and v}
    next_url = url_for("inbox.index", **args, cursor=page.next_cursor) if page.next_cursor else None
    first_url = url_for("inbox.index", **args) if cursor else None
    shown = overdue + tasks
    return render_template(
        "inbox/index.html",
        about=summaries(overdue + tasks),
        tasks=tasks,
        overdue=overdue,
        overdue_more=bool(overdue) and not overdue_complete,
        counts=counts_for_actor(),
        role=role,
        process=process,
        text=text or "",
        sort=sort,
        sorts=SORTS,
        overdue_only=overdue_only,
        processes=process_names(),
        names=display_names({t.assignee for t in shown if t.assignee}),
        roles=sorted(actor.roles),
        now=now,
        next_url=next_url,
        first_url=first_url,
        here=request.full_path.rstrip("?"),
    )


@bp.get("/inbox/counts.json")
@login_required
def counts() -> Response:
    response = jsonify(counts_for_actor())
    response.headers["Cache-Control"] = "no-store"
    return response
