"""Reading one document — a lead, quote, sales order, invoice, repair ticket, purchase request
or order, or a customer — as its page shows it, under the pages' rules (`documents.may_list`,
`may_read_document`; 403 for a kind or a document the caller may not read, 404 for none)."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from engine.business.common import history

from ..documents import KINDS, document_context, may_list, may_read_document
from . import api_actor, bp
from .problems import Problem
from .representations import document_json


@bp.get("/documents/<kind>/<number>")
def document(kind: str, number: str) -> Any:
    """One document by kind (as in /documents/<kind>) and number (a customer: its id)."""
    actor = api_actor()
    if kind not in KINDS:
        raise Problem(404, f"no document kind {kind!r}; one of {', '.join(KINDS)}")
    if not may_list(actor, kind):
        raise Problem(403, f"{actor.username} may not read {kind}")
    context = document_context(actor, kind, number)  # NotFound -> 404
    found = context["document"]
    if not may_read_document(actor, kind, found):
        raise Problem(403, f"{actor.username} may not read this document")
    return jsonify(document_json(kind, context, history(KINDS[kind].document_type, found.id)))
