"""The one configured SpiffWorkflow serializer.

Instance state is stored without its spec: the spec lives once per process definition
(`ProcessDefinition.spec_json`) and is attached again from the in-memory spec cache on load.
The serializer version is stored with every instance so a future SpiffWorkflow upgrade can
migrate explicitly instead of silently (notes point 13).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

SERIALIZER_VERSION = "1.5"


class _StateOnlyWorkflowConverter(BpmnWorkflowConverter):
    """Like SpiffWorkflow's converter, but leaves the specs out of the instance state."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(  # type: ignore[override]
        self, dct: dict[str, Any], spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]
    ) -> BpmnWorkflow:
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        dct["tasks"] = _parent_first(dct["tasks"], dct["root"])
        for sub in dct.get("subprocesses", {}).values():
            sub["tasks"] = _parent_first(sub["tasks"], sub["root"])
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _parent_first(tasks: dict[str, Any], root: str) -> dict[str, Any]:
    """Task data is stored as a delta against the parent (notes point 14): restore parents first,
    whatever order the stored mapping came in."""
    ordered: dict[str, Any] = {}
    stack = [root]
    while stack:
        task_id = stack.pop()
        if task_id in ordered or task_id not in tasks:
            continue
        ordered[task_id] = tasks[task_id]
        stack.extend(reversed(tasks[task_id]["children"]))
    for task_id, task in tasks.items():  # anything unreachable keeps its place at the end
        ordered.setdefault(task_id, task)
    return ordered


def _registry() -> Any:
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = _StateOnlyWorkflowConverter
    registry = BpmnWorkflowSerializer.configure(config)
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    return registry


_SERIALIZER = BpmnWorkflowSerializer(_registry(), version=SERIALIZER_VERSION)
_ENCODER = _SERIALIZER._encoder_cls


def dump_spec(spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]) -> str:
    registry = _SERIALIZER.registry
    return json.dumps(
        {
            "spec": registry.convert(spec),
            "subprocess_specs": {name: registry.convert(s) for name, s in sorted(subprocess_specs.items())},
        },
        sort_keys=True,
    )


def load_spec(spec_json: str) -> tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]:
    registry = _SERIALIZER.registry
    dct = json.loads(spec_json)
    spec = registry.restore(dct["spec"])
    subprocess_specs = {name: registry.restore(s) for name, s in dct["subprocess_specs"].items()}
    return spec, subprocess_specs


def dump_state(workflow: BpmnWorkflow) -> str:
    registry = _SERIALIZER.registry
    registry._encoder_mode = True
    try:
        dct = registry.convert(workflow)
        return json.dumps(dct, cls=_ENCODER, separators=(",", ":"))
    finally:
        registry._encoder_mode = False


def load_state(
    state: str,
    spec: BpmnProcessSpec,
    subprocess_specs: dict[str, BpmnProcessSpec],
    serializer_version: str = SERIALIZER_VERSION,
) -> BpmnWorkflow:
    if serializer_version != SERIALIZER_VERSION:
        raise ValueError(
            f"instance state has serializer version {serializer_version}, this engine reads "
            f"{SERIALIZER_VERSION}; migrate it before loading"
        )
    dct = json.loads(state)
    dct.pop("typename", None)
    converter = _SERIALIZER.registry.convert_from_dict["BpmnWorkflow"]
    workflow: BpmnWorkflow = converter(dct, spec=spec, subprocess_specs=subprocess_specs)
    return workflow


def spec_registry() -> Any:
    """The converter registry, for comparing specs (SpiffWorkflow's diff converts them with it)."""
    return _SERIALIZER.registry
