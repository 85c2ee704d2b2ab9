"""What the designer and the instance pages ask the engine: versions with their instances, the
deployed files, lint of a change, element states for the diagram, and moving an instance to the
latest version of its process."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from engine import InvalidState, ProcessFileErrors
from engine.db import db
from engine.models import AuditEvent, HumanTask, ProcessInstance, Timer
from tests.conftest import MONA, SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"
FILES = Path(__file__).parent / "files"
THREE_STEPS = BPMN / "three_steps.bpmn"


def _three_steps(**replace: str) -> bytes:
    text = THREE_STEPS.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


def _open_task(engine, actor, instance_id):
    return next(t for t in engine.tasks_for(actor, limit=500).tasks if t.instance_id == instance_id)


def test_versions_list_their_instances_and_the_live_one(engine):
    engine.deploy(read_files(THREE_STEPS))
    first = engine.start_process("three_steps", {}, SALLY)
    engine.deploy_changes(
        {"three_steps.bpmn": _three_steps(**{'name="Enter request"': 'name="Enter the request"'})}
    )
    engine.start_process("three_steps", {}, SALLY)
    engine.start_process("three_steps", {}, SALLY)
    engine.cancel(first, MONA)

    [v2, v1] = engine.definitions("three_steps")
    assert (v2.version, v2.latest, v2.instances, v2.running) == (2, True, {"running": 2}, 2)
    assert (v1.version, v1.latest, v1.instances, v1.running) == (1, False, {"cancelled": 1}, 0)
    assert db.session.get(ProcessInstance, first).process_version == 1


def test_current_files_and_the_source_of_each_version(engine):
    original = THREE_STEPS.read_bytes()
    engine.deploy(read_files(THREE_STEPS))
    changed = _three_steps(**{'name="Enter request"': 'name="Enter it"'})
    engine.deploy_changes({"three_steps.bpmn": changed})
    assert engine.current_files() == {"three_steps.bpmn": changed}
    [v2, v1] = engine.definitions("three_steps")
    assert engine.definition_source(v1.id) == ("three_steps.bpmn", original)
    assert engine.definition_source(v2.id) == ("three_steps.bpmn", changed)


def test_check_files_names_element_and_line_and_deploys_nothing(engine):
    engine.deploy(read_files(THREE_STEPS))
    broken = _three_steps(**{'<bpmn:userTask id="approve"': '<bpmn:userTask id="approve" bad="1"'})
    problems = engine.check_files({"three_steps.bpmn": broken})
    assert problems and all(p.file == "three_steps.bpmn" and p.line for p in problems)
    with pytest.raises(ProcessFileErrors):
        engine.deploy_changes({"three_steps.bpmn": broken})
    assert [d.version for d in engine.definitions("three_steps")] == [1]
    assert engine.check_files({}) == []


def test_check_files_refuses_an_unregistered_operation_like_deploy(engine):
    problems = engine.check_files(read_files(BPMN / "service_calls.bpmn"))
    deploy_error = None
    try:
        engine.deploy(read_files(BPMN / "service_calls.bpmn"))
    except ProcessFileErrors as exc:
        deploy_error = exc.errors
    assert problems == (deploy_error or [])


def test_element_states_follow_the_instance(engine):
    engine.deploy(read_files(THREE_STEPS))
    instance_id = engine.start_process("three_steps", {}, SALLY)
    states = engine.element_states(instance_id)
    assert states["start"] == "completed"
    assert states["enter_request"] == "active"
    assert "approve" not in states
    engine.complete_task(_open_task(engine, SALLY, instance_id).id, SALLY, {"subject": "Paper", "amount": 10})
    states = engine.element_states(instance_id)
    assert (states["enter_request"], states["approve"]) == ("completed", "active")


def test_waiting_timers_show_as_waiting(engine):
    engine.deploy(read_files(BPMN / "reminder.bpmn"))
    instance_id = engine.start_process("reminder", {}, SALLY)
    states = engine.element_states(instance_id)
    assert states["work"] == "active"
    assert states["every_3_days"] == "waiting" and states["after_30_days"] == "waiting"


def test_pruned_history_still_shows_as_completed(engine):
    engine.deploy(read_files(BPMN / "loop.bpmn"))
    instance_id = engine.start_process("loop", {"limit": 60}, SALLY)
    for n in range(30):
        [task] = engine.tasks_for(SALLY).tasks
        engine.complete_task(task.id, SALLY, {"note": f"pass {n}"})
    engine._cache.clear()
    states = engine.element_states(instance_id)
    assert "completed" in states.values()
    assert states.get("start") == "completed"  # long pruned away from the task tree


def test_migration_moves_a_waiting_instance_to_the_latest_version(engine):
    engine.deploy(read_files(THREE_STEPS))
    instance_id = engine.start_process("three_steps", {}, SALLY)
    engine.complete_task(_open_task(engine, SALLY, instance_id).id, SALLY, {"subject": "Paper", "amount": 10})
    engine.deploy_changes(
        {"three_steps.bpmn": _three_steps(**{'name="Approve request"': 'name="Approve the request"'})}
    )
    preview = engine.migration_preview(instance_id)
    assert (preview.from_version, preview.to_version, preview.possible) == (1, 2, True)
    assert any(c.startswith("approve") for c in preview.changed), preview

    assert engine.migrate_instance(instance_id, MONA) == 2
    row = db.session.get(ProcessInstance, instance_id)
    assert row.process_version == 2
    task = db.session.query(HumanTask).filter_by(instance_id=instance_id, spec_id="approve").one()
    assert task.name == "Approve the request" and task.status == "open"
    event = db.session.query(AuditEvent).filter_by(instance_id=instance_id, event="migrated").one()
    assert event.detail["from_version"] == 1 and event.actor == "mona"
    # and it goes on running on version 2
    engine._cache.clear()
    approver = _open_task(engine, MONA, instance_id)
    engine.complete_task(approver.id, MONA, {"decision": "approve"})
    assert engine.element_states(instance_id)["approve"] == "completed"
    again = engine.migration_preview(instance_id)
    assert not again.possible and "latest version" in again.reasons[0]
    with pytest.raises(InvalidState):
        engine.migrate_instance(instance_id, MONA)


def test_migration_refused_when_the_current_task_was_removed(engine):
    engine.deploy(read_files(THREE_STEPS))
    instance_id = engine.start_process("three_steps", {}, SALLY)
    text = THREE_STEPS.read_text()
    without_entry = re.sub(r'\s*<bpmn:userTask id="enter_request".*?</bpmn:userTask>', "", text, flags=re.S)
    without_entry = (
        without_entry.replace("<bpmn:flowNodeRef>enter_request</bpmn:flowNodeRef>", "")
        .replace('<bpmn:sequenceFlow id="f2" sourceRef="enter_request" targetRef="approve"/>', "")
        .replace('targetRef="enter_request"', 'targetRef="approve"')
        .replace("<bpmn:incoming>f2</bpmn:incoming>", "<bpmn:incoming>f1</bpmn:incoming>")
    )
    engine.deploy_changes({"three_steps.bpmn": without_entry.encode()})
    preview = engine.migration_preview(instance_id)
    assert not preview.possible
    assert preview.reasons[0].startswith("enter_request (Enter request) is ready"), preview.reasons
    assert "enter_request (Enter request)" in preview.removed
    with pytest.raises(InvalidState):
        engine.migrate_instance(instance_id, MONA)
    assert db.session.get(ProcessInstance, instance_id).process_version == 1
    assert engine.element_states(instance_id)["enter_request"] == "active"


def test_migration_restarts_a_timer_whose_definition_changed(engine, clock):
    reminder = (BPMN / "reminder.bpmn").read_text()
    engine.deploy({"reminder.bpmn": reminder.encode()})
    instance_id = engine.start_process("reminder", {}, SALLY)
    clock.advance(days=1)
    engine.deploy_changes({"reminder.bpmn": reminder.replace("P30D", "P10D").encode()})
    preview = engine.migration_preview(instance_id)
    assert preview.possible and any(r.startswith("after_30_days") for r in preview.restarted), preview
    engine.migrate_instance(instance_id, SALLY)
    due = {t.spec_id: t.due_at for t in db.session.query(Timer).filter_by(instance_id=instance_id)}
    assert due["after_30_days"].replace(tzinfo=None) == (
        clock.current.replace(tzinfo=None) + timedelta(days=10)
    )


def test_a_change_taken_back_is_deployed_as_a_new_version(engine):
    original = THREE_STEPS.read_bytes()
    engine.deploy({"three_steps.bpmn": original})
    engine.deploy_changes({"three_steps.bpmn": _three_steps(**{'name="Enter request"': 'name="Enter it"'})})
    result = engine.deploy_changes({"three_steps.bpmn": original})
    assert result.created and result.new_versions == {"three_steps": 3}
    assert engine.current_files() == {"three_steps.bpmn": original}
    # and the same files once more, while they are live, change nothing
    assert not engine.deploy_changes({"three_steps.bpmn": original}).created
    assert [d.version for d in engine.definitions("three_steps")] == [3, 2, 1]
