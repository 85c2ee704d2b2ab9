"""Resolve a task's JSON Schema form and validate submitted data against it; the one place that does."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from .errors import FieldError, InvalidData, NotFound

_REQUIRED = re.compile(r"^'(?P<name>[^']+)' is a required property")
_EXTRA = re.compile(r"\('(?P<names>[^)]+)' (?:was|were) unexpected\)")


_DATA_SCHEMAS = ("items", "additionalItems", "contains")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def _strict(schema: Any) -> Any:
    """Every object schema with declared properties refuses undeclared ones.

    Only schemas that describe data get it — properties, items, definitions — not the
    conditional parts (`if`/`then`/`allOf`...), which only add rules to a declared object."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _strict(sub) for name, sub in out[key].items()}
    for key in _DATA_SCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [_strict(sub) for sub in out["prefixItems"]]
    return out


class FormRegistry:
    def __init__(self, forms_dir: Path) -> None:
        self.forms_dir = Path(forms_dir)
        self._validator = lru_cache(maxsize=512)(self._load_validator)

    def path(self, form_ref: str) -> Path:
        path = (self.forms_dir / form_ref).resolve()
        if self.forms_dir.resolve() not in path.parents:
            raise NotFound(f"form {form_ref!r} is outside the forms folder")
        return path

    def schema(self, form_ref: str) -> dict[str, Any]:
        path = self.path(form_ref)
        if not path.is_file():
            raise NotFound(f"form {form_ref!r} does not exist in {self.forms_dir}")
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return schema

    def _stamp(self, form_ref: str) -> tuple[int, int] | None:
        """When the file last changed: a form saved by a designer in another process is read
        again by every process (each keeps its own cache)."""
        try:
            stat = self.path(form_ref).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _load_validator(self, form_ref: str, _stamp: tuple[int, int] | None = None) -> Draft202012Validator:
        schema = _strict(copy.deepcopy(self.schema(form_ref)))
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema, format_checker=FormatChecker())

    def validate(self, form_ref: str | None, data: dict[str, Any]) -> dict[str, Any]:
        """Return the data when it matches the form, else raise InvalidData naming each field."""
        if not isinstance(data, dict):
            raise InvalidData([FieldError("", "the submitted data must be an object")])
        if form_ref is None:
            if data:
                fields = ", ".join(sorted(data))
                raise InvalidData(
                    [FieldError(k, "this task has no form; no data is accepted") for k in data],
                    f"this task has no form; refused fields: {fields}",
                )
            return {}
        validator = self._validator(form_ref, self._stamp(form_ref))
        errors = [_field_error(e) for e in validator.iter_errors(_plain(data))]
        if errors:
            raise InvalidData(sorted(set(errors), key=lambda e: e.field))
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _field_error(error: Any) -> FieldError:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        match = _REQUIRED.match(error.message)
        name = match.group("name") if match else ""
        return FieldError("/".join(p for p in (path, name) if p), "this field is required")
    if error.validator == "additionalProperties":
        match = _EXTRA.search(error.message)
        names = match.group("names").replace("'", "").split(", ") if match else []
        field = "/".join(p for p in (path, ",".join(names)) if p)
        return FieldError(field, "this field is not part of the form")
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    message = error.message
    if error.validator == "pattern" and title:
        message = f"{title}: not a valid value"
    return FieldError(path, message)


def to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise InvalidData([FieldError("", f"{value!r} is not a number")]) from None
