"""Operations: Prometheus metrics, request timing, request ids and the one log line per request.

`init_app(app)` (called first thing by the app factory, so every other hook is timed) installs:

- **Request ids.** `X-Request-ID` from the client is kept when it looks like an id (letters,
  digits, `._:-`, at most 128), otherwise a new one is made; it is echoed on the response and
  attached to every log record written while the request is served (`engine.logs.request_id`).
- **One log line per request** on logger `webapp.request`: request id, method, path (the query
  string only with the values of sensitive parameters redacted), status, duration_ms, user,
  remote address. Headers are never logged (no `Authorization`, no cookies). Health probes log
  at DEBUG, everything else at INFO. Code that authenticates a request without Flask-Login
  sets `g.log_user` to the username to have it named.
- **Logging** itself: `engine.logs.configure` when the environment asks for it or under
  gunicorn (JSON); see `engine/logs.py` for the choice of format.
- **`GET /metrics`** in the Prometheus text exposition format (0.0.4), written here by hand: a
  handful of gauges and one histogram need no client library, its process-global registry or a
  new dependency. Gauges are read from the database at scrape time with one GROUP BY each on
  indexed columns; the latency histogram is collected in this process by the request hooks.
  With several gunicorn workers each worker has its own histogram, labelled `worker` (its pid):
  a scrape reaches one worker, so sum `rate()` over `worker`, and read the counts as a sample
  of the traffic, not all of it (the database gauges are the same from every worker).

Access to `/metrics` (operational data: queue sizes by role, process names, traffic): from the
loopback address without credentials — a Prometheus agent on the same host — unless the request
came through a proxy (any `X-Forwarded-For`, `Forwarded` or `X-Real-IP` header), since a
reverse proxy on the same host makes every visitor look local; otherwise an `Authorization:
Bearer` token equal to `METRICS_TOKEN` (environment or config; compared in constant time), or a
signed-in user with role `admin`. Anything else gets 401 (403 when signed in without the role).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, g, request
from flask_login import current_user
from sqlalchemy import func, select

from engine import logs
from engine.db import db
from engine.models import HumanTask, Incident, ProcessInstance, Timer
from engine.scheduler import ticking_schedulers

from .health import DEFAULT_STALE_SECONDS, heartbeat_age, oldest_due_timer_lag

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
request_log = logging.getLogger("webapp.request")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
OPEN_TASK_STATES = ("open", "claimed")


def init_app(app: Flask) -> None:
    """Config defaults from the environment, logging, and the request hooks."""
    app.config.setdefault(
        "SCHEDULER_STALE_SECONDS", float(os.environ.get("SCHEDULER_STALE_SECONDS") or DEFAULT_STALE_SECONDS)
    )
    app.config.setdefault("TIMER_LAG_MAX_SECONDS", os.environ.get("TIMER_LAG_MAX_SECONDS") or None)
    app.config.setdefault("METRICS_TOKEN", os.environ.get("METRICS_TOKEN") or None)
    logs.configure("json" if logs.under_gunicorn() else None)
    app.extensions["ops.latency"] = RequestLatency()
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)


# -- requests ----------------------------------------------------------------------------------------
def _start_request() -> None:
    g.ops_started = time.perf_counter()
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
    g.ops_request_id_token = logs.request_id.set(g.request_id)


def _finish_request(response: Response) -> Response:
    started = g.get("ops_started")
    if started is None:  # a hook before ours failed: nothing to time
        return response
    seconds = time.perf_counter() - started
    response.headers["X-Request-ID"] = g.request_id
    endpoint = request.endpoint or "unmatched"
    method = request.method if request.method in METHODS else "OTHER"
    current_app.extensions["ops.latency"].observe(endpoint, method, response.status_code, seconds)
    _log_request(endpoint, response.status_code, seconds)
    return response


def _end_request(_error: BaseException | None) -> None:
    token = g.pop("ops_request_id_token", None)
    if token is not None:
        logs.request_id.reset(token)


def _log_request(endpoint: str, status: int, seconds: float) -> None:
    level = logging.DEBUG if endpoint.startswith("health.") else logging.INFO
    if not request_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": g.request_id,
        "method": request.method[:16],
        "path": request.path[:500],
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "user": _username(),
        "remote_addr": request.remote_addr,
        "endpoint": endpoint,
    }
    if request.args:
        fields["query"] = redacted_query(request.args.items(multi=True))[:1000]
    request_log.log(
        level,
        "%s %s %s %.1fms",
        fields["method"],
        fields["path"],
        status,
        fields["duration_ms"],
        extra=fields,
    )


def redacted_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The query string with the values of sensitive parameters (tokens, passwords ...) replaced."""
    return urlencode([(key, logs.REDACTED if logs.is_sensitive(key) else value) for key, value in pairs])


def _username() -> str | None:
    # the user Flask-Login already loaded for this request (never loaded just to be logged: that
    # would cost a query on every static file), else whoever authenticated it another way
    loaded = g.get("_login_user")
    if loaded is not None and getattr(loaded, "is_authenticated", False):
        return str(loaded.username)
    named = g.get("log_user")
    return str(named) if named else None


# -- the latency histogram ----------------------------------------------------------------------------
@dataclass
class _Series:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0


