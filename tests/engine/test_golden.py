"""Golden serialized instances written by this engine must keep loading and running.

They pin SpiffWorkflow's serialized format (notes point 13): if an upgrade changes it, these
fail before any stored instance does. Regenerate only together with a migration."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.instance import Instance, engine_clock
from engine.scripts import SandboxedScriptEngine
from engine.serializer import SERIALIZER_VERSION, dump_state, load_state
from engine.specs import parse_files

HERE = Path(__file__).parent
GOLDEN = sorted((HERE / "golden").glob("*.json"))


def restore(name: str) -> Instance:
    golden = json.loads((HERE / "golden" / f"{name}.json").read_text())
    assert golden["serializer_version"] == SERIALIZER_VERSION
    bundle = parse_files({golden["bpmn"]: (HERE / "bpmn" / golden["bpmn"]).read_bytes()}, HERE / "forms")
    process_id = golden["bpmn"].removesuffix(".bpmn")
    wf = load_state(
        json.dumps(golden["state"]),
        bundle.processes[process_id],
        bundle.subprocess_specs.get(process_id, {}),
        golden["serializer_version"],
    )
    return Instance(wf, SandboxedScriptEngine())


def complete(inst: Instance, spec_id: str, **data: object) -> None:
    [task] = [t for t in inst.ready_user_tasks() if t.task_spec.name == spec_id]
    inst.complete_user_task(task, data)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_state_round_trips(path):
    inst = restore(path.stem)
    again = load_state(dump_state(inst.workflow), inst.workflow.spec, inst.workflow.subprocess_specs)
    assert sorted(str(t) for t in again.tasks) == sorted(str(t) for t in inst.workflow.tasks)


def test_three_steps_continues_from_approval():
    inst = restore("three_steps_at_approval")
    assert [t.task_spec.name for t in inst.ready_user_tasks()] == ["approve"]
    complete(inst, "approve", decision="approve")
    complete(inst, "book", reference="B-7")
    assert inst.completed and inst.data["subject"] == "Golden" and inst.data["reference"] == "B-7"


def test_reminder_fires_its_cycle_after_load():
    inst = restore("reminder_waiting_on_timers")
    due = min(t.due_at for t in inst.waiting_timers())
    later = due + timedelta(minutes=1)
    with engine_clock(lambda: later):
        inst.fire_timers(later)
    assert sorted(t.task_spec.name for t in inst.ready_user_tasks()) == ["follow_up", "work"]
    assert due < datetime(2027, 1, 1, tzinfo=UTC)


def test_loop_finishes_its_remaining_passes():
    inst = restore("loop_after_25_passes")
    for _ in range(5):
        complete(inst, "step")
    assert inst.completed and inst.data["count"] == 30
