"""Sandboxed script environment for SpiffWorkflow 3.2.0.

Every piece of Python in a process model (script tasks, gateway conditions, timer expressions,
DMN entries, pre/post scripts, service task parameters) goes through the script engine.
SpiffWorkflow's default engine runs it with plain ``exec``/``eval``, so ``import os`` works.
This module compiles with RestrictedPython and runs the result with a whitelist of builtins
and RestrictedPython's guards.

Public API:

- :func:`check_source` tells a designer whether a script/expression is accepted, with a
  one-line reason when it is not.
- :func:`is_iso_timer_literal` / :func:`timer_expression` handle the unquoted ISO 8601
  timer literals that modelers write (``P3D``, ``R3/PT10M``, ``2026-12-01T09:00:00Z``).
- :class:`SandboxedScriptEngine` is the ``PythonScriptEngine`` to give every workflow
  (set it again after deserializing a workflow: the engine is not serialized).

Timer expressions must produce ISO 8601 *strings* (``"P%dD" % days``,
``isoformat(add_days(today(), 3))``): SpiffWorkflow crashes on a ``datetime`` value.

Nothing limits CPU or memory use (``while True: pass``); run untrusted models with a
time limit elsewhere.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import operator
import re
import textwrap
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.Guards import safer_getattr as _rp_safer_getattr
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

__all__ = [
    "FORBIDDEN_NAMES",
    "SandboxError",
    "SandboxedScriptEngine",
    "SandboxedTaskDataEnvironment",
    "ScriptRefused",
    "ServiceNotConfigured",
    "check_source",
    "is_iso_timer_literal",
    "timer_expression",
]

#: Names a script may not mention at all (not even as a variable of its own).
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "type",
        "object",
        "__builtins__",
        "super",
        "breakpoint",
        "input",
        "memoryview",
        "dir",
        "help",
        "exit",
        "quit",
    }
)

_FILENAME = "<string>"  # PythonScriptEngine looks for this name in tracebacks to find the line.
_CACHE_SIZE = 4096


# ---------------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------------


class _SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus: no imports, no class statements, no forbidden names."""

    def visit_Import(self, node: ast.Import) -> ast.AST:
        self.error(node, "import statements are not allowed")
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        self.error(node, "import statements are not allowed")
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.error(node, "class definitions are not allowed")
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (
            node.attr in ("format", "format_map")
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            self.error(node, "str.format() is not allowed, use an f-string or %")
            return node
        result: ast.AST = super().visit_Attribute(node)
        return result

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in FORBIDDEN_NAMES:
            self.error(node, f'"{node.id}" is not allowed')
            return node
        result: ast.AST = super().visit_Name(node)
        return result


class _Compiled(NamedTuple):
    code: Any  # a code object, or None when refused
    error: str | None  # one-line message when refused
    lineno: int  # line of the first problem, 0 if unknown
    is_syntax_error: bool


_LINE_PREFIX = re.compile(r"^Line (\d+|None): ")


def _normalise_message(message: str) -> tuple[str, int]:
    """RestrictedPython says 'Line 3: Foo.'; we say 'line 3: Foo'."""
    message = message.strip().rstrip(".")
    match = _LINE_PREFIX.match(message)
    if match is None:
        return message, 0
    rest = message[match.end() :]
    if match.group(1) == "None":
        return rest, 0
    lineno = int(match.group(1))
    return f"line {lineno}: {rest}", lineno


def _prepare(source: str, mode: str) -> str:
    if mode == "eval":
        return source.strip()
    # Scripts embedded in XML are often indented as a block; line numbers are kept.
    return textwrap.dedent(source)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str, mode: str) -> _Compiled:
    if mode not in ("exec", "eval"):
        raise ValueError(f"mode must be 'exec' or 'eval', not {mode!r}")
    prepared = _prepare(source, mode)
    if mode == "eval" and not prepared:
        return _Compiled(None, "the expression is empty", 0, True)
    try:
        ast.parse(prepared, _FILENAME, mode)
    except SyntaxError as err:
        lineno = err.lineno or 0
        where = f"line {lineno}: " if lineno else ""
        return _Compiled(None, f"{where}syntax error: {err.msg}", lineno, True)
    except (ValueError, TypeError) as err:  # e.g. null bytes
        return _Compiled(None, f"syntax error: {err}", 0, True)
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(prepared, filename=_FILENAME, policy=_SandboxPolicy)
    if result.errors:
        # RestrictedPython reports nested problems innermost-last; show them in reading order.
        indexed = [(_normalise_message(m), i) for i, m in enumerate(result.errors)]
        indexed.sort(key=lambda item: (item[0][1], -item[1]))
        messages = [m for m, _ in indexed]
        lineno = next((n for _, n in messages if n), 0)
        return _Compiled(None, "; ".join(dict.fromkeys(m for m, _ in messages)), lineno, False)
    return _Compiled(result.code, None, 0, False)


