"""The OpenAPI 3.1 description of the JSON API, served at `/api/v1/openapi.json`.

Built here as data, next to the code it describes: the message table (`api.messages.MESSAGES`),
the document kinds (`documents.KINDS`) and the instance statuses (`instances.STATUSES`) come
from the modules that decide them, so the description cannot drift from them.
`tests/webapp/test_openapi.py` checks every route of the app under `/api/v1` against this
document (and back), validates it as OpenAPI 3.1, and the API tests validate real responses
against the schemas below.
"""

from __future__ import annotations

import copy
from typing import Any

VERSION = "1.0.0"
JSON = "application/json"
PROBLEM = "application/problem+json"

DESCRIPTION = """\
The back office's processes for other systems: start a process (e.g. a web form creating a
lead), work on tasks (list, claim, complete with the same validation and four-eyes rule as the
web app), post messages from outside (`payment_received`), read instances and documents.

**Authentication.** Every call but this description needs a per-user API token, created on the
profile page of the web app (shown once, kept only as a hash): `Authorization: Bearer bo_...`.
The token acts as its user with the roles the user holds at the time of the call. A browser
session cookie is not accepted.

**Errors** are problem details (RFC 9457, `application/problem+json`) with `type`, `title`,
`status` and `detail`; a 422 lists each refused field in `errors` as `{field, reason}`, `field`
being a path like `lines/0/qty`.

**Formats.** Amounts are decimal strings (`"15480.00"`), times ISO 8601 with offset, days
`YYYY-MM-DD`. Lists come in pages: pass `next_cursor` back as `cursor` for the next one.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object: every property present (null where it has no value), no others."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
INTEGER = {"type": "integer"}

PROBLEM_RESPONSES = {
    "400": "The body is not valid JSON.",
    "401": "No token, or a token that is unknown, revoked or of a deactivated user.",
    "403": "The caller's roles do not allow this, or the four-eyes rule excludes them.",
    "404": "No such object, or one the caller may not see.",
    "409": "The object's state does not allow this (completed, claimed by someone else, "
    "nobody waiting for the message, instance suspended); nothing was changed.",
    "413": "The body is larger than the server accepts (2 MB).",
    "422": "Refused data or parameters; `errors` names each field and the reason.",
}


def _problem_response(status: str, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or PROBLEM_RESPONSES[status],
        "content": {PROBLEM: {"schema": _ref("ValidationProblem" if status == "422" else "Problem")}},
        **(
            {"headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}}
            if status == "401"
            else {}
        ),
    }


def _json_response(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _operation(
    operation_id: str,
    summary: str,
    ok: tuple[str, dict[str, Any]],
    problems: tuple[str, ...],
    *,
    tag: str,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str = "",
    public: bool = False,
) -> dict[str, Any]:
    status, response = ok
    responses = {status: response}
    for code in PROBLEM_RESPONSES:
        if code in problems or (code == "401" and not public) or (code == "413" and body is not None):
            responses[code] = _problem_response(code)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _json_body(schema: dict[str, Any], description: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


def _message_schema_name(message: str) -> str:
    """payment_received -> PaymentReceived."""
    return "".join(part.capitalize() for part in message.split("_"))


TASK_ID = _path_param("task_id", INTEGER, "The task's id.")
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}, "Page size.")


def _schemas() -> dict[str, Any]:
    from .api.messages import MESSAGES
    from .documents import KINDS
    from .instances import STATUSES

    task_status = {"type": "string", "enum": ["open", "claimed", "completed", "suspended", "cancelled"]}
    task = {
        "id": INTEGER,
        "url": STRING,
        "instance_id": INTEGER,
        "process_id": STRING,
        "element_id": {"type": "string", "description": "The BPMN user task id (= its form)."},
        "name": {"type": "string", "description": "The BPMN task name."},
        "title": {"type": "string", "description": "The task's title, with its document."},
        "role": _nullable(STRING),
        "assignee": _nullable(STRING),
        "status": task_status,
        "priority": INTEGER,
        "due_at": _nullable(TIME),
        "created_at": TIME,
        "completed_by": _nullable(STRING),
        "completed_at": _nullable(TIME),
        "business_key": _nullable(STRING),
        "document": _nullable(_ref("DocumentRef")),
        "may_act": {"type": "boolean", "description": "Whether the caller may claim or complete it."},
    }
    instance = {
        "id": INTEGER,
        "url": STRING,
        "process_id": STRING,
        "version": {"type": "integer", "description": "The process version it runs on."},
        "status": {"type": "string", "enum": list(STATUSES)},
        "business_key": _nullable(STRING),
        "started_by": STRING,
        "started_at": TIME,
        "updated_at": TIME,
        "completed_at": _nullable(TIME),
    }
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "description": "Problem details (RFC 9457).",
            "properties": {
                "type": {"type": "string", "description": "`about:blank`: the status says what happened."},
                "title": {"type": "string", "description": "The HTTP status phrase."},
                "status": {"type": "integer"},
                "detail": {"type": "string", "description": "What went wrong, for a person to read."},
                "instance": {"type": "string", "description": "The path of the refused request."},
            },
            "required": ["type", "title", "status", "detail"],
        },
        "FieldProblem": {
            "type": "object",
            "properties": {
                "field": {
                    "type": "string",
                    "description": "The refused field as a path (`lines/0/qty`); empty: the body.",
                },
                "reason": {"type": "string"},
            },
            "required": ["field", "reason"],
            "additionalProperties": False,
        },
        "ValidationProblem": {
            "allOf": [_ref("Problem")],
            "type": "object",
            "properties": {"errors": {"type": "array", "items": _ref("FieldProblem")}},
            "required": ["errors"],
        },
        "Me": {
            "type": "object",
            "properties": {
                "username": STRING,
                "display_name": STRING,
                "roles": {"type": "array", "items": STRING},
            },
            "required": ["username", "display_name", "roles"],
            "additionalProperties": False,
        },
        "DocumentRef": {
            "type": "object",
            "description": "The document a task is about.",
            "properties": {
                "type": {"type": "string", "description": "lead, quote, sales_order, invoice, ..."},
                "number": STRING,
                "url": _nullable({"type": "string", "description": "Its API address, if readable."}),
            },
            "required": ["type", "number", "url"],
            "additionalProperties": False,
        },
        "Task": _object(task),
        "TaskDetail": _object(
            {
                **task,
                "form": _nullable(
                    {
                        "type": "object",
                        "description": "The JSON Schema (2020-12) the body of `complete` must match.",
                    }
                ),
            },
            "A task with its form.",
        ),
        "TaskPage": {
            "type": "object",
            "properties": {
                "tasks": {"type": "array", "items": _ref("Task")},
                "next_cursor": _nullable(STRING),
            },
            "required": ["tasks", "next_cursor"],
            "additionalProperties": False,
        },
        "Incident": {
            "type": "object",
            "properties": {
                "id": INTEGER,
                "element_id": _nullable(STRING),
                "message": STRING,
                "created_at": TIME,
            },
            "required": ["id", "element_id", "message", "created_at"],
            "additionalProperties": False,
        },
        "Instance": _object(instance),
        "InstanceDetail": _object(
            {
                **instance,
                "tasks": {
                    "type": "array",
                    "items": _ref("Task"),
                    "description": "Its open (and suspended) tasks.",
                },
                "incidents": {"type": "array", "items": _ref("Incident"), "description": "Open incidents."},
                "data": _nullable(
                    {
                        "type": "object",
                        "description": "The instance's data: for directors, administrators and "
                        "whoever has or had a task of it; null for others.",
                    }
                ),
            },
            "An instance with its open tasks, open incidents and data.",
        ),
        "InstancePage": {
            "type": "object",
            "properties": {
                "instances": {"type": "array", "items": _ref("Instance")},
                "next_cursor": _nullable(STRING),
            },
            "required": ["instances", "next_cursor"],
            "additionalProperties": False,
        },
        "Completion": {
            "type": "object",
            "properties": {"task": _ref("Task"), "instance": _ref("InstanceDetail")},
            "required": ["task", "instance"],
            "additionalProperties": False,
        },
        "FormData": {
            "type": "object",
            "description": "The fields of the form (the start event's or the task's JSON Schema).",
        },
        "MessageResult": {
            "type": "object",
            "properties": {
                "message": STRING,
                "instances": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": INTEGER, "status": {"type": "string", "enum": list(STATUSES)}},
                        "required": ["id", "status"],
                        "additionalProperties": False,
                    },
                    "description": "The instances that received the message, with their status after it.",
                },
            },
            "required": ["message", "instances"],
            "additionalProperties": False,
        },
        "RelatedDocument": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": list(KINDS)},
                "number": STRING,
                "url": STRING,
            },
            "required": ["kind", "number", "url"],
            "additionalProperties": False,
        },
        "Party": {
            "type": "object",
            "properties": {"id": INTEGER, "name": STRING},
            "required": ["id", "name"],
            "additionalProperties": False,
        },
        "Document": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": list(KINDS)},
                "number": {"type": "string", "description": "Its number (a customer: its id)."},
                "status": _nullable(STRING),
                "url": STRING,
                "fields": {"type": "object", "description": "Every field of the document."},
                "customer": _nullable(_ref("Party")),
                "vendor": _nullable(_ref("Party")),
                "contact": _nullable(
                    {
                        "type": "object",
                        "properties": {
                            "name": STRING,
                            "email": _nullable(STRING),
                            "phone": _nullable(STRING),
                        },
                        "required": ["name", "email", "phone"],
                    }
                ),
                "parts": {
                    "type": "object",
                    "description": "Lines, payments, contact log, deliveries, goods receipts, "
                    "vendor bills or contacts, as the kind has them.",
                    "additionalProperties": {"type": "array", "items": {"type": "object"}},
                },
                "related": {"type": "array", "items": _ref("RelatedDocument")},
                "instance": _nullable(
                    {
                        "type": "object",
                        "properties": {"id": INTEGER, "url": STRING},
                        "required": ["id", "url"],
                        "additionalProperties": False,
                    }
                ),
                "history": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "at": TIME,
                            "actor": STRING,
                            "action": STRING,
                            "detail": {"type": "object"},
                        },
                        "required": ["at", "actor", "action", "detail"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": [
                "kind",
                "number",
                "status",
                "url",
                "fields",
                "customer",
                "vendor",
                "contact",
                "parts",
                "related",
                "instance",
                "history",
            ],
            "additionalProperties": False,
        },
    }
    for message in MESSAGES.values():
        schemas[_message_schema_name(message.name)] = copy.deepcopy(message.body)
    return schemas


def _paths() -> dict[str, Any]:
    from .api.messages import MESSAGES
    from .documents import KINDS
    from .instances import STATUSES
    from .tasks import START_ROLES

    message_schemas = [_message_schema_name(name) for name in MESSAGES]
    return {
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This description",
                ("200", _json_response("The OpenAPI 3.1 document.", {"type": "object"})),
                (),
                tag="meta",
                public=True,
            )
        },
        "/me": {
            "get": _operation(
                "getMe",
                "Who the token acts for",
                ("200", _json_response("The token's user and their roles.", _ref("Me"))),
                (),
                tag="meta",
            )
        },
        "/processes/{process_id}/instances": {
            "post": _operation(
                "startProcess",
                "Start a process with the data of its start form",
                (
                    "201",
                    _json_response(
                        "Started and run to its first wait; `tasks` are the tasks now open.",
                        _ref("InstanceDetail"),
                        headers={
                            "Location": {"description": "The new instance.", "schema": {"type": "string"}}
                        },
                    ),
                ),
                ("400", "403", "404", "422"),
                tag="processes",
                description="Who may start which process is the web app's rule ("
                + "; ".join(
                    f"{pid}: {', '.join(sorted(roles)) if roles else 'everyone'}"
                    for pid, roles in START_ROLES.items()
                )
                + "). The body is validated against the start form (e.g. "
                "forms/lead_to_invoice/capture_lead.json); undeclared fields are refused.",
                parameters=[
                    _path_param("process_id", STRING, "lead_to_invoice, repair_ticket, purchase_approval."),
                    _query(
                        "business_key",
                        {"type": "string", "maxLength": 200},
                        "Your own key for the instance (e.g. the id of the web form submission).",
                    ),
                ],
                body=_json_body(_ref("FormData"), "The start form's fields."),
            )
        },
        "/instances": {
            "get": _operation(
                "listInstances",
                "Process instances the caller may see, newest first",
                ("200", _json_response("One page.", _ref("InstancePage"))),
                ("422",),
                tag="instances",
                parameters=[
                    _query("process_id", STRING, "Only this process."),
                    _query("version", INTEGER, "Only this version."),
                    _query("status", {"type": "string", "enum": list(STATUSES)}, "Only this status."),
                    _query("business_key", STRING, "Business key contains (case-insensitive)."),
                    _query(
                        "started_by", STRING, "Started by this username (or a display name containing it)."
                    ),
                    _query("cursor", STRING, "`next_cursor` of the previous page."),
                    LIMIT,
                ],
            )
        },
        "/instances/{instance_id}": {
            "get": _operation(
                "getInstance",
                "One process instance",
                (
                    "200",
                    _json_response(
                        "Status, version, open tasks and incidents, data.", _ref("InstanceDetail")
                    ),
                ),
                ("404",),
                tag="instances",
                parameters=[_path_param("instance_id", INTEGER, "The instance's id.")],
            )
        },
        "/tasks": {
            "get": _operation(
                "listTasks",
                "My tasks",
                ("200", _json_response("One page of the caller's tasks.", _ref("TaskPage"))),
                ("422",),
                tag="tasks",
                description="Assigned to the caller, or open to one of their roles and not excluding them.",
                parameters=[
                    _query("role", STRING, "Only tasks of this role (one the caller holds)."),
                    _query("process_id", STRING, "Only tasks of this process."),
                    _query("overdue", {"type": "boolean"}, "true: only overdue; false: only not overdue."),
                    _query("q", STRING, "Text in the title, business key or document number."),
                    _query(
                        "sort",
                        {"type": "string", "enum": ["due", "priority", "age"], "default": "due"},
                        "Order.",
                    ),
                    _query("cursor", STRING, "`next_cursor` of the previous page."),
                    LIMIT,
                ],
            )
        },
        "/tasks/{task_id}": {
            "get": _operation(
                "getTask",
                "One task with its form",
                ("200", _json_response("The task and the JSON Schema of its form.", _ref("TaskDetail"))),
                ("403", "404"),
                tag="tasks",
                parameters=[TASK_ID],
            )
        },
        "/tasks/{task_id}/claim": {
            "post": _operation(
                "claimTask",
                "Claim a task",
                ("200", _json_response("The task, now the caller's.", _ref("Task"))),
                ("403", "404", "409"),
                tag="tasks",
                parameters=[TASK_ID],
            )
        },
        "/tasks/{task_id}/unclaim": {
            "post": _operation(
                "unclaimTask",
                "Give a claimed task back to its role",
                ("200", _json_response("The task, open to its role again.", _ref("Task"))),
                ("403", "404", "409"),
                tag="tasks",
                parameters=[TASK_ID],
            )
        },
        "/tasks/{task_id}/complete": {
            "post": _operation(
                "completeTask",
                "Complete a task with its form's data",
                (
                    "200",
                    _json_response("The completed task and its instance afterwards.", _ref("Completion")),
                ),
                ("400", "403", "404", "409", "422"),
                tag="tasks",
                description="Validated against the task's form as in the web app; the four-eyes rule "
                "answers 403, a task completed meanwhile 409.",
                parameters=[TASK_ID],
                body=_json_body(_ref("FormData"), "The form's fields ({} for a task without a form)."),
            )
        },
        "/messages/{message_name}": {
            "post": _operation(
                "postMessage",
                "Deliver a message to the instances waiting for it",
                ("200", _json_response("Delivered.", _ref("MessageResult"))),
                ("400", "403", "404", "409", "422"),
                tag="messages",
                description="409 when no instance waits for it with this correlation (wrong number, "
                "already paid). "
                + " ".join(f"`{m.name}`: posted by {', '.join(sorted(m.roles))}." for m in MESSAGES.values()),
                parameters=[
                    _path_param("message_name", {"type": "string", "enum": list(MESSAGES)}, "The message.")
                ],
                body=_json_body(
                    {"oneOf": [_ref(name) for name in message_schemas]},
                    "The correlation values and the payload (the schema of the named message).",
                ),
            )
        },
        "/documents/{kind}/{number}": {
            "get": _operation(
                "getDocument",
                "One document",
                ("200", _json_response("The document with its parts, links and history.", _ref("Document"))),
                ("403", "404"),
                tag="documents",
                parameters=[
                    _path_param("kind", {"type": "string", "enum": list(KINDS)}, "The kind of document."),
                    _path_param("number", STRING, "Its number (a customer: its id)."),
                ],
            )
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `/api/v1`."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Back office API", "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "processes", "description": "Starting processes."},
            {"name": "tasks", "description": "Working on tasks."},
            {"name": "messages", "description": "Messages from outside."},
            {"name": "instances", "description": "Process instances."},
            {"name": "documents", "description": "Back-office documents."},
            {"name": "meta", "description": "The token and this description."},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token from the profile page (`bo_...`).",
                }
            },
            "headers": {
                "WWW-Authenticate": {
                    "description": 'The challenge: `Bearer realm="backoffice"`, with '
                    '`error="invalid_token"` when the token sent was refused.',
                    "schema": {"type": "string"},
                }
            },
            "schemas": _schemas(),
        },
    }
