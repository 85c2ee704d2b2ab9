"""Named Python operations that BPMN service tasks call.

    @operation("create_quote")
    def create_quote(ctx: OperationContext, lead_id: int, lines: list) -> dict: ...

The returned dict is stored in the task data under the service task's result variable.
An exception puts the instance into `error` with an incident.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OperationFunc = Callable[..., Any]


_REGISTRY: dict[str, OperationFunc] = {}


@dataclass(frozen=True)
class OperationContext:
    """What an operation may know about where it is called from."""

    instance_id: int
    process_id: str
    task_spec_id: str
    now: datetime
    data: dict[str, Any]
    business_key: str | None = None
    actor: str = "system"  # who made the step that reached this service task
    task_id: str = ""  # the SpiffWorkflow task running the operation (unique per run of the task)


def operation(name: str) -> Callable[[OperationFunc], OperationFunc]:
    def register(func: OperationFunc) -> OperationFunc:
        if name in _REGISTRY and _REGISTRY[name] is not func:
            raise ValueError(f"operation {name!r} is already registered by {_REGISTRY[name].__module__}")
        _REGISTRY[name] = func
        return func

    return register


def get_operation(name: str) -> OperationFunc:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LookupError(f"no operation named {name!r} is registered with the engine") from None


def registered_operations() -> frozenset[str]:
    return frozenset(_REGISTRY)
