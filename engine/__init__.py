"""The back-office BPMN runtime: the public surface."""

from .engine import SYSTEM, Actor, DeployResult, Engine, TaskPage, TaskView
from .errors import (
    Conflict,
    EngineError,
    FieldError,
    Forbidden,
    InvalidData,
    InvalidState,
    NotFound,
    NotWaiting,
    ProcessFileError,
    ProcessFileErrors,
    ScriptError,
)

__all__ = [
    "SYSTEM",
    "Actor",
    "Conflict",
    "DeployResult",
    "Engine",
    "EngineError",
    "FieldError",
    "Forbidden",
    "InvalidData",
    "InvalidState",
    "NotFound",
    "NotWaiting",
    "ProcessFileError",
    "ProcessFileErrors",
    "ScriptError",
    "TaskPage",
    "TaskView",
]