def check_source(source: str, mode: str) -> str | None:
    """Whether ``source`` is accepted by the sandbox.

    ``mode`` is ``"exec"`` for scripts, ``"eval"`` for conditions and expressions.
    Returns None when it compiles, else a one-line message such as
    ``line 1: import statements are not allowed``. Unknown names are fine: they are task data.
    """
    return _compile(source, mode).error


# ---------------------------------------------------------------------------------------------
# Timer literals
# ---------------------------------------------------------------------------------------------

_NUM = r"\d+(?:[.,]\d+)?"
_DURATION = (
    rf"P(?=\d|T\d)(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
    rf"(?:T(?=\d)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)
_DATETIME = (
    r"\d{4}-\d{2}-\d{2}"
    r"(?:T\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_WEEKDATE = r"\d{4}-?W\d{2}-?\d(?:T\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
_POINT = rf"(?:{_DATETIME}|{_WEEKDATE})"
_CYCLE = rf"R\d*/(?:(?:{_DURATION})|{_POINT}/(?:{_DURATION})|(?:{_DURATION})/{_POINT})"
_TIMER_LITERAL = re.compile(rf"(?:{_DURATION})|{_POINT}|{_CYCLE}")


def is_iso_timer_literal(text: str) -> bool:
    """True when ``text`` (stripped) is an unquoted ISO 8601 timer value.

    Durations (``P3D``, ``PT4H``, ``P1DT2H``), date-times (``2026-12-01T09:00:00+01:00``),
    dates (``2026-12-01``) and recurring intervals (``R3/PT10M``, ``R/P1D``,
    ``R3/2026-12-01T09:00:00Z/PT1H``).
    """
    return _TIMER_LITERAL.fullmatch(text.strip()) is not None


def timer_expression(text: str) -> str:
    """The Python expression for a timer field: a quoted literal for ISO text, else ``text``."""
    if is_iso_timer_literal(text):
        return repr(text.strip())
    return text


# ---------------------------------------------------------------------------------------------
# Sandbox globals
# ---------------------------------------------------------------------------------------------

_SAFE_BUILTIN_NAMES = (
    "abs",
    "all",
    "any",
    "bool",
    "chr",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "int",
    "isinstance",
    "len",
    "list",
    "map",
    "max",
    "min",
    "ord",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    # harmless exception classes, for try/except and raise
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "OverflowError",
    "RuntimeError",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
)


# C code such as ``datetime.strftime``/``strptime`` imports ``time``/``_strptime`` through the
# ``__import__`` of the *calling* frame's builtins, so the sandbox needs one. Scripts cannot
# name it (names starting with ``_`` and ``import`` statements are refused at compile time);
# it only hands out these modules.
_INTERNAL_IMPORTS = frozenset({"time", "_strptime"})


def _internal_import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: tuple[str, ...] | list[str] | None = (),
    level: int = 0,
) -> Any:
    if level != 0 or name not in _INTERNAL_IMPORTS:
        raise ImportError(f"import of {name!r} is not allowed in scripts")
    return importlib.import_module(name)


def _build_safe_builtins() -> dict[str, Any]:
    import builtins

    safe: dict[str, Any] = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    safe.update({"True": True, "False": False, "None": None, "__import__": _internal_import})
    return safe


_SAFE_BUILTINS: Mapping[str, Any] = _build_safe_builtins()

_INPLACE_OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    """``x += y`` becomes ``x = _inplacevar_('+=', x, y)``; only the usual operators."""
    try:
        func = _INPLACE_OPERATORS[op]
    except KeyError:
        raise TypeError(f"operator {op!r} is not allowed") from None
    return func(target, value)


_MISSING = object()


def _safer_getattr_raise(obj: Any, name: str) -> Any:
    value = _rp_safer_getattr(obj, name, _MISSING)
    if value is _MISSING:
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
    return value


def _getitem(obj: Any, index: Any) -> Any:
    return obj[index]


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_GUARDS: Mapping[str, Any] = {
    "_getattr_": _safer_getattr_raise,
    "_getitem_": _getitem,
    "_getiter_": iter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_write_": full_write_guard,
    "_inplacevar_": _inplacevar,
    "_apply_": _apply,
    "_print_": PrintCollector,  # print() works; the output is discarded
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_date(value: str | date) -> date:
    """ISO date (``2026-12-01``) → date; ISO date-time → datetime. Dates pass through."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise TypeError(f"parse_date expects an ISO date string, not {type(value).__name__}")
    text = value.strip()
    if len(text) <= 10 and "T" not in text:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text)


def add_days(value: str | date, days: int | float) -> date:
    """``value`` (date, datetime or ISO string) plus ``days`` days."""
    return parse_date(value) + timedelta(days=days)


def days_between(start: str | date, end: str | date) -> int:
    """Whole days from ``start`` to ``end`` (negative if ``end`` is earlier).

    Two date-times are compared exactly; otherwise date-times are reduced to their date.
    """
    a, b = parse_date(start), parse_date(end)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return (b - a).days
    if isinstance(a, datetime):
        a = a.date()
    if isinstance(b, datetime):
        b = b.date()
    return (b - a).days


def isoformat(value: date | time | str | None) -> str | None:
    """ISO string of a date, datetime or time; strings and None pass through."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"isoformat expects a date, datetime or time, not {type(value).__name__}")


def _make_helpers(clock: Callable[[], datetime]) -> dict[str, Any]:
    def now() -> datetime:
        """The engine clock, timezone-aware UTC."""
        value = clock()
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def today() -> date:
        """Today's date in UTC, from the engine clock."""
        return now().date()

    return {
        "Decimal": Decimal,
        "date": date,
        "datetime": datetime,
        "time": time,
        "timedelta": timedelta,
        "timezone": timezone,
        "now": now,
        "today": today,
        "parse_date": parse_date,
        "add_days": add_days,
        "days_between": days_between,
        "isoformat": isoformat,
    }


# ---------------------------------------------------------------------------------------------
# Task data filtering
# ---------------------------------------------------------------------------------------------

_SCALAR_TYPES = (str, int, float, bool, Decimal, date, time, timedelta, bytes, type(None))
_MAX_DATA_DEPTH = 50


def _is_data(value: Any, depth: int = 0) -> bool:
    """Plain data: scalars, dates, Decimal and lists/tuples/sets/dicts of those."""
    if isinstance(value, _SCALAR_TYPES):
        return True
    if depth > _MAX_DATA_DEPTH:
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return all(_is_data(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(_is_data(k, depth + 1) and _is_data(v, depth + 1) for k, v in value.items())
    return False


# ---------------------------------------------------------------------------------------------
# Environment and engine
# ---------------------------------------------------------------------------------------------


class SandboxError(Exception):
    """Base class of errors raised by this module."""


class ScriptRefused(SandboxError):
    """The script or expression does not compile in the sandbox (syntax or policy)."""

    def __init__(self, message: str, lineno: int = 0, is_syntax_error: bool = False) -> None:
        super().__init__(message)
        self.lineno = lineno
        self.is_syntax_error = is_syntax_error


class ServiceNotConfigured(SandboxError):
    """A service task ran but the engine has no service handler."""


def _compiled_or_raise(source: str, mode: str) -> Any:
    compiled = _compile(source, mode)
    if compiled.error is not None:
        if compiled.is_syntax_error:
            raise ScriptRefused(f"Script has a syntax error: {compiled.error}", compiled.lineno, True)
        raise ScriptRefused(f"Script refused by the sandbox: {compiled.error}", compiled.lineno)
    return compiled.code


class SandboxedTaskDataEnvironment(TaskDataEnvironment):
    """A ``TaskDataEnvironment`` that compiles with RestrictedPython and runs in restricted globals.

    Task data keys starting with ``_`` are never visible to scripts (they could otherwise
    replace ``__builtins__`` or the guards). Task data may shadow helper names (a field called
    ``date`` is plausible); that only hides the helper for that script.
    """

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        environment_globals: Mapping[str, Any] | None = None,
    ) -> None:
        extra = dict(environment_globals or {})
        bad = sorted(k for k in extra if k.startswith("_"))
        if bad:
            raise ValueError(f"environment globals may not start with '_': {bad}")
        helpers = _make_helpers(clock or _utc_now)
        helpers.update(extra)
        # self.globals: names visible to scripts besides task data (helpers + extras).
        super().__init__(helpers)
        base: dict[str, Any] = {"__builtins__": dict(_SAFE_BUILTINS), "__name__": "script"}
        base.update(_GUARDS)
        base.update(helpers)
        self._base_globals = base

    def build_globals(
        self, context: Mapping[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The namespace a script runs in: sandbox globals + external context + task data.

        Keys starting with ``_`` from task data or external context are ignored.
        """
        namespace = self._base_globals.copy()
        if external_context:
            namespace.update({k: v for k, v in external_context.items() if k[:1] != "_"})
        namespace.update({k: v for k, v in context.items() if k[:1] != "_"})
        return namespace

    def evaluate(
        self, expression: str, context: dict[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> Any:
        code = _compiled_or_raise(expression, "eval")
        return eval(code, self.build_globals(context, external_context))

    def execute(
        self, script: str, context: dict[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> bool:
        code = _compiled_or_raise(script, "exec")
        namespace = self.build_globals(context, external_context)
        try:
            exec(code, namespace)
        finally:
            self._write_back(namespace, context, external_context or {})
        return True

    def _write_back(
        self, namespace: dict[str, Any], context: dict[str, Any], external_context: Mapping[str, Any]
    ) -> None:
        """Copy the variables the script set into task data, keeping only plain data."""
        base = self._base_globals
        for key in [k for k in context if k[:1] != "_" and k not in namespace]:
            del context[key]  # the script deleted it
        for key, value in namespace.items():
            if key[:1] == "_":
                continue
            if key in context and context[key] is value:
                continue  # unchanged (possibly mutated in place)
            if key in base and base[key] is value:
                continue  # a helper, untouched
            if key in external_context and external_context[key] is value:
                continue
            if _is_data(value):
                context[key] = value
            elif key in context:
                del context[key]  # rebound to something that is not data

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError("service calls go through SandboxedScriptEngine.call_service")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class SandboxedScriptEngine(PythonScriptEngine):
    """``PythonScriptEngine`` whose scripts and expressions run in the RestrictedPython sandbox.

    - ``clock`` feeds ``now()``/``today()`` (default: the system clock, UTC).
    - ``service_handler(task, operation_name, operation_params)`` runs spiff service tasks;
      ``operation_params`` is ``{name: {'value': ..., 'type': ...}}``. Its result is returned
      to SpiffWorkflow as JSON (Decimal → str, date/datetime → ISO string).
    - ``environment_globals`` adds names visible to every script (not starting with ``_``).

    Evaluating an unquoted ISO timer literal (``P3D``, ``R/P1D``, ``2026-12-01``) returns the
    literal string. Timer expressions must produce strings: SpiffWorkflow cannot use a
    ``datetime`` value.
    """

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        service_handler: Callable[[Any, str, dict[str, Any]], Any] | None = None,
        environment_globals: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(environment=SandboxedTaskDataEnvironment(clock, environment_globals))
        self.service_handler = service_handler

    def evaluate(self, task: Any, expression: str, external_context: Mapping[str, Any] | None = None) -> Any:
        if is_iso_timer_literal(expression):
            return expression.strip()
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as err:
            err.add_note(f"Error evaluating expression '{expression}'")
            raise
        except ScriptRefused as err:
            raise WorkflowTaskException(
                f"Error evaluating expression '{expression}': {err}", task=task, exception=err
            ) from err
        except Exception as err:
            raise WorkflowTaskException(
                f"Error evaluating expression '{expression}': {_describe(err)}", task=task, exception=err
            ) from err

    def execute(self, task: Any, script: str, external_context: Mapping[str, Any] | None = None) -> Any:
        try:
            return self.environment.execute(script, task.data, external_context or {})
        except Exception as err:
            raise self.create_task_exec_exception(task, script, err) from err

    def create_task_exec_exception(self, task: Any, script: str, err: Exception) -> Exception:
        if isinstance(err, ScriptRefused):
            lines = textwrap.dedent(script).splitlines()
            error_line = lines[err.lineno - 1].strip() if 0 < err.lineno <= len(lines) else ""
            return WorkflowTaskException(
                str(err), task=task, exception=err, line_number=err.lineno or None, error_line=error_line
            )
        if isinstance(err, SpiffWorkflowException):
            result: Exception = super().create_task_exec_exception(task, script, err)
            return result
        # The stock version does ``name + ":" + err.args[0]``, which fails on e.g. KeyError(1).
        line_number, error_line = self.get_error_line_number_and_content(textwrap.dedent(script), err)
        return WorkflowTaskException(
            _describe(err), task=task, exception=err, line_number=line_number, error_line=error_line
        )

    def call_service(
        self,
        task: Any,
        operation_name: str = "",
        operation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """Call the service handler; its result goes back as a JSON string. Errors propagate as-is."""
        if self.service_handler is None:
            raise ServiceNotConfigured(
                f"No service handler is configured to run service operation {operation_name!r}"
            )
        result = self.service_handler(task, operation_name, operation_params or {})
        return json.dumps(result, default=_json_default)


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
