"""Service tasks call registered operations; a failure is an incident that can be retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from engine import InvalidState, ProcessFileErrors
from engine.db import db
from engine.models import AuditEvent, ProcessInstance
from engine.operations import operation
from tests.conftest import SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"
ADA = SALLY.__class__.of("ada", "admin")
FAILURES = {"left": 0}


@operation("test_double")
def double(ctx, value):
    if FAILURES["left"] > 0:
        FAILURES["left"] -= 1
        raise RuntimeError(f"ledger unavailable for instance {ctx.instance_id}")
    return {"doubled": value * 2, "instance": ctx.instance_id}


@pytest.fixture
def deployed(engine):
    engine.deploy(read_files(BPMN / "service_calls.bpmn"))
    FAILURES["left"] = 0
    return engine


def test_operation_result_lands_in_task_data(deployed):
    instance_id = deployed.start_process("service_calls", {"amount": 21}, SALLY)
    assert deployed.instance_data(instance_id)["result"] == {"doubled": 42, "instance": instance_id}


def test_failure_is_an_incident_then_retry_succeeds(deployed):
    FAILURES["left"] = 1
    instance_id = deployed.start_process("service_calls", {"amount": 5}, SALLY)
    row = db.session.get(ProcessInstance, instance_id)
    assert row.status == "error"
    [incident] = deployed.incidents(instance_id)
    assert incident.spec_id == "double_it"
    assert "ledger unavailable" in incident.message
    assert "RuntimeError" in incident.traceback
    deployed.retry_incident(incident.id, ADA)
    assert db.session.get(ProcessInstance, instance_id).status == "running"
    assert deployed.incidents(instance_id) == []
    assert deployed.instance_data(instance_id)["result"]["doubled"] == 10
    events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.instance_id == instance_id)).all()
    assert events[:3] == ["started", "incident", "retried"]


def test_suspend_resume_cancel_are_audited(deployed):
    instance_id = deployed.start_process("service_calls", {"amount": 1}, SALLY)
    deployed.suspend(instance_id, ADA)
    assert deployed.tasks_for(SALLY).tasks == []
    with pytest.raises(InvalidState):
        deployed.suspend(instance_id, ADA)
    deployed.resume(instance_id, ADA)
    assert len(deployed.tasks_for(SALLY).tasks) == 1
    deployed.cancel(instance_id, ADA)
    assert db.session.get(ProcessInstance, instance_id).status == "cancelled"
    assert deployed.tasks_for(SALLY).tasks == []
    events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.instance_id == instance_id)).all()
    assert [e for e in events if e in ("suspended", "resumed", "cancelled")] == [
        "suspended",
        "resumed",
        "cancelled",
    ]


def test_unregistered_operation_refused_at_deploy(engine):
    text = (BPMN / "service_calls.bpmn").read_text().replace("test_double", "no_such_operation")
    with pytest.raises(ProcessFileErrors, match="no_such_operation"):
        engine.deploy({"service_calls.bpmn": text.encode()})
