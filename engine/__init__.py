"""The back-office BPMN runtime: the public surface."""

from .definitions import DefinitionInfo
from .engine import SYSTEM, Actor, DeployResult, Engine, MigrationPreview, TaskPage, TaskView
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
    "DefinitionInfo",
    "DeployResult",
    "Engine",
    "EngineError",
    "FieldError",
    "Forbidden",
    "InvalidData",
    "InvalidState",
    "MigrationPreview",
    "NotFound",
    "NotWaiting",
    "ProcessFileError",
    "ProcessFileErrors",
    "ScriptError",
    "TaskPage",
    "TaskView",
]
