"""Long histories: a 1,000-pass loop completes (SpiffWorkflow alone stalls near 250 passes)
and the stored state stays small because completed history is pruned."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from engine.db import db
from engine.models import ProcessInstance
from tests.conftest import SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"


def test_thousand_pass_loop_completes(engine):
    engine.deploy(read_files(BPMN / "loop.bpmn"))
    instance_id = engine.start_process("loop", {"limit": 1000}, SALLY)
    sizes = {}
    for n in range(1, 1001):
        [task] = engine.tasks_for(SALLY).tasks
        engine.complete_task(task.id, SALLY, {"note": f"pass {n}"})
        if n in (10, 999):
            sizes[n] = len(
                db.session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
            )
    row = db.session.get(ProcessInstance, instance_id)
    assert row.status == "completed"
    assert engine.tasks_for(SALLY).tasks == []
    assert engine.instance_data(instance_id)["count"] == 1000
    # pruned: the state after 999 passes is within a small factor of the state after 10
    assert sizes[999] < 3 * sizes[10], sizes


def test_loop_survives_reload_between_every_step(engine):
    engine.deploy(read_files(BPMN / "loop.bpmn"))
    instance_id = engine.start_process("loop", {"limit": 300}, SALLY)
    for _ in range(300):
        engine._cache.clear()  # force a load from the database every step
        [task] = engine.tasks_for(SALLY).tasks
        engine.complete_task(task.id, SALLY, {})
    assert db.session.get(ProcessInstance, instance_id).status == "completed"
    assert engine.instance_data(instance_id)["count"] == 300
