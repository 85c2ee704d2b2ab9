"""Liveness and readiness."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from engine.db import db

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # the database is what makes us useful
        return jsonify(status="error", database=str(exc)), 503
    engine = current_app.extensions["engine"]
    due = engine.next_timer_due()
    now = datetime.now(UTC)
    lag = max(0.0, (now - due).total_seconds()) if due else 0.0
    return jsonify(status="ok", database="ok", oldest_due_timer_lag_seconds=round(lag, 3)), 200
