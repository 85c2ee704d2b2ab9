"""A task form (JSON Schema) as a designer edits it: is the text a form, and may it replace the
form running instances use?

Forms are not versioned with the processes: a task that is waiting now shows and validates the
form saved last, and the process behind it reads the fields it knew when it was drawn. So a
change may add (fields, labels, help, choices, constraints) but never take away what a running
process reads: a field, its type, its being required, or a choice a gateway may branch on.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from flask_babel import gettext as _


def parse_form(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The schema in `text` and the problems that keep it from being a form ([] when it is one)."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            _("Not valid JSON: %(error)s (line %(line)d, column %(column)d).",
              error=exc.msg, line=exc.lineno, column=exc.colno)
        ]  # fmt: skip
    if not isinstance(schema, dict):
        return None, [_("A form is a JSON object (a schema starting with {).")]
    problems = []
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "/"
        problems.append(
            _(
                "Not a valid JSON Schema (Draft 2020-12) at %(where)s: %(error)s",
                where=where,
                error=exc.message,
            )
        )
    if schema.get("type") != "object":
        problems.append(_('A form describes an object: "type" must be "object".'))
    if not isinstance(schema.get("properties"), dict):
        problems.append(_('A form lists its fields under "properties" (an object).'))
    return (schema if not problems else None), problems


def _types(schema: dict[str, Any]) -> frozenset[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(str(t) for t in declared)
    return frozenset()


def _choices(schema: dict[str, Any]) -> list[Any]:
    """The values a choice field offers: `enum`, or `oneOf`/`anyOf` made of `const`."""
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    for key in ("oneOf", "anyOf"):
        alternatives = schema.get(key)
        if (
            isinstance(alternatives, list)
            and alternatives
            and all(isinstance(a, dict) and "const" in a for a in alternatives)
        ):
            return [a["const"] for a in alternatives]
    return []


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {name: sub for name, sub in props.items() if isinstance(sub, dict)}


def _required(schema: dict[str, Any]) -> set[str]:
    required = schema.get("required")
    return {str(r) for r in required} if isinstance(required, list) else set()


def incompatibilities(
    current: dict[str, Any], proposed: dict[str, Any], path: str = ""
) -> list[tuple[str, str]]:
    """(field, reason) for every change that could break a running instance; [] when compatible.

    Fields of nested objects and of table lines are named like `lines[].qty`."""
    problems: list[tuple[str, str]] = []
    old_props, new_props = _properties(current), _properties(proposed)
    newly_optional = _required(current) - _required(proposed)
    for name, old in old_props.items():
        where = f"{path}{name}"
        new = new_props.get(name)
        if new is None:
            problems.append((where, _("The field was removed; running instances read it.")))
            continue
        old_types, new_types = _types(old), _types(new)
        if old_types and old_types != new_types:
            before = "/".join(sorted(old_types))
            after = "/".join(sorted(new_types)) or _("no type")
            problems.append(
                (where, _("The type changed from %(old)s to %(new)s; running instances read it as %(old)s.",
                          old=before, new=after))
            )  # fmt: skip
            continue
        if name in newly_optional:
            problems.append((where, _("The field is no longer required; running instances expect it.")))
        removed = [c for c in _choices(old) if c not in _choices(new)] if _choices(old) else []
        if removed and _choices(new):
            shown = ", ".join(_shown(c) for c in removed)
            problems.append(
                (where, _("The choice %(choices)s was removed; processes may branch on it.", choices=shown))
            )
        elif removed:
            problems.append(
                (where, _("The field no longer offers its choices; processes may branch on them."))
            )
        problems.extend(incompatibilities(old, new, f"{where}."))
        old_items, new_items = old.get("items"), new.get("items")
        if isinstance(old_items, dict) and isinstance(new_items, dict):
            problems.extend(incompatibilities(old_items, new_items, f"{where}[]."))
    return problems
