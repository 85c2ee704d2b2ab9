"""A task's JSON Schema as HTML form fields, and a submitted HTML form back into typed JSON.

The engine validates (`engine/forms.py` is the one place that does). This module only
turns the strings a browser sends into the types the schema declares — numbers, booleans,
choices, dates with their time zone, lines of a table — and keeps what the user typed so a
refused form comes back as they left it. Anything the schema does not declare is passed on
untouched, so the engine refuses it by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import get_timezone, to_user_timezone
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from engine.errors import FieldError

ROW_NAME = re.compile(r"^(?P<array>[^\[\]]+)\[(?P<index>\d{1,4})\]\[(?P<prop>[^\[\]]+)\]$")
IGNORED = frozenset({"csrf_token", "_add_rows"})
BLANK_ROWS = 3
_DATE_DMY = re.compile(r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_SPACES = re.compile(r"[\s\u00a0\u202f]")
_ENGINE_MESSAGES = {
    # engine messages the UI translates (the engine speaks English)
    "this field is required": lambda: _("This field is required."),
    "this field is not part of the form": lambda: _("This field is not part of the form."),
}


@dataclass
class Option:
    value: str
    label: str


@dataclass
class Field:
    name: str
    path: str
    label: str
    help: str
    required: bool
    widget: str
    options: list[Option] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    value: Any = ""
    errors: list[str] = field(default_factory=list)
    columns: list[Field] = field(default_factory=list)
    rows: list[list[Field]] = field(default_factory=list)

    @property
    def html_name(self) -> str:
        parts = self.path.split("/")
        return parts[0] + "".join(f"[{p}]" for p in parts[1:])

    @property
    def html_id(self) -> str:
        return "f-" + re.sub(r"[^\w-]", "_", self.path.replace("/", "-"))


@dataclass
class RenderedForm:
    title: str
    description: str
    fields: list[Field]
    form_errors: list[str]

    @property
    def has_errors(self) -> bool:
        return bool(self.form_errors) or any(_field_has_errors(f) for f in self.fields)

    def error_summary(self) -> list[tuple[str, str, str]]:
        """(anchor id, label, message) for every error, in page order."""
        out: list[tuple[str, str, str]] = []
        for f in self.fields:
            out.extend((f.html_id, f.label, m) for m in f.errors)
            for n, row in enumerate(f.rows, start=1):
                for cell in row:
                    label = _("%(table)s, line %(n)d: %(column)s", table=f.label, n=n, column=cell.label)
                    out.extend((cell.html_id, label, m) for m in cell.errors)
        return out


@dataclass
class Submission:
    data: dict[str, Any]
    raw: dict[str, Any]
    errors: list[FieldError]


def _field_has_errors(f: Field) -> bool:
    return bool(f.errors) or any(cell.errors for row in f.rows for cell in row)


# -- reading a schema ------------------------------------------------------------------------------
def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", "string")
    return list(t) if isinstance(t, list) else [t]


def _base_type(schema: dict[str, Any]) -> str:
    return next((t for t in _types(schema) if t != "null"), "string")


def _option_value(const: Any) -> str:
    return const if isinstance(const, str) else json.dumps(const)


def _options(schema: dict[str, Any]) -> list[tuple[Any, str]]:
    """(value, title) of a choice: `enum`, or `oneOf`/`anyOf` made of `const` with `title`."""
    if isinstance(schema.get("enum"), list):
        return [(v, _humanize(v)) for v in schema["enum"] if v is not None]
    for key in ("oneOf", "anyOf"):
        alternatives = schema.get(key)
        if isinstance(alternatives, list) and alternatives and all("const" in a for a in alternatives):
            return [(a["const"], a.get("title") or _humanize(a["const"])) for a in alternatives]
    return []


def _humanize(value: Any) -> str:
    return str(value).replace("_", " ").capitalize() if isinstance(value, str) else json.dumps(value)


def _is_decimal_pattern(schema: dict[str, Any]) -> bool:
    pattern = schema.get("pattern") or ""
    return "\\d" in pattern and "\\." in pattern


def widget_of(schema: dict[str, Any]) -> str:
    """The input a property gets: select, checkbox, integer, number, rows, date, datetime,
    email, decimal, textarea, text, or json for shapes a form cannot show as fields."""
    base = _base_type(schema)
    if _options(schema):
        return "select"
    if base == "boolean":
        return "checkbox"
    if base in ("integer", "number"):
        return base
    if base == "array":
        items = schema.get("items")
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):
            return "rows"
        return "json"
    if base == "object":
        return "json"
    fmt = schema.get("format")
    if fmt == "date":
        return "date"
    if fmt == "date-time":
        return "datetime"
    if fmt == "email":
        return "email"
    if _is_decimal_pattern(schema):
        return "decimal"
    if (schema.get("maxLength") or 0) > 200 or schema.get("x-widget") == "textarea":
        return "textarea"
    return "text"


def _accepts_empty(schema: dict[str, Any], widget: str) -> bool:
    """A required text without a minimum length may be sent empty."""
    return widget in ("text", "textarea") and not schema.get("minLength")


def _marked_required(name: str, schema: dict[str, Any], required: set[str]) -> bool:
    if name not in required or "null" in _types(schema):
        return False
    widget = widget_of(schema)
    return widget != "checkbox" and not _accepts_empty(schema, widget)


# -- schema -> fields ---------------------------------------------------------------------------------
def _attrs(schema: dict[str, Any], widget: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if widget in ("text", "textarea", "email", "decimal") and schema.get("maxLength"):
        attrs["maxlength"] = schema["maxLength"]
    if widget == "integer":
        attrs.update(type="number", step="1", inputmode="numeric")
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if key in schema:
                attrs[attr] = schema[key]
    elif widget in ("number", "decimal"):
        attrs.update(type="text", inputmode="decimal", autocomplete="off")
    elif widget == "date":
        attrs["type"] = "date"
    elif widget == "datetime":
        attrs["type"] = "datetime-local"
    elif widget == "email":
        attrs.update(type="email", autocomplete="email")
    elif widget == "text":
        attrs["type"] = "text"
    return attrs


def display_value(schema: dict[str, Any], value: Any) -> Any:
    """A JSON value as the input shows it (the schema's default, or data to edit again)."""
    widget = widget_of(schema)
    if value is None:
        return False if widget == "checkbox" else ""
    if widget == "checkbox":
        return bool(value)
    if widget == "select":
        return _option_value(value)
    if widget == "datetime" and isinstance(value, str):
        try:
            return to_user_timezone(datetime.fromisoformat(value)).strftime("%Y-%m-%dT%H:%M")
        except ValueError:
            return value
    if widget == "json":
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def initial_values(schema: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a new form shows: values from `data` where given, else each property's default."""
    values: dict[str, Any] = {}
    data = data or {}
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        value = data.get(name, sub.get("default"))
        if widget_of(sub) == "rows":
            item_props = sub["items"]["properties"]
            values[name] = [
                {p: display_value(s, row.get(p)) for p, s in item_props.items()}
                for row in (value or [])
                if isinstance(row, dict)
            ]
        else:
            values[name] = display_value(sub, value)
    return values


_FRIENDLIER = (
    # jsonschema's wording for the commonest mistakes, said the way the rest of the page speaks
    (re.compile(r"^\[\] should be non-empty$"), lambda: _("Add at least one line.")),
    (re.compile(r"^'.*' is not a 'email'$"), lambda: _("Enter an e-mail address like name@example.com.")),
    (re.compile(r"^'.*' is not a 'date'$"), lambda: _("Enter a date.")),
    (re.compile(r"^'.*' is not a 'date-time'$"), lambda: _("Enter a date and time.")),
)


def _translated(message: str) -> str:
    known = _ENGINE_MESSAGES.get(message)
    if known:
        return known()
    for pattern, friendly in _FRIENDLIER:
        if pattern.match(message):
            return friendly()
    return message


def build(
    schema: dict[str, Any],
    values: dict[str, Any] | None = None,
    errors: list[FieldError] | None = None,
    more_rows: str | None = None,
) -> RenderedForm:
    """The fields of a form: labels, help, choices, the values to show and the errors beside them.

    `values` are display values (what the user typed, or `initial_values`); `more_rows` names
    a table that gets extra blank lines."""
    values = initial_values(schema) if values is None else values
    pending: dict[str, list[str]] = {}
    for error in errors or []:
        head, _sep, names = error.field.rpartition("/")
        for name in names.split(",") if "," in names else [names]:
            path = f"{head}/{name}" if head else name
            pending.setdefault(path, []).append(_translated(error.message))
    required = set(schema.get("required") or [])
    fields: list[Field] = []
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        f = _field(name, name, sub, required, values.get(name), pending)
        if f.widget == "rows":
            item = sub["items"]
            item_required = set(item.get("required") or [])
            f.columns = [
                _field(p, p, s, item_required, None, {})
                for p, s in item["properties"].items()
                if isinstance(s, dict)
            ]
            given = [r for r in (values.get(name) or []) if isinstance(r, dict)]
            blank = BLANK_ROWS * (2 if more_rows == name else 1)
            count = max(len(given) + blank, sub.get("minItems") or 0)
            if sub.get("maxItems"):
                count = max(len(given), min(count, sub["maxItems"]))
            for index in range(count):
                row_values = given[index] if index < len(given) else {}
                f.rows.append(
                    [
                        _field(
                            c.name,
                            f"{name}/{index}/{c.name}",
                            s,
                            item_required,
                            row_values.get(c.name),
                            pending,
                        )
                        for c, s in zip(f.columns, _item_schemas(item), strict=True)
                    ]
                )
                for message in pending.pop(f"{name}/{index}", []):
                    f.errors.append(_("Line %(n)d: %(message)s", n=index + 1, message=message))
        fields.append(f)
    form_errors = [f"{path}: {m}" if path else m for path, messages in pending.items() for m in messages]
    return RenderedForm(
        title=_(schema["title"]) if schema.get("title") else "",
        description=_(schema["description"]) if schema.get("description") else "",
        fields=fields,
        form_errors=form_errors,
    )


def _item_schemas(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in item["properties"].values() if isinstance(s, dict)]


def _field(
    name: str,
    path: str,
    schema: dict[str, Any],
    required: set[str],
    value: Any,
    pending: dict[str, list[str]],
) -> Field:
    widget = widget_of(schema)
    label = schema.get("title") or name.replace("_", " ").capitalize()
    options = [Option(_option_value(v), _(t)) for v, t in _options(schema)]
    if value is None:
        value = display_value(schema, schema.get("default")) if widget != "rows" else []
    return Field(
        name=name,
        path=path,
        label=_(label),
        help=_(schema["description"]) if schema.get("description") else "",
        required=_marked_required(name, schema, required),
        widget=widget,
        options=options,
        attrs=_attrs(schema, widget),
        value=value,
        errors=pending.pop(path, []),
    )


# -- submitted form -> data -----------------------------------------------------------------------------
def parse(schema: dict[str, Any], form: MultiDict[str, str]) -> Submission:
    """The typed data for the engine, what the user typed (to show again), and conversion errors."""
    props: dict[str, Any] = {k: v for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict)}
    required = set(schema.get("required") or [])
    data: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    errors: list[FieldError] = []
    consumed: set[str] = set()
    rows_by_array: dict[str, dict[int, dict[str, str]]] = {}
    for key in form:
        match = ROW_NAME.match(key)
        if match and match["array"] in props and widget_of(props[match["array"]]) == "rows":
            rows = rows_by_array.setdefault(match["array"], {})
            rows.setdefault(int(match["index"]), {})[match["prop"]] = form.get(key, "")
            consumed.add(key)
    for name, sub in props.items():
        widget = widget_of(sub)
        if widget == "rows":
            item = sub["items"]
            item_props = {k: v for k, v in item["properties"].items() if isinstance(v, dict)}
            item_required = set(item.get("required") or [])
            parsed_rows: list[dict[str, Any]] = []
            raw_rows: list[dict[str, Any]] = []
            for index in sorted(rows_by_array.get(name, {})):
                cells = rows_by_array[name][index]
                if _blank_row(cells, item_props):
                    continue  # a blank line is not a line
                position = len(parsed_rows)
                row_data: dict[str, Any] = {}
                row_raw: dict[str, Any] = {}
                for prop, prop_schema in item_props.items():
                    text = cells.get(prop)
                    row_raw[prop] = _raw(prop_schema, text)
                    _convert_into(
                        row_data, errors, prop, f"{name}/{position}/{prop}", prop_schema, text, item_required
                    )
                for prop, text in cells.items():
                    if prop not in item_props:
                        row_data[prop] = text  # undeclared: the engine names it
                parsed_rows.append(row_data)
                raw_rows.append(row_raw)
            raw[name] = raw_rows
            if parsed_rows or name in required:
                data[name] = parsed_rows
            continue
        consumed.add(name)
        text = form.get(name)
        raw[name] = _raw(sub, text)
        _convert_into(data, errors, name, name, sub, text, required)
    for key in form:
        if key not in consumed and key not in IGNORED:
            data[key] = form.get(key)  # undeclared: the engine refuses it by name
    return Submission(data, raw, errors)


def _blank_row(cells: dict[str, str], item_props: dict[str, Any]) -> bool:
    """Nothing typed: every cell empty or still showing its default."""
    for prop, text in cells.items():
        value = text.strip()
        schema = item_props.get(prop)
        if schema is not None and widget_of(schema) == "checkbox":
            if _checked(value) != bool(schema.get("default", False)):
                return False
        elif value and (schema is None or value != str(display_value(schema, schema.get("default")))):
            return False
    return True


def _raw(schema: dict[str, Any], text: str | None) -> Any:
    if widget_of(schema) == "checkbox":
        return _checked(text)
    return text or ""


def _checked(text: str | None) -> bool:
    return text is not None and text.strip().lower() not in ("", "0", "off", "false", "no")


def _convert_into(
    target: dict[str, Any],
    errors: list[FieldError],
    name: str,
    path: str,
    schema: dict[str, Any],
    text: str | None,
    required: set[str],
) -> None:
    widget = widget_of(schema)
    if widget == "checkbox":
        target[name] = _checked(text)
        return
    value = (text or "").strip()
    if value == "":
        if "null" in _types(schema):
            target[name] = None
        elif name in required and _accepts_empty(schema, widget):
            target[name] = ""
        return  # left out: the engine says so if it is required
    try:
        target[name] = _convert(schema, widget, value)
    except ValueError as exc:
        errors.append(FieldError(path, str(exc)))


def _convert(schema: dict[str, Any], widget: str, value: str) -> Any:
    if widget == "select":
        for const, _title in _options(schema):
            if _option_value(const) == value:
                return const
        raise ValueError(_("Choose one of the listed options."))
    if widget == "integer":
        compact = _SPACES.sub("", value)
        if not _INTEGER.match(compact):
            raise ValueError(_("Enter a whole number."))
        return int(compact)
    if widget == "number":
        try:
            number = Decimal(_decimal_text(value))
        except InvalidOperation:
            raise ValueError(_("Enter a number.")) from None
        if not number.is_finite():
            raise ValueError(_("Enter a number."))
        return int(number) if number == number.to_integral_value() else float(number)
    if widget == "decimal":
        return _decimal_text(value)
    if widget == "date":
        match = _DATE_DMY.match(value)
        return f"{match['y']}-{int(match['m']):02d}-{int(match['d']):02d}" if match else value
    if widget == "datetime":
        return _datetime_text(value)
    if widget == "json":
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(_("Enter valid JSON.")) from None
    return value


def _decimal_text(value: str) -> str:
    """`1 234,50` -> `1234.50`: spaces as thousands separators, a comma as decimal sign."""
    compact = _SPACES.sub("", value)
    if compact.count(",") == 1 and "." not in compact:
        compact = compact.replace(",", ".")
    return compact


def _datetime_text(value: str) -> str:
    """A datetime-local value (the user's wall clock) as ISO 8601 with the offset of their zone."""
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(_("Enter a date and time.")) from None
    if moment.tzinfo is None:
        moment = get_timezone().localize(moment)
    return moment.isoformat()
