"""Operations through real HTTP: liveness and readiness (database, scheduler heartbeat, timer
lag), Prometheus metrics (parsed, counted, access-controlled) and the JSON request log."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine import logs
from engine.db import db
from engine.models import SchedulerHeartbeat
from engine.scheduler import record_heartbeat, tick
from tests.conftest import SALLY, make_app, read_files
from tests.webapp.conftest import Browser

BPMN = Path(__file__).resolve().parents[1] / "engine" / "bpmn"
ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}


def get(app: Any, url: str, **kwargs: Any) -> Any:
    """One request in an app context of its own, after the test's session ends its transaction."""
    db.session.commit()
    with app.app_context():
        return app.test_client().get(url, **kwargs)


# -- a small parser of the Prometheus text format (0.0.4) --------------------------------------------
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "counter": ("",)}


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample by (name, labels); fails on anything the format does not allow."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in SUFFIXES and name not in types, line
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = next((f for f in types if name in (f + s for s in SUFFIXES[types[f]])), None)
        assert family is not None, f"sample before its TYPE line: {line!r}"
        raw_labels = match["labels"] or ""
        labels = LABEL.findall(raw_labels)
        assert "".join(f'{k}="{v}",' for k, v in labels).rstrip(",") == raw_labels, line
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(match["value"])
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    wanted = frozenset(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert found, f"no sample {name} {labels}"
    return sum(found)


def scrape(app: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = get(app, "/metrics")  # the test client's address is 127.0.0.1
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse_metrics(response.get_data(as_text=True))


# -- liveness and readiness --------------------------------------------------------------------------
def test_readiness_names_the_scheduler_until_one_ticks_and_when_it_stops(app, engine, clock):
    response = get(app, "/health/ready")
    assert response.status_code == 503
    assert response.json["failing"] == ["scheduler"]
    assert "no scheduler has ever ticked" in response.json["checks"]["scheduler"]["reason"]
    assert response.json["checks"]["database"]["ok"] is True

    db.session.commit()
    tick(app)
    response = get(app, "/health/ready")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ready" and response.json["failing"] == []
    beat = db.session.scalars(select(SchedulerHeartbeat)).one()
    assert (beat.worker_id, beat.pid) == (engine.worker_id, os.getpid())

    clock.advance(seconds=31)  # past SCHEDULER_STALE_SECONDS (30)
    response = get(app, "/health/ready")
    assert response.status_code == 503 and response.json["failing"] == ["scheduler"]
    assert "no scheduler ticked for 31 s" in response.json["checks"]["scheduler"]["reason"]
    tick(app)  # the same process ticks again: its row is updated, not duplicated
    assert get(app, "/health/ready").status_code == 200
    assert len(db.session.scalars(select(SchedulerHeartbeat)).all()) == 1
    assert get(app, "/health/live").json == {"status": "ok"}


def test_readiness_reports_the_lag_of_an_overdue_timer(app, engine, clock):
    engine.deploy(read_files(BPMN / "reminder.bpmn"))
    engine.start_process("reminder", {}, SALLY)  # "no contact for 3 days" fires after 3 days
    record_heartbeat(engine)  # a scheduler that ticks but has not fired the timer yet
    assert get(app, "/health/ready").json["checks"]["timers"]["oldest_due_lag_seconds"] == 0.0

    clock.advance(days=3, seconds=90)
    record_heartbeat(engine)
    response = get(app, "/health/ready")
    assert response.status_code == 200  # late timers are reported, not failing by default
    assert response.json["checks"]["timers"]["oldest_due_lag_seconds"] == 90.0
    assert get(app, "/health").json["oldest_due_timer_lag_seconds"] == 90.0
    assert value(scrape(app), "backoffice_timer_lag_seconds") == 90.0

    app.config["TIMER_LAG_MAX_SECONDS"] = 60
    response = get(app, "/health/ready")
    assert response.status_code == 503 and response.json["failing"] == ["timers"]
    assert "90 s late" in response.json["checks"]["timers"]["reason"]


def test_unreachable_database_fails_readiness_but_not_liveness(tmp_path, clock):
    broken = make_app(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", clock)
    with broken.app_context():
        client = broken.test_client()
        assert client.get("/health/live").status_code == 200
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json["failing"] == ["database"]
        assert response.json["checks"]["scheduler"]["ok"] is None
        assert client.get("/health").status_code == 503
        metrics = parse_metrics(client.get("/metrics").get_data(as_text=True))
        assert value(metrics, "backoffice_database_up") == 0


# -- metrics -----------------------------------------------------------------------------------------
def test_metrics_parse_and_count_instances_tasks_timers_and_heartbeat(app, engine, clock):
    samples = scrape(app)
    assert value(samples, "backoffice_database_up") == 1
    assert not [k for k in samples if k[0] == "backoffice_process_instances"]
    assert value(samples, "backoffice_scheduler_heartbeat_age_seconds") == float("inf")

    engine.deploy(read_files(BPMN / "three_steps.bpmn", BPMN / "reminder.bpmn"))
    for _ in range(3):
        engine.start_process("three_steps", {}, SALLY)
    engine.start_process("reminder", {}, SALLY)
    first = engine.tasks_for(SALLY).tasks[0]
    engine.claim_task(first.id, SALLY)
    cancelled = engine.start_process("three_steps", {}, SALLY)
    engine.cancel(cancelled, SALLY)
    tick(app)
    clock.advance(seconds=12)

    samples = scrape(app)
    assert value(samples, "backoffice_process_instances", process="three_steps", status="running") == 3
    assert value(samples, "backoffice_process_instances", process="three_steps", status="cancelled") == 1
    assert value(samples, "backoffice_process_instances", process="reminder") == 1
    assert value(samples, "backoffice_open_tasks", role="sales") == 4
    assert value(samples, "backoffice_open_tasks", role="sales", status="claimed") == 1
    assert value(samples, "backoffice_timers", status="pending") == 2  # reminder: 3 and 30 days
    assert value(samples, "backoffice_timer_lag_seconds") == 0
    assert not [k for k in samples if k[0] == "backoffice_open_incidents"]
    assert value(samples, "backoffice_scheduler_heartbeat_age_seconds") == 12
    assert value(samples, "backoffice_schedulers_ticking") == 1


def test_latency_histogram_counts_each_request(app):
    for _ in range(2):
        assert get(app, "/login").status_code == 200
    get(app, "/no/such/page")
    samples = scrape(app)
    login = {"endpoint": "auth.login", "method": "GET", "status": "200"}
    assert value(samples, "backoffice_http_request_duration_seconds_count", **login) == 2
    assert value(samples, "backoffice_http_request_duration_seconds_bucket", le="+Inf", **login) == 2
    assert value(samples, "backoffice_http_request_duration_seconds_sum", **login) > 0
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name.endswith("_bucket") and {("endpoint", "auth.login"), ("status", "200")} <= labels
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert value(samples, "backoffice_http_request_duration_seconds_count", endpoint="unmatched") == 1


def test_metrics_refused_from_elsewhere_without_token_or_admin(app, people):
    assert get(app, "/metrics", environ_base=ELSEWHERE).status_code == 401
    # a reverse proxy on the same host: the address is local, the visitor is not
    proxied = get(app, "/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert proxied.status_code == 401
    assert proxied.headers["WWW-Authenticate"].startswith("Bearer")

    app.config["METRICS_TOKEN"] = "s3cret-metrics-token"
    wrong = {"Authorization": "Bearer guessed"}
    assert get(app, "/metrics", environ_base=ELSEWHERE, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret-metrics-token"}
    response = get(app, "/metrics", environ_base=ELSEWHERE, headers=right)
    assert response.status_code == 200 and "backoffice_database_up 1" in response.get_data(as_text=True)

    sally = Browser(app, **ELSEWHERE)
    assert sally.login("sally").status_code == 302
    assert sally.get("/metrics").status_code == 403
    ada = Browser(app, **ELSEWHERE)
    assert ada.login("ada").status_code == 302
    assert ada.get("/metrics").status_code == 200


# -- the request log -------------------------------------------------------------------------------------
@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Logging as a process configured with BACKOFFICE_LOG_FORMAT=json has it; restored after."""
    root = logging.getLogger()
    quieted = [logging.getLogger(name) for name in ("werkzeug", "apscheduler")]
    saved = (list(root.handlers), root.level, [logger.level for logger in quieted])
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    assert logs.configure(None) == "json"
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for logger, level in zip(quieted, saved[2], strict=True):
        logger.setLevel(level)


def log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_request_log_line_is_json_with_request_fields_and_no_secrets(app, people, json_logs, capsys):
    browser = Browser(app)
    assert browser.login("sally").status_code == 302
    capsys.readouterr()
    headers = {"X-Request-ID": "req-42.a", "Authorization": "Bearer very-secret-bearer"}
    response = browser.get("/inbox?status=open&api_token=leaked-token-value", headers=headers)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-42.a"

    err = capsys.readouterr().err
    assert "very-secret-bearer" not in err and "leaked-token-value" not in err
    lines = [line for line in log_lines(err) if line["logger"] == "webapp.request"]
    assert len(lines) == 1, err
    line = lines[0]
    assert {"time", "level", "logger", "message", "duration_ms"} <= set(line)
    assert line["level"] == "INFO"
    assert (line["request_id"], line["method"], line["path"], line["status"], line["user"]) == (
        "req-42.a",
        "GET",
        "/inbox",
        200,
        "sally",
    )
    assert line["query"] == "status=open&api_token=%5Bredacted%5D"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0

    # an id that does not look like one is replaced; a page without sign-in names no user
    response = get(app, "/login", headers={"X-Request-ID": "<script>"})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    line = next(x for x in log_lines(capsys.readouterr().err) if x["logger"] == "webapp.request")
    assert line["request_id"] == generated and line["user"] is None


def test_every_log_line_is_scrubbed_of_secrets(json_logs, capsys):
    logging.getLogger("engine.test").warning(
        "connecting to postgresql://app:db-pass-1@db.internal/office with password=hunter2 "
        'and {"token": "abc123"}, header Authorization: Bearer eyJhbGciOi.x.y'
    )
    (line,) = log_lines(capsys.readouterr().err)
    for secret in ("db-pass-1", "hunter2", "abc123", "eyJhbGciOi"):
        assert secret not in line["message"], line["message"]
    assert "postgresql://app:[redacted]@db.internal/office" in line["message"]
    assert (line["level"], line["logger"]) == ("WARNING", "engine.test")
