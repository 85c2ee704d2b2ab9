"""Human tasks: start, inbox, claim, complete, form validation, four-eyes, races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import Conflict, Forbidden, InvalidData, NotFound
from engine.db import db
from engine.models import AuditEvent, HumanTask, ProcessInstance
from tests.conftest import ALEX, MONA, SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"


@pytest.fixture
def deployed(engine):
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    return engine


def start(engine, actor=SALLY, **data):
    return engine.start_process("three_steps", data, actor, business_key=data.get("key"))


def only_task(engine, actor, **kw):
    page = engine.tasks_for(actor, **kw)
    assert len(page.tasks) == 1, page.tasks
    return page.tasks[0]


def test_start_runs_to_first_user_task_and_persists_everything(deployed, clock):
    instance_id = start(deployed, key="REQ-1")
    row = db.session.get(ProcessInstance, instance_id)
    assert (row.status, row.process_version, row.started_by, row.business_key) == (
        "running",
        1,
        "sally",
        "REQ-1",
    )
    task = only_task(deployed, SALLY)
    assert (task.spec_id, task.role, task.title, task.form_ref) == (
        "enter_request",
        "sales",
        "Enter request",
        "three_steps/enter_request.json",
    )
    assert task.due_at == clock.current.replace(microsecond=0) + __import__("datetime").timedelta(days=1)
    events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.instance_id == instance_id)).all()
    assert events == ["started", "task_created"]


def test_walks_three_tasks_to_completion_with_four_eyes(deployed):
    instance_id = start(deployed)
    deployed.complete_task(only_task(deployed, SALLY).id, SALLY, {"subject": "Laptop", "amount": 1200})
    assert deployed.tasks_for(SALLY).tasks == []
    approval = only_task(deployed, MONA)
    assert (approval.title, approval.priority, approval.excluded_users) == ("Approve Laptop", 80, ("sally",))
    assert (approval.document_type, approval.document_key) == ("request", "Laptop")
    # sally holds the manager role too, but she started the instance: four-eyes keeps her out
    sally_manager = SALLY.__class__.of("sally", "sales", "manager")
    assert deployed.tasks_for(sally_manager).tasks == []
    with pytest.raises(Forbidden, match="four-eyes"):
        deployed.complete_task(approval.id, sally_manager, {"decision": "approve"})
    deployed.complete_task(approval.id, MONA, {"decision": "approve"})
    book = only_task(deployed, ALEX)
    deployed.complete_task(book.id, ALEX, {"reference": "B-1"})
    row = db.session.get(ProcessInstance, instance_id)
    assert row.status == "completed" and row.completed_at is not None
    data = deployed.instance_data(instance_id)
    assert data["subject"] == "Laptop" and data["decision"] == "approve"
    assert data["completed_by"] == {"enter_request": "sally", "approve": "mona", "book": "alex"}


def test_form_validation_names_fields_and_refuses_undeclared(deployed):
    start(deployed)
    task = only_task(deployed, SALLY)
    with pytest.raises(InvalidData) as err:
        deployed.complete_task(task.id, SALLY, {"amount": -5, "email": "not-an-email", "approved": True})
    fields = {e.field: e.message for e in err.value.errors}
    assert fields["subject"] == "this field is required"
    assert "minimum" in fields["amount"] or "less than" in fields["amount"]
    assert "email" in fields["email"]
    assert fields["approved"] == "this field is not part of the form"
    # nothing changed: the task is still open, the instance still at its first step
    assert db.session.get(HumanTask, task.id).status == "open"


def test_other_role_cannot_complete_or_claim(deployed):
    start(deployed)
    task = only_task(deployed, SALLY)
    with pytest.raises(Forbidden, match="role 'sales'"):
        deployed.complete_task(task.id, ALEX, {"subject": "x", "amount": 1})
    with pytest.raises(Forbidden):
        deployed.claim_task(task.id, ALEX)
    with pytest.raises(NotFound):
        deployed.complete_task(999999, SALLY, {})


def test_claim_unclaim_and_assigned_task_is_not_for_others(deployed):
    start(deployed)
    start(deployed)
    first, second = deployed.tasks_for(SALLY).tasks
    other = SALLY.__class__.of("sam", "sales")
    deployed.claim_task(first.id, SALLY)
    assert [t.id for t in deployed.tasks_for(other).tasks] == [second.id]
    with pytest.raises(Conflict, match="claimed by sally"):
        deployed.claim_task(first.id, other)
    with pytest.raises(Forbidden, match="assigned to sally"):
        deployed.complete_task(first.id, other, {"subject": "x", "amount": 1})
    deployed.unclaim_task(first.id, SALLY)
    assert len(deployed.tasks_for(other).tasks) == 2


def test_task_completed_twice_is_a_conflict_naming_who(deployed):
    start(deployed)
    task = only_task(deployed, SALLY)
    deployed.complete_task(task.id, SALLY, {"subject": "x", "amount": 1})
    with pytest.raises(Conflict, match="already completed by sally"):
        deployed.complete_task(task.id, SALLY, {"subject": "y", "amount": 2})


def test_concurrent_completions_exactly_one_wins(deployed, app):
    instance_id = start(deployed)
    task = only_task(deployed, SALLY)
    db.session.remove()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def worker(n: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                deployed.complete_task(task.id, SALLY, {"subject": f"by {n}", "amount": n})
                outcomes.append("won")
            except Conflict:
                outcomes.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "won"]
    completed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "task_completed")).all()
    assert len(completed) == 1
    assert db.session.get(ProcessInstance, instance_id).revision == 2
    assert len(deployed.tasks_for(MONA).tasks) == 1


def test_inbox_sorts_filters_and_pages(deployed, clock):
    for n in range(7):
        start(deployed, key=f"REQ-{n}")
        clock.advance(hours=1)
    page = deployed.tasks_for(SALLY, limit=3)
    assert [t.business_key for t in page.tasks] == ["REQ-0", "REQ-1", "REQ-2"]
    page2 = deployed.tasks_for(SALLY, limit=3, cursor=page.next_cursor)
    assert [t.business_key for t in page2.tasks] == ["REQ-3", "REQ-4", "REQ-5"]
    page3 = deployed.tasks_for(SALLY, limit=3, cursor=page2.next_cursor)
    assert [t.business_key for t in page3.tasks] == ["REQ-6"] and page3.next_cursor is None
    assert [t.business_key for t in deployed.tasks_for(SALLY, text="REQ-4").tasks] == ["REQ-4"]
    clock.advance(hours=20)  # the first ones are now overdue (due 1 day after creation)
    overdue = deployed.tasks_for(SALLY, overdue=True)
    assert [t.business_key for t in overdue.tasks] == ["REQ-0", "REQ-1", "REQ-2"]
    newest_first = deployed.tasks_for(SALLY, sort="age", limit=2)
    assert [t.business_key for t in newest_first.tasks] == ["REQ-0", "REQ-1"]
    assert deployed.task_counts(SALLY) == {"sales": 7, "mine": 0}


def test_audit_trail_is_append_only(deployed):
    from sqlalchemy import update
    from sqlalchemy.exc import DatabaseError

    start(deployed)
    with pytest.raises(DatabaseError, match="append-only"):
        db.session.execute(update(AuditEvent).values(actor="mallory"))
    db.session.rollback()


def test_counts_stop_above_the_cap(deployed):
    for _ in range(5):
        start(deployed)
    assert deployed.task_counts(SALLY, cap=3) == {"sales": 4, "mine": 0}
    assert deployed.task_counts(SALLY) == {"sales": 5, "mine": 0}
