"""The front page: what is deployed and waiting, and in demo mode who can sign in."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from engine.db import db
from engine.models import HumanTask, Incident, ProcessDefinition, ProcessInstance

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    latest = (
        select(ProcessDefinition.process_id, func.max(ProcessDefinition.version).label("version"))
        .group_by(ProcessDefinition.process_id)
        .order_by(ProcessDefinition.process_id)
    )
    processes = db.session.execute(latest).all()
    instances: dict[str, int] = {
        row.status: row.n
        for row in db.session.execute(
            select(ProcessInstance.status, func.count().label("n")).group_by(ProcessInstance.status)
        )
    }
    open_tasks = db.session.execute(
        select(HumanTask.role, func.count())
        .where(HumanTask.status.in_(("open", "claimed")))
        .group_by(HumanTask.role)
        .order_by(HumanTask.role)
    ).all()
    incidents = db.session.scalar(select(func.count()).where(Incident.resolved_at.is_(None)))
    demo_users = None
    if current_app.config.get("DEMO_MODE"):
        from .demo import DEMO_PASSWORD, DEMO_USERS

        demo_users = [(u, ", ".join(r), name) for u, r, name in DEMO_USERS], DEMO_PASSWORD
    return render_template(
        "home/index.html",
        processes=processes,
        instances=instances,
        open_tasks=open_tasks,
        incidents=incidents,
        demo_users=demo_users,
    )
