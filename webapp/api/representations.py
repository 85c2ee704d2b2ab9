"""The JSON shapes the API answers with: tasks, process instances and documents.

Amounts are decimal strings ("15480.00"), times ISO 8601 with their offset (UTC), days
`YYYY-MM-DD`. Every shape is described in `webapp/openapi.py`; a test holds them to it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import request, url_for
from sqlalchemy import inspect, select

from engine import Actor, TaskView
from engine.db import db
from engine.models import HumanTask, ProcessInstance

from ..documents import SLUG_OF_TYPE, may_list
from ..inbox import runtime
from ..instances import may_see_data
from ..tasks import readable_data

OPEN_TASK_STATES = ("open", "claimed", "suspended")


def jsonable(value: Any) -> Any:
    """`value` with decimals, days and times as the strings the API promises."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _time(value: datetime | None) -> str | None:
    return jsonable(value) if value is not None else None


# -- tasks ------------------------------------------------------------------------------------------
def task_json(task: TaskView | HumanTask, actor: Actor) -> dict[str, Any]:
    document = None
    if task.document_type and task.document_key:
        slug = SLUG_OF_TYPE.get(task.document_type)
        document = {
            "type": task.document_type,
            "number": task.document_key,
            "url": (
                url_for("api.document", kind=slug, number=task.document_key)
                if slug and may_list(actor, slug)
                else None
            ),
        }
    return {
        "id": task.id,
        "url": url_for("api.task", task_id=task.id),
        "instance_id": task.instance_id,
        "process_id": task.process_id,
        "element_id": task.spec_id,
        "name": task.name or "",
        "title": task.title,
        "role": task.role,
        "assignee": task.assignee,
        "status": task.status,
        "priority": task.priority,
        "due_at": _time(task.due_at),
        "created_at": _time(task.created_at),
        "completed_by": task.completed_by,
        "completed_at": _time(task.completed_at),
        "business_key": task.business_key,
        "document": document,
        "may_act": task.status in ("open", "claimed") and runtime().may_act(actor, task),
    }


def task_detail_json(task: TaskView, actor: Actor) -> dict[str, Any]:
    """A task with the JSON Schema of its form (what `complete` accepts; null: no data)."""
    body = task_json(task, actor)
    body["form"] = runtime().forms.schema(task.form_ref) if task.form_ref else None
    return body


# -- instances --------------------------------------------------------------------------------------
def instance_json(row: ProcessInstance) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": url_for("api.instance", instance_id=row.id),
        "process_id": row.process_id,
        "version": row.process_version,
        "status": row.status,
        "business_key": row.business_key,
        "started_by": row.started_by,
        "started_at": _time(row.started_at),
        "updated_at": _time(row.updated_at),
        "completed_at": _time(row.completed_at),
    }


def instance_detail_json(row: ProcessInstance, actor: Actor) -> dict[str, Any]:
    """The instance with its open tasks, its open incidents and its data — the data only for
    those `instances.may_see_data` allows (else null)."""
    tasks = db.session.scalars(
        select(HumanTask)
        .where(HumanTask.instance_id == row.id, HumanTask.status.in_(OPEN_TASK_STATES))
        .order_by(HumanTask.id)
    ).all()
    incidents = runtime().incidents(row.id)
    body = instance_json(row)
    body["tasks"] = [task_json(t, actor) for t in tasks]
    body["incidents"] = [
        {
            "id": i.id,
            "element_id": i.spec_id,
            "message": i.message,
            "created_at": _time(i.created_at),
        }
        for i in incidents
    ]
    body["data"] = (
        jsonable(readable_data(runtime().instance_data(row.id))) if may_see_data(actor, row) else None
    )
    return body


# -- documents --------------------------------------------------------------------------------------
PARTS_OF_DOCUMENT = ("lines", "contact_log", "payments")  # relationships of the document itself
PARTS_OF_CONTEXT = ("deliveries", "receipts", "bills", "contacts")  # found beside it by its page


def record(obj: Any) -> dict[str, Any]:
    """Every column of a database row, and its own lines when it has them."""
    mapper = inspect(obj).mapper
    body = {attr.key: jsonable(getattr(obj, attr.key)) for attr in mapper.column_attrs}
    if "lines" in mapper.relationships:
        body["lines"] = [record(line) for line in obj.lines]
    return body


def _party(obj: Any) -> dict[str, Any] | None:
    return {"id": obj.id, "name": obj.name} if obj is not None else None


def document_json(slug: str, context: dict[str, Any], history: list[Any]) -> dict[str, Any]:
    """A document from what its page shows (`documents.document_context`)."""
    document = context["document"]
    mapper = inspect(document).mapper
    fields = {
        attr.key: jsonable(getattr(document, attr.key))
        for attr in mapper.column_attrs
        if attr.key not in ("id", "number", "status")
    }
    parts: dict[str, Any] = {}
    for name in PARTS_OF_DOCUMENT:
        if name in mapper.relationships:
            parts[name] = [record(item) for item in getattr(document, name)]
    for name in PARTS_OF_CONTEXT:
        if name in context:
            parts[name] = [record(item) for item in context[name]]
    instance_id = context.get("instance_id")
    visible_instance = bool(instance_id and context.get("instance_url"))
    contact = getattr(document, "contact", None)
    return {
        "kind": slug,
        "number": str(context.get("number") or document.id),
        "status": getattr(document, "status", None),
        "url": request.path,
        "fields": fields,
        "customer": _party(context.get("customer")),
        "vendor": _party(context.get("vendor")),
        "contact": (
            {"name": contact.name, "email": contact.email, "phone": contact.phone} if contact else None
        ),
        "parts": parts,
        "related": [r for r in (_related(link) for link in context.get("links", [])) if r is not None],
        "instance": (
            {"id": instance_id, "url": url_for("api.instance", instance_id=instance_id)}
            if visible_instance
            else None
        ),
        "history": [
            {"at": _time(e.at), "actor": e.actor, "action": e.action, "detail": jsonable(e.detail or {})}
            for e in history
        ],
    }


def _related(link: dict[str, Any]) -> dict[str, Any] | None:
    """A related document the page links to, as its API address (the page's link is matched
    against the app's routes, never taken apart by hand)."""
    url_rule = request.url_rule
    if url_rule is None or url_rule.map is None:
        return None
    adapter = url_rule.map.bind_to_environ(request.environ)
    path = str(link["url"])
    if request.script_root and path.startswith(request.script_root):
        path = path[len(request.script_root) :]
    try:
        endpoint, values = adapter.match(path, method="GET")
    except Exception:  # a link that is not a document page: nothing to say about it
        return None
    if endpoint != "documents.detail":
        return None
    return {
        "kind": values["slug"],
        "number": values["key"],
        "url": url_for("api.document", kind=values["slug"], number=values["key"]),
    }
