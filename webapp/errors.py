"""Error pages in the product's style, and the engine's exceptions mapped to HTTP — once, here.

Never a stack trace: an unexpected error is logged, its transaction rolled back, and the user
sees a calm 500 page. Under `/api/` every error answers as problem details JSON instead
(`webapp/api/problems.py`), unknown routes and refused methods included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine import errors as engine_errors
from engine.db import db

from .api.problems import is_api_request, problem_for

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)
H = TypeVar("H", bound=Callable[[Any], Any])


def api_problems(handler: H) -> H:
    """Requests under /api/ get problem details JSON; every other request the handler's page."""

    @wraps(handler)
    def wrapped(exc: Any) -> Any:
        return problem_for(exc) if is_api_request() else handler(exc)

    return cast(H, wrapped)


TITLES = {
    400: _l("The request could not be read"),
    401: _l("Please sign in"),
    403: _l("You may not do this"),
    404: _l("Not found"),
    405: _l("Not allowed this way"),
    409: _l("Changed meanwhile"),
    413: _l("Too large"),
    422: _l("Not accepted"),
    429: _l("Too many attempts"),
    500: _l("Something went wrong"),
}
EXPLANATIONS = {
    400: _l("The page sent something this site cannot read. Go back, reload the page and try again."),
    401: _l("This page is for signed-in users."),
    403: _l("Your roles do not allow this. If you think they should, ask an administrator."),
    404: _l("There is nothing here, or nothing you may see."),
    405: _l("This address does not accept this kind of request."),
    409: _l("Someone else changed this meanwhile; nothing was changed by you."),
    413: _l("What you sent is larger than this site accepts."),
    422: _l("What you sent could not be accepted."),
    429: _l("Wait a moment before you try again."),
    500: _l(
        "An unexpected error happened. Nothing was saved. Please try again; if it happens again, tell "
        "your administrator the time it happened."
    ),
}


def wants_json() -> bool:
    return request.path.endswith(".json") or request.accept_mimetypes.best == "application/json"


def error_page(status: int, message: str | None = None, details: list[str] | None = None) -> Any:
    """Render the error page (or a small JSON answer for JSON endpoints)."""
    title = str(TITLES.get(status, TITLES[500 if status >= 500 else 400]))
    if wants_json():
        return jsonify(error=title, message=message or "", details=details or []), status
    explanation = message or str(EXPLANATIONS.get(status, ""))
    try:
        return render_template(
            "errors/error.html",
            status=status,
            title=title,
            explanation=explanation,
            details=details or [],
            minimal=status >= 500,
        ), status
    except Exception:  # the error page must not fail in turn
        log.exception("error page %s could not be rendered", status)
        return Response(f"{status} {title}", status=status, mimetype="text/plain")


@bp.app_errorhandler(CSRFError)
@api_problems
def csrf_error(exc: CSRFError) -> Any:
    return error_page(
        400, _("The form was not sent from this site or has expired. Reload the page and send it again.")
    )


@bp.app_errorhandler(HTTPException)
@api_problems
def http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    if status >= 500:
        db.session.rollback()
        original = getattr(exc, "original_exception", None)
        if original is not None:
            log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return error_page(status)
    own = exc.description if exc.description != type(exc).description else None
    return error_page(status, own)


@bp.app_errorhandler(engine_errors.NotFound)
@api_problems
def not_found(exc: engine_errors.NotFound) -> Any:
    return error_page(404)


@bp.app_errorhandler(engine_errors.Forbidden)
@api_problems
def forbidden(exc: engine_errors.Forbidden) -> Any:
    return error_page(403)


@bp.app_errorhandler(engine_errors.Conflict)
@api_problems
def conflict(exc: engine_errors.Conflict) -> Any:
    return error_page(409, exc.message)


@bp.app_errorhandler(engine_errors.InvalidState)
@api_problems
def invalid_state(exc: engine_errors.InvalidState) -> Any:
    return error_page(409, exc.message)


@bp.app_errorhandler(engine_errors.NotWaiting)
@api_problems
def not_waiting(exc: engine_errors.NotWaiting) -> Any:
    return error_page(409, exc.message)


@bp.app_errorhandler(engine_errors.InvalidData)
@api_problems
def invalid_data(exc: engine_errors.InvalidData) -> Any:
    return error_page(422, None, [str(e) for e in exc.errors])


@bp.app_errorhandler(engine_errors.ProcessFileErrors)
@api_problems
def process_file_errors(exc: engine_errors.ProcessFileErrors) -> Any:
    return error_page(422, None, [str(e) for e in exc.errors])


@bp.app_errorhandler(engine_errors.EngineError)
@api_problems
def engine_error(exc: engine_errors.EngineError) -> Any:
    return error_page(422, exc.message)
