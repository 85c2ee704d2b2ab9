"""The JSON API (`/api/v1`): token authentication, problem details, OpenAPI 3.1.

Who calls: other systems, each with a per-user token made on the profile page
(`Authorization: Bearer bo_...`). The token's user is the actor, with the roles the user holds
at the time of the request; the same rules as in the web app apply (who may start what, who
sees which task, instance and document, four-eyes), because the same functions decide.

A session cookie never authenticates here: only the bearer token does. That is also why the
blueprint is exempt from CSRF — a forged cross-site request carries the cookie, never the token.

The routes live in the modules below by resource; `webapp/openapi.py` describes each of them
and `tests/webapp/test_openapi.py` keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from engine import Actor
from engine.errors import FieldError
from engine.models import User

from .. import csrf, tokens
from .problems import Problem, unauthorized

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

PUBLIC_ENDPOINTS = frozenset({"api.openapi"})
MAX_LIMIT = 100


@bp.before_request
def authenticate() -> None:
    """Every route but the description needs a live token of an active user (401 otherwise)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.authorization
    if header is None or header.type != "bearer" or not header.token:
        raise unauthorized("Send an API token as `Authorization: Bearer <token>`.", invalid_token=False)
    user = tokens.authenticate(header.token)
    if user is None:
        raise unauthorized("The token is unknown, revoked, or its user is deactivated.", invalid_token=True)
    g.api_user = user
    g.log_user = user.username  # the request log line names who called


def api_user() -> User:
    user: User = g.api_user
    return user


def api_actor() -> Actor:
    user = api_user()
    return Actor(user.username, user.roles)


def json_body() -> dict[str, Any]:
    """The request's JSON object ({} for an empty body). 400 when it is not JSON, 422 when it
    is JSON but not an object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Problem(422, "The body must be a JSON object.", [FieldError("", "must be a JSON object")])
    return body


def limit_arg(default: int) -> int:
    text = request.args.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise Problem(
            422,
            "Invalid query parameter.",
            [FieldError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")],
        )
    return int(text)


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API (no token needed)."""
    from ..openapi import document

    response = jsonify(document())
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/me")
def me() -> Response:
    """Who the token acts for: to check a token and the roles behind it."""
    user = api_user()
    return jsonify(username=user.username, display_name=user.display_name, roles=sorted(user.roles))


from . import documents, instances, messages, tasks  # noqa: E402, F401  (the routes)
