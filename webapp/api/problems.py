"""Errors of the JSON API as problem details (RFC 9457, `application/problem+json`).

Every refusal under `/api/` answers with `type`, `title`, `status`, `detail` and `instance`;
a 422 adds `errors: [{field, reason}]`, one entry per refused field (`field` is a JSON path
like `lines/0/qty`; empty for the body as a whole). A 401 carries `WWW-Authenticate: Bearer`.
Messages are English: they are read by integrators and their logs, not by office users.

`webapp/errors.py` hands every error of a request under `/api/` to `problem_for`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, json, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from engine import errors as engine_errors
from engine.db import db

API_PREFIX = "/api/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(HTTPException):
    """A refusal the API raises itself: a status, what went wrong, and the refused fields."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[engine_errors.FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.detail = detail
        self.errors = list(errors or [])
        self.extra_headers = dict(headers or {})


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def problem(
    status: int,
    detail: str,
    errors: list[engine_errors.FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    if errors is not None:
        body["errors"] = [{"field": e.field, "reason": e.message} for e in errors]
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unauthorized(detail: str, invalid_token: bool) -> Problem:
    """401 with the challenge RFC 6750 asks for (`error="invalid_token"` when one was sent)."""
    challenge = 'Bearer realm="backoffice"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def problem_for(exc: BaseException) -> Response:
    """The problem details answer for any error raised while serving an API request."""
    if isinstance(exc, Problem):
        code = exc.code or 400
        return problem(code, exc.detail, exc.errors if code == 422 else None, exc.extra_headers)
    if isinstance(exc, engine_errors.InvalidData):
        return problem(422, "The submitted data was refused; see errors.", exc.errors)
    if isinstance(exc, engine_errors.ProcessFileErrors):
        return problem(422, exc.message)
    if isinstance(exc, engine_errors.NotFound):
        return problem(404, exc.message)
    if isinstance(exc, engine_errors.Forbidden):
        return problem(403, exc.message)
    if isinstance(exc, engine_errors.Conflict | engine_errors.InvalidState | engine_errors.NotWaiting):
        return problem(409, exc.message)
    if isinstance(exc, engine_errors.EngineError):
        return problem(422, exc.message, [])
    if isinstance(exc, HTTPException) and (exc.code or 500) < 500:
        status = exc.code or 400
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if status == 405 and allowed else None
        return problem(status, _http_detail(exc), [] if status == 422 else None, headers)
    db.session.rollback()
    original = getattr(exc, "original_exception", None) or exc
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
    return problem(500, "An unexpected error happened; nothing was saved. Try again later.")


def _http_detail(exc: HTTPException) -> str:
    """The exception's own description when it was given one, else a plain English sentence."""
    if exc.description and exc.description != type(exc).description:
        return str(exc.description)
    return {
        400: "The request could not be read.",
        404: "There is no such resource, or you may not see it.",
        405: f"{request.method} is not allowed here.",
        413: "The request body is larger than this server accepts.",
    }.get(exc.code or 400, str(type(exc).description or ""))
