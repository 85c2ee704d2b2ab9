"""The scheduler: two processes fire every timer exactly once; the APScheduler tick really fires."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from engine.db import db
from engine.models import AuditEvent, ProcessInstance, Timer
from engine.scheduler import start_background
from tests.conftest import ALEX, ROOT, make_app, read_files

BPMN = Path(__file__).parent / "bpmn"

WORKER = """
import sys
from datetime import datetime
from webapp import create_app
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "FORMS_DIR": sys.argv[3]})
now = datetime.fromisoformat(sys.argv[2])
with app.app_context():
    engine = app.extensions["engine"]
    total = 0
    while True:
        fired = engine.fire_due_timers(now, limit=3)
        total += fired
        if fired == 0 and engine.next_timer_due() is None or engine.next_timer_due() > now:
            break
    print(total)
"""


def test_two_scheduler_processes_fire_each_timer_once(engine, clock, app):
    engine.deploy(read_files(BPMN / "wait_then.bpmn"))
    ids = [
        engine.start_process("wait_then", {"due_date": "2030-01-01T00:00:00+00:00"}, ALEX) for _ in range(40)
    ]
    db.session.remove()
    fire_at = clock.advance(hours=2).isoformat()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    forms = app.config["FORMS_DIR"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, fire_at, forms],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [w.communicate(timeout=120) for w in workers]
    for w, (_out, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err
    totals = [int(out.strip().splitlines()[-1]) for out, _ in results]
    assert sum(totals) == 40, totals
    fired = Counter(
        db.session.scalars(
            select(AuditEvent.instance_id).where(
                AuditEvent.event == "timer_fired", AuditEvent.detail["spec"].as_string() == "one_hour"
            )
        )
    )
    assert fired == Counter({i: 1 for i in ids})
    # every instance moved on to its second timer, and only that one is pending
    assert set(db.session.scalars(select(Timer.spec_id))) == {"until_date"}
    assert db.session.scalar(select(Timer.id).where(Timer.status != "pending")) is None


def test_background_tick_fires_real_one_second_timer(database_url):
    app = make_app(database_url, None)
    from tests.conftest import _prepare

    _prepare(app, database_url)
    with app.app_context():
        engine = app.extensions["engine"]
        engine.deploy(read_files(BPMN / "quick_timer.bpmn"))
        start_time = datetime.now(UTC).isoformat()
        instance_id = engine.start_process("quick_timer", {"start_time": start_time}, ALEX)
        db.session.remove()
        scheduler = start_background(app, seconds=0.2)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if engine.tasks_for(ALEX).tasks:
                    break
                db.session.remove()
                time.sleep(0.1)
        finally:
            scheduler.shutdown()
        assert [t.spec_id for t in engine.tasks_for(ALEX).tasks] == ["book"]
        assert db.session.get(ProcessInstance, instance_id).status == "running"
        db.session.remove()
        db.engine.dispose()
