"""Timers: rows written after every step, fired by a fast-forwarded clock, cycles once per cycle,
restarts neither drop nor replay, and the claim keeps two schedulers from firing one timer twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.db import db
from engine.models import AuditEvent, ProcessInstance, Timer
from tests.conftest import ALEX, SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"


@pytest.fixture
def deployed(engine):
    engine.deploy(read_files(BPMN / "reminder.bpmn", BPMN / "wait_then.bpmn"))
    return engine


def titles(engine, actor):
    return sorted(t.spec_id for t in engine.tasks_for(actor).tasks)


def fired_count(instance_id):
    return db.session.scalar(
        select(func.count()).where(AuditEvent.instance_id == instance_id, AuditEvent.event == "timer_fired")
    )


def test_timer_rows_follow_the_workflow(deployed, clock):
    instance_id = deployed.start_process("reminder", {}, SALLY)
    rows = db.session.execute(select(Timer.spec_id, Timer.kind, Timer.due_at).order_by(Timer.spec_id)).all()
    assert [(r.spec_id, r.kind) for r in rows] == [("after_30_days", "duration"), ("every_3_days", "cycle")]
    start = clock.current
    due = {r.spec_id: r.due_at.replace(tzinfo=start.tzinfo) for r in rows}
    assert due["after_30_days"] == start + timedelta(days=30)
    assert due["every_3_days"] == start + timedelta(days=3)
    # completing the task cancels both boundary timers: their rows go with them
    deployed.complete_task(deployed.tasks_for(SALLY).tasks[0].id, SALLY, {})
    assert db.session.scalar(select(func.count()).select_from(Timer)) == 0
    assert db.session.get(ProcessInstance, instance_id).status == "completed"


def test_nothing_fires_before_due(deployed, clock):
    deployed.start_process("reminder", {}, SALLY)
    assert deployed.fire_due_timers(clock.advance(days=2, hours=23)) == 0
    assert titles(deployed, SALLY) == ["work"]


def test_cycle_fires_once_per_cycle_then_interrupting_timer_closes(deployed, clock):
    instance_id = deployed.start_process("reminder", {}, SALLY)
    assert deployed.fire_due_timers(clock.advance(days=3, minutes=1)) == 1
    assert titles(deployed, SALLY) == ["follow_up", "work"]
    assert deployed.fire_due_timers(clock.current) == 0  # the same cycle never fires twice
    assert deployed.fire_due_timers(clock.advance(days=3)) == 1
    assert titles(deployed, SALLY) == ["follow_up", "follow_up", "work"]
    assert fired_count(instance_id) == 2
    # day 30: the interrupting timer closes the lead as cold and cancels the qualify task
    clock.advance(days=24)
    deployed.fire_due_timers(clock.current)
    data = deployed.instance_data(instance_id)
    assert data.get("outcome") == "cold"
    assert "work" not in titles(deployed, SALLY)


def test_restart_after_downtime_fires_overdue_timers_once(deployed, clock, app):
    """Everything was down for 10 days: the 3-day cycle missed three slots. On start-up the
    overdue timer fires once (not three times) and the next slot is in the future."""
    instance_id = deployed.start_process("reminder", {}, SALLY)
    db.session.remove()
    from tests.conftest import make_app

    restarted = make_app(app.config["SQLALCHEMY_DATABASE_URI"], clock)
    with restarted.app_context():
        engine2 = restarted.extensions["engine"]
        clock.advance(days=10)
        assert engine2.fire_due_timers(clock.current) == 1
        assert engine2.fire_due_timers(clock.current) == 0
        assert titles(engine2, SALLY) == ["follow_up", "work"]
        nxt = db.session.scalar(select(Timer.due_at).where(Timer.spec_id == "every_3_days"))
        assert nxt.replace(tzinfo=clock.current.tzinfo) > clock.current
        assert fired_count(instance_id) == 1
        db.session.remove()
        db.engine.dispose()


def test_duration_then_date_timer_from_data(deployed, clock):
    due_date = (clock.current + timedelta(days=5)).isoformat()
    instance_id = deployed.start_process("wait_then", {"due_date": due_date}, ALEX)
    assert db.session.get(ProcessInstance, instance_id).status == "waiting"
    deployed.fire_due_timers(clock.advance(hours=1, seconds=1))
    row = db.session.execute(select(Timer.spec_id, Timer.due_at)).one()
    assert row.spec_id == "until_date"
    assert row.due_at.replace(tzinfo=clock.current.tzinfo) == clock.current - timedelta(
        hours=1, seconds=1
    ) + timedelta(days=5)
    assert titles(deployed, ALEX) == []
    deployed.fire_due_timers(clock.advance(days=5))
    assert titles(deployed, ALEX) == ["book"]


def test_suspended_instance_holds_its_timers_until_resumed(deployed, clock):
    instance_id = deployed.start_process("wait_then", {"due_date": "2030-01-01T00:00:00+00:00"}, ALEX)
    admin = ALEX.__class__.of("ada", "admin")
    deployed.suspend(instance_id, admin)
    assert deployed.fire_due_timers(clock.advance(hours=2)) == 0
    deployed.resume(instance_id, admin)
    assert deployed.fire_due_timers(clock.current) == 1
    assert db.session.scalar(select(Timer.spec_id)) == "until_date"


def test_failing_instance_becomes_incident_and_others_still_fire(deployed, clock):
    broken = deployed.start_process("wait_then", {"due_date": "not a date"}, ALEX)
    healthy = deployed.start_process("wait_then", {"due_date": "2030-01-01T00:00:00+00:00"}, ALEX)
    assert deployed.fire_due_timers(clock.advance(hours=2)) == 2
    assert db.session.get(ProcessInstance, broken).status == "error"
    [incident] = deployed.incidents(broken)
    assert "not a date" in incident.message
    assert db.session.get(ProcessInstance, healthy).status == "waiting"
    assert db.session.scalar(select(Timer.spec_id).where(Timer.instance_id == healthy)) == "until_date"