class RequestLatency:
    """Request durations by endpoint, method and status, in this process (thread-safe)."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._lock = threading.Lock()

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, str(status))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    series.buckets[i] += 1
            series.count += 1
            series.total += seconds

    def family(self) -> Family:
        worker = str(os.getpid())
        family = Family(
            "backoffice_http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by endpoint, method and status (this worker process only)",
        )
        with self._lock:
            snapshot = {key: (list(s.buckets), s.count, s.total) for key, s in sorted(self._series.items())}
        for (endpoint, method, status), (buckets, count, total) in snapshot.items():
            labels = {"endpoint": endpoint, "method": method, "status": status, "worker": worker}
            for bound, cumulative in zip(LATENCY_BUCKETS, buckets, strict=True):
                family.add(cumulative, {**labels, "le": _number(bound)}, suffix="_bucket")
            family.add(count, {**labels, "le": "+Inf"}, suffix="_bucket")
            family.add(total, labels, suffix="_sum")
            family.add(count, labels, suffix="_count")
        return family


# -- exposition format --------------------------------------------------------------------------------
@dataclass
class Family:
    """One metric family: its HELP, TYPE and samples."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, labels: dict[str, str] | None = None, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels or {}, value))

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for name, labels, value in self.samples:
            shown = ",".join(f'{key}="{_escape_label(str(v))}"' for key, v in labels.items())
            yield f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    return "\n".join(line for family in families for line in family.lines()) + "\n"


# -- what is measured ----------------------------------------------------------------------------------
def database_families(engine: Any, stale_seconds: float) -> list[Family]:
    """The gauges read from the database: one cheap query each (GROUP BY on indexed columns)."""
    session = engine.session
    instances = Family("backoffice_process_instances", "gauge", "Process instances by process and status")
    for process_id, status, count in session.execute(
        # ix_instance_status_process covers (status, process_id)
        select(ProcessInstance.process_id, ProcessInstance.status, func.count())
        .group_by(ProcessInstance.status, ProcessInstance.process_id)
        .order_by(ProcessInstance.process_id, ProcessInstance.status)
    ):
        instances.add(count, {"process": process_id, "status": status})

    tasks = Family("backoffice_open_tasks", "gauge", "Open human tasks by role and status (open or claimed)")
    for role, status, count in session.execute(
        # ix_task_role_inbox leads with (role, status)
        select(HumanTask.role, HumanTask.status, func.count())
        .where(HumanTask.status.in_(OPEN_TASK_STATES))
        .group_by(HumanTask.role, HumanTask.status)
        .order_by(HumanTask.role, HumanTask.status)
    ):
        tasks.add(count, {"role": role or "", "status": status})

    timers = Family("backoffice_timers", "gauge", "Timer rows by status (pending, claimed, held)")
    for status, count in session.execute(
        # ix_timer_due leads with status
        select(Timer.status, func.count()).group_by(Timer.status).order_by(Timer.status)
    ):
        timers.add(count, {"status": status})

    lag = Family(
        "backoffice_timer_lag_seconds", "gauge", "How late the oldest pending timer is past its due time"
    )
    lag.add(round(oldest_due_timer_lag(engine), 3))

    incidents = Family("backoffice_open_incidents", "gauge", "Unresolved incidents by process")
    for process_id, count in session.execute(
        select(ProcessInstance.process_id, func.count())
        .select_from(Incident)
        .join(ProcessInstance, ProcessInstance.id == Incident.instance_id)
        .where(Incident.resolved_at.is_(None))
        .group_by(ProcessInstance.process_id)
        .order_by(ProcessInstance.process_id)
    ):
        incidents.add(count, {"process": process_id})

    beat = Family(
        "backoffice_scheduler_heartbeat_age_seconds",
        "gauge",
        "Seconds since any scheduler process last ticked (+Inf: none ever did)",
    )
    age = heartbeat_age(engine)
    beat.add(math.inf if age is None else round(age, 3))
    ticking = Family(
        "backoffice_schedulers_ticking",
        "gauge",
        f"Scheduler processes that ticked within the last {stale_seconds:g} s",
    )
    ticking.add(ticking_schedulers(engine, timedelta(seconds=stale_seconds)))
    return [instances, tasks, timers, lag, incidents, beat, ticking]


def collect() -> list[Family]:
    engine = current_app.extensions["engine"]
    stale = float(current_app.config.get("SCHEDULER_STALE_SECONDS") or DEFAULT_STALE_SECONDS)
    up = Family("backoffice_database_up", "gauge", "1 when the database answered the metric queries")
    try:
        families = database_families(engine, stale)
        up.add(1)
    except Exception as exc:  # the in-process figures are still worth a scrape
        log.warning("metrics: database queries failed: %s", exc)
        db.session.rollback()
        families = []
        up.add(0)
    return [up, *families, current_app.extensions["ops.latency"].family()]


# -- access -------------------------------------------------------------------------------------------
def _from_loopback() -> bool:
    if any(header in request.headers for header in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _bearer_token() -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def refusal() -> Response | None:
    """None when the request may read the metrics, else the 401/403 answer."""
    if _from_loopback():
        return None
    expected = current_app.config.get("METRICS_TOKEN")
    offered = _bearer_token()
    if expected and offered and hmac.compare_digest(offered.encode(), str(expected).encode()):
        return None
    if offered is None and current_user.is_authenticated:
        if "admin" in current_user.roles:
            return None
        return Response("metrics need the admin role\n", 403, content_type="text/plain; charset=utf-8")
    return Response(
        "metrics need a bearer token (METRICS_TOKEN) or an admin sign-in\n",
        401,
        content_type="text/plain; charset=utf-8",
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


@bp.get("/metrics")
def metrics() -> Response:
    refused = refusal()
    if refused is not None:
        return refused
    return Response(render(collect()), 200, content_type=CONTENT_TYPE)
