"""The sandbox holds through the engine: after every load, and against data that tries to smuggle globals."""

from __future__ import annotations

from pathlib import Path

from engine.scripts import SandboxedScriptEngine
from tests.conftest import SALLY, read_files

BPMN = Path(__file__).parent / "bpmn"


def test_loaded_instances_run_on_the_sandbox(engine):
    engine.deploy(read_files(BPMN / "loop.bpmn"))
    instance_id = engine.start_process("loop", {"limit": 3}, SALLY)
    engine._cache.clear()
    step = engine._load(instance_id)
    assert isinstance(step.instance.workflow.script_engine, SandboxedScriptEngine)
    engine._abort(instance_id)


def test_smuggled_builtins_in_start_data_do_nothing(engine):
    engine.deploy(read_files(BPMN / "loop.bpmn"))
    smuggled = {"limit": 2, "__builtins__": {"__import__": "os"}, "_getattr_": "getattr", "_print_": 1}
    instance_id = engine.start_process("loop", smuggled, SALLY)
    for _ in range(2):
        [task] = engine.tasks_for(SALLY).tasks
        engine.complete_task(task.id, SALLY, {"note": "__import__('os').system('true')"})
    data = engine.instance_data(instance_id)
    assert data["count"] == 2  # scripts ran normally, in the sandbox, with the smuggled keys ignored
    assert data["note"] == "__import__('os').system('true')"  # data stays data
