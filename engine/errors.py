"""Every exception the engine raises. The docstring is the default message.

The web layer maps them to HTTP once: NotFound -> 404, Forbidden -> 403,
Conflict -> 409, InvalidData / ProcessFileErrors -> 422.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(Exception):
    """The engine refused the request."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class NotFound(EngineError):
    """No such object."""


class Forbidden(EngineError):
    """You may not act on this object."""


class Conflict(EngineError):
    """Somebody changed this object meanwhile; nothing was changed."""


class NotWaiting(EngineError):
    """No instance is waiting for this message."""


class InvalidState(EngineError):
    """The object is not in a state that allows this command."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of submitted data; `field` is a JSON path like `lines/0/qty`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field or '(form)'}: {self.message}"


class InvalidData(EngineError):
    """The submitted data does not match the form."""

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        self.errors = list(errors)
        super().__init__(message or "; ".join(str(e) for e in self.errors) or self.__doc__)


@dataclass(frozen=True)
class ProcessFileError:
    """One problem in a BPMN/DMN file, located as precisely as the file allows."""

    file: str
    line: int | None
    element_id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.element_id}: {self.message}" if self.element_id else f"{where}: {self.message}"


class ProcessFileErrors(EngineError):
    """The process files have errors; nothing was deployed."""

    def __init__(self, errors: list[ProcessFileError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or self.__doc__)


class ScriptError(EngineError):
    """A script or expression failed or was refused by the sandbox."""
