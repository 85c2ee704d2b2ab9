"""Messages from outside delivered to the instances waiting for them.

The API accepts the messages listed in `MESSAGES`, each with the roles that may post it and
JSON Schemas for its correlation and payload — checked before the engine sees the message,
so a malformed payload is refused (422) and never reaches a waiting process:

| message            | who may post it                            | correlation      |
|--------------------|--------------------------------------------|------------------|
| `payment_received` | `accounting` (who registers payments in the UI) | `invoice_number` |
| `quote_accepted`   | `sales` (who records the customer's decision)   | `quote_number`   |

A message nobody waits for (wrong number, invoice already paid) answers 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import jsonify
from jsonschema import Draft202012Validator, FormatChecker

from engine.errors import FieldError, InvalidData

from ..documents import PAYMENT_ROLES
from ..inbox import runtime
from . import api_actor, bp, json_body
from .problems import Problem

NUMBER = {"type": "string", "minLength": 1, "maxLength": 40}


@dataclass(frozen=True)
class Message:
    name: str
    roles: frozenset[str]
    correlation: dict[str, Any]  # JSON Schema
    payload: dict[str, Any]  # JSON Schema
    description: str
    today_by_default: tuple[str, ...] = ()  # payload fields that are today's date when left out

    @property
    def body(self) -> dict[str, Any]:
        """The JSON Schema of a request's body (also the message's schema in the OpenAPI document)."""
        return {
            "type": "object",
            "description": f"`{self.name}`: {self.description} Posted by: {', '.join(sorted(self.roles))}.",
            "properties": {"correlation": self.correlation, "payload": self.payload},
            "required": ["correlation"],
            "additionalProperties": False,
        }


MESSAGES: dict[str, Message] = {
    m.name: m
    for m in (
        Message(
            "payment_received",
            PAYMENT_ROLES,
            {
                "type": "object",
                "properties": {"invoice_number": NUMBER},
                "required": ["invoice_number"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "invoice_number": {**NUMBER, "description": "When given, the correlation's number."},
                    "amount": {
                        "type": "string",
                        "pattern": r"^\d{1,12}(\.\d{1,2})?$",
                        "description": "The amount received, a decimal string like 1250.00.",
                    },
                    "paid_on": {
                        "type": "string",
                        "format": "date",
                        "description": "The day the money arrived (default: today).",
                    },
                    "reference": {"type": "string", "minLength": 1, "maxLength": 200},
                },
                "required": ["amount", "reference"],
                "additionalProperties": False,
            },
            "Money received for an invoice of lead_to_invoice. A payment books once per bank "
            "reference; the invoice is paid when its balance reaches zero.",
            today_by_default=("paid_on",),
        ),
        Message(
            "quote_accepted",
            frozenset({"sales"}),
            {
                "type": "object",
                "properties": {"quote_number": NUMBER},
                "required": ["quote_number"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "quote_number": {**NUMBER, "description": "When given, the correlation's number."},
                    "accepted_by": {"type": "string", "minLength": 1, "maxLength": 200},
                    "customer_reference": {"type": "string", "maxLength": 100},
                },
                "required": ["accepted_by"],
                "additionalProperties": False,
            },
            "The customer accepted a sent quote (e.g. through a customer portal): the quote's "
            "decision task is replaced by the order entry task.",
        ),
    )
}


def _errors(schema: dict[str, Any], value: Any) -> list[FieldError]:
    """Each refused field of `value`, named by its path (`payload/amount`)."""
    found = []
    for error in Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(value):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            found += [
                FieldError("/".join([*path, name]), "this field is required")
                for name in error.validator_value
                if name not in error.instance
            ]
        elif error.validator == "additionalProperties":
            declared = error.schema.get("properties", {})
            found += [
                FieldError("/".join([*path, name]), "this field is not accepted")
                for name in sorted(error.instance)
                if name not in declared
            ]
        else:
            found.append(FieldError("/".join(path), error.message))
    return found


def _check(message: Message, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The correlation and payload of a body that matches the message's schema (422 otherwise)."""
    problems = _errors(message.body, body)
    if not problems:
        correlation, payload = body["correlation"], body.get("payload", {})
        problems = [
            FieldError(f"payload/{key}", f"differs from correlation/{key}")
            for key, value in correlation.items()
            if key in payload and payload[key] != value
        ]
    if problems:
        raise Problem(422, "The message was refused; see errors.", problems)
    return body["correlation"], body.get("payload", {})


@bp.post("/messages/<message_name>")
def post_message(message_name: str) -> Any:
    """Deliver a message to the instance(s) waiting for it with these correlation values."""
    actor = api_actor()
    message = MESSAGES.get(message_name)
    if message is None:
        raise Problem(404, f"message {message_name!r} is not accepted here; known: {', '.join(MESSAGES)}")
    if not message.roles & actor.roles:
        posters = ", ".join(sorted(message.roles))
        raise Problem(403, f"{actor.username} may not post {message_name}; it is posted by: {posters}")
    correlation, payload = _check(message, json_body())
    engine = runtime()
    today = engine.now().date().isoformat()
    payload = {**correlation, **{name: today for name in message.today_by_default}, **payload}
    try:
        delivered = engine.correlate_message(message_name, correlation, payload, actor)
    except InvalidData as exc:  # the receiving step refused the payload: name it as the body does
        raise Problem(
            422,
            "The message was refused; see errors.",
            [FieldError(f"payload/{e.field}" if e.field else "payload", e.message) for e in exc.errors],
        ) from None
    return jsonify(
        message=message_name,
        instances=[{"id": i, "status": engine.instance(i).status} for i in delivered],
    )
