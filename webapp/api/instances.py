"""Starting a process (a web form creating a lead, a repair ticket, a purchase request) and
reading process instances.

Who may start which process is the web app's rule (`tasks.START_ROLES` through `may_start`);
who sees which instance, and its data, is the instance pages' rule (`instances.visible_to`,
`may_see_instance`, `may_see_data`)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for
from sqlalchemy import select

from engine.db import db
from engine.errors import FieldError
from engine.models import ProcessInstance

from ..inbox import runtime
from ..instances import STATUSES, Filters, may_see_instance, visible_to
from ..tasks import may_start, start_roles
from . import api_actor, bp, json_body, limit_arg
from .problems import Problem
from .representations import instance_detail_json, instance_json

PAGE_SIZE = 25
MAX_BUSINESS_KEY = 200


def _refused(field: str, reason: str) -> Problem:
    return Problem(422, "Invalid query parameter.", [FieldError(field, reason)])


@bp.post("/processes/<process_id>/instances")
def start_process(process_id: str) -> Any:
    """Start the latest version of a process with the data of its start form."""
    actor = api_actor()
    roles = start_roles()
    if process_id not in roles:
        raise Problem(404, f"process {process_id!r} is not started through the web app or this API")
    if not may_start(actor, process_id):
        allowed = ", ".join(sorted(roles[process_id] or ()))
        raise Problem(403, f"{actor.username} may not start {process_id}; it is started by: {allowed}")
    business_key = request.args.get("business_key") or None
    if business_key is not None and len(business_key) > MAX_BUSINESS_KEY:
        raise _refused("business_key", f"at most {MAX_BUSINESS_KEY} characters")
    data = json_body()
    engine = runtime()
    engine.start_form_ref(process_id)  # NotFound (not deployed) -> 404 before anything is read
    instance_id = engine.start_process(process_id, data, actor, business_key=business_key)
    body = instance_detail_json(engine.instance(instance_id), actor)
    response: Response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.instance", instance_id=instance_id)
    return response


@bp.get("/instances")
def list_instances() -> Any:
    """The instances the caller may see, newest first, a page at a time."""
    actor = api_actor()
    args = request.args
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise _refused("status", "one of " + ", ".join(STATUSES))
    version = args.get("version") or None
    if version is not None and not (version.isdigit() and len(version) <= 6):
        raise _refused("version", "a whole number")
    cursor = args.get("cursor") or None
    if cursor is not None and not (cursor.isdigit() and len(cursor) <= 12):
        raise _refused("cursor", "not a valid page cursor")
    filters = Filters(
        process=(args.get("process_id") or "").strip()[:200] or None,
        version=int(version) if version else None,
        status=status,
        business_key=(args.get("business_key") or "").strip()[:200] or None,
        started_by=(args.get("started_by") or "").strip()[:80] or None,
    )
    limit = limit_arg(PAGE_SIZE)
    q = filters.apply(select(ProcessInstance).where(visible_to(actor)))
    if cursor is not None:
        q = q.where(ProcessInstance.id < int(cursor))
    rows = list(db.session.scalars(q.order_by(ProcessInstance.id.desc()).limit(limit + 1)))
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return jsonify(instances=[instance_json(r) for r in rows[:limit]], next_cursor=next_cursor)


@bp.get("/instances/<int:instance_id>")
def instance(instance_id: int) -> Any:
    """One instance: status, version, open tasks, open incidents, and its data when allowed."""
    actor = api_actor()
    row = runtime().instance(instance_id)  # NotFound -> 404
    if not may_see_instance(actor, row):
        raise Problem(404, f"process instance {instance_id} does not exist")
    return jsonify(instance_detail_json(row, actor))
