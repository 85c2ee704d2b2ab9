"""Liveness and readiness: is the process up, and can this installation do its work.

- `GET /health/live`: the process answers (no database touched); 200.
- `GET /health/ready`: every check below passes, else 503 naming the failing check(s):
  `database` (a `SELECT 1`), `scheduler` (some scheduler process ticked within
  `SCHEDULER_STALE_SECONDS`, default 30; none ever ticked is "not ready" too) and `timers` (the
  lag of the oldest pending timer past its due time; reported always, failing only when
  `TIMER_LAG_MAX_SECONDS` is set and exceeded: late timers are the scheduler's problem, and a
  load balancer that drops every web process over it would only make things worse). The answer
  lists every check under `checks` (`ok`, `reason` when not ok, figures) and the failing ones by
  name under `failing`; when the database is unreachable the others are `ok: null`, not checked.
- `GET /health`: the page it always was (database and timer lag, 200 while the database
  answers), kept for existing probes.

No sign-in: probes cannot sign in, and the answers name no data. Database errors are reported
by their kind only (the full message, which may name hosts, goes to the log). Times come from
the engine's clock, like timer due times and scheduler heartbeats.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from engine.db import db
from engine.scheduler import last_heartbeat

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)

DEFAULT_STALE_SECONDS = 30.0


@dataclass
class Check:
    ok: bool | None  # None: not checked (what it needs failed)
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        answer = asdict(self)
        details = answer.pop("details")
        if not answer["reason"]:
            answer.pop("reason")
        return {**answer, **details}


def oldest_due_timer_lag(engine: Any) -> float:
    """Seconds the oldest pending timer is past its due time (0 when none is overdue)."""
    due = engine.next_timer_due()
    if due is None:
        return 0.0
    return max(0.0, (engine.now() - due).total_seconds())


def heartbeat_age(engine: Any) -> float | None:
    """Seconds since any scheduler process last ticked; None if none ever did."""
    beat = last_heartbeat(engine)
    return None if beat is None else max(0.0, (engine.now() - beat).total_seconds())


def database_check() -> Check:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means: not reachable for us
        log.warning("readiness: database unreachable: %s", exc)
        db.session.rollback()
        return Check(False, f"database unreachable ({type(exc).__name__})")
    return Check(True)


def scheduler_check(engine: Any, stale_seconds: float) -> Check:
    age = heartbeat_age(engine)
    details: dict[str, Any] = {
        "last_tick_age_seconds": None if age is None else round(age, 3),
        "stale_after_seconds": stale_seconds,
    }
    if age is None:
        return Check(False, "no scheduler has ever ticked (run `backoffice scheduler`)", details)
    if age > stale_seconds:
        return Check(False, f"no scheduler ticked for {age:.0f} s (more than {stale_seconds:g} s)", details)
    return Check(True, details=details)


def timers_check(engine: Any, max_lag: float | None) -> Check:
    lag = oldest_due_timer_lag(engine)
    details = {"oldest_due_lag_seconds": round(lag, 3), "max_lag_seconds": max_lag}
    if max_lag is not None and lag > max_lag:
        return Check(False, f"the oldest due timer is {lag:.0f} s late (more than {max_lag:g} s)", details)
    return Check(True, details=details)


def readiness() -> dict[str, Check]:
    """Every check, by name; the later ones are skipped when the database does not answer."""
    config = current_app.config
    checks = {"database": database_check()}
    if not checks["database"].ok:
        skipped = Check(None, "not checked: the database is unreachable")
        return {**checks, "scheduler": skipped, "timers": skipped}
    engine = current_app.extensions["engine"]
    checks["scheduler"] = scheduler_check(
        engine, float(config.get("SCHEDULER_STALE_SECONDS") or DEFAULT_STALE_SECONDS)
    )
    max_lag = config.get("TIMER_LAG_MAX_SECONDS")
    checks["timers"] = timers_check(engine, float(max_lag) if max_lag else None)
    return checks


@bp.get("/health/live")
def live() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    checks = readiness()
    failing = [name for name, check in checks.items() if check.ok is False]
    is_ready = all(check.ok for check in checks.values())
    body = {
        "status": "ready" if is_ready else "not ready",
        "failing": failing,
        "checks": {name: check.as_json() for name, check in checks.items()},
    }
    return jsonify(body), 200 if is_ready else 503


@bp.get("/health")
def health() -> tuple[Response, int]:
    database = database_check()
    if not database.ok:
        return jsonify(status="error", database=database.reason), 503
    lag = oldest_due_timer_lag(current_app.extensions["engine"])
    return jsonify(status="ok", database="ok", oldest_due_timer_lag_seconds=round(lag, 3)), 200
