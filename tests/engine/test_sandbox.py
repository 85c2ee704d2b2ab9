"""The RestrictedPython sandbox behind every script, condition and timer expression."""

from __future__ import annotations

import builtins
import json
import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from RestrictedPython import compile_restricted_exec
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.scripts import (
    SandboxedScriptEngine,
    ScriptRefused,
    ServiceNotConfigured,
    check_source,
    is_iso_timer_literal,
    timer_expression,
)

FIXED_NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED_NOW


def make_task(data: dict[str, Any] | None = None) -> Any:
    """A real SpiffWorkflow task (the READY start event of a small workflow) holding ``data``."""
    workflow = start_workflow("pass", data or {})
    return workflow.get_tasks(state=TaskState.READY)[0]


def run(script: str, data: dict[str, Any] | None = None, **engine_kwargs: Any) -> dict[str, Any]:
    engine = SandboxedScriptEngine(**engine_kwargs)
    context = dict(data or {})
    engine.environment.execute(script, context)
    return context


def evaluate(expression: str, data: dict[str, Any] | None = None, **engine_kwargs: Any) -> Any:
    engine = SandboxedScriptEngine(**engine_kwargs)
    return engine.environment.evaluate(expression, dict(data or {}))


# ---------------------------------------------------------------------------------------------
# Normal scripts
# ---------------------------------------------------------------------------------------------


def test_arithmetic_and_decimal() -> None:
    data = run(
        "total = sum(line['qty'] * line['price'] for line in lines)\n"
        "vat = (total * Decimal('0.20')).quantize(Decimal('0.01'))\n"
        "gross = total + vat\n"
        "half = 7 / 2\n"
        "power = 2 ** 10\n",
        {"lines": [{"qty": 2, "price": Decimal("10.50")}, {"qty": 1, "price": Decimal("3.25")}]},
    )
    assert data["total"] == Decimal("24.25")
    assert data["vat"] == Decimal("4.85")
    assert data["gross"] == Decimal("29.10")
    assert data["half"] == 3.5
    assert data["power"] == 1024


def test_dates_and_helpers() -> None:
    data = run(
        "due = add_days(parse_date(invoice_date), 30)\n"
        "due_s = isoformat(due)\n"
        "late = days_between(due, today())\n"
        "stamp = isoformat(now())\n"
        "ts = parse_date('2026-01-02T03:04:05+00:00')\n"
        "week = date(2026, 1, 1) + timedelta(weeks=1)\n"
        "local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))).astimezone(timezone.utc)\n"
        "formatted = due.strftime('%d/%m/%Y')\n"
        "parsed = datetime.strptime('31/12/2026', '%d/%m/%Y').date()\n",
        {"invoice_date": "2026-01-10"},
        clock=fixed_clock,
    )
    assert data["due"] == date(2026, 2, 9)
    assert data["due_s"] == "2026-02-09"
    assert data["late"] == (date(2026, 3, 14) - date(2026, 2, 9)).days
    assert data["stamp"] == "2026-03-14T09:26:53+00:00"
    assert data["ts"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert data["week"] == date(2026, 1, 8)
    assert data["local"] == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert data["formatted"] == "09/02/2026"
    assert data["parsed"] == date(2026, 12, 31)


def test_now_uses_injected_clock_and_is_utc_aware() -> None:
    assert evaluate("now()", clock=fixed_clock) == FIXED_NOW
    assert evaluate("today()", clock=fixed_clock) == date(2026, 3, 14)
    paris = timezone(timedelta(hours=2))
    value = evaluate("now()", clock=lambda: datetime(2026, 6, 1, 12, tzinfo=paris))
    assert value == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert value.tzinfo == UTC
    naive = evaluate("now()", clock=lambda: datetime(2026, 6, 1, 12))
    assert naive == datetime(2026, 6, 1, 12, tzinfo=UTC)
    real = evaluate("now()")
    assert abs(real - datetime.now(UTC)) < timedelta(seconds=5)


def test_comprehensions_mutation_loops_unpacking() -> None:
    data = run(
        "big = [i['name'] for i in items if i['qty'] > limit]\n"
        "by_name = {i['name']: i['qty'] for i in items}\n"
        "names = {i['name'] for i in items}\n"
        "items.append({'name': 'd', 'qty': 0})\n"
        "order['status'] = 'checked'\n"
        "del order['tmp']\n"
        "counter = 0\n"
        "for idx, (name, qty) in enumerate(pairs):\n"
        "    counter += qty * idx\n"
        "a, b = b_init, a_init\n"
        "first, *rest = [1, 2, 3]\n"
        "n = 0\n"
        "while n < 5:\n"
        "    n += 1\n"
        "    if n == 3:\n"
        "        continue\n"
        "x = 10\n"
        "x -= 3\n"
        "x *= 2\n"
        "x //= 3\n"
        "s = 'a'\n"
        "s += 'b'\n"
        "lst = [1]\n"
        "lst += [2]\n"
        "def double(v):\n"
        "    return v * 2\n"
        "doubled = list(map(double, [1, 2]))\n"
        "srt = sorted(items, key=lambda i: -i['qty'])[0]['name']\n"
        "try:\n"
        "    boom = 1 / 0\n"
        "except ZeroDivisionError:\n"
        "    boom = None\n",
        {
            "items": [{"name": "a", "qty": 5}, {"name": "b", "qty": 1}, {"name": "c", "qty": 9}],
            "limit": 3,
            "order": {"tmp": 1},
            "pairs": [("p", 1), ("q", 2), ("r", 3)],
            "a_init": 1,
            "b_init": 2,
        },
    )
    assert data["big"] == ["a", "c"]
    assert data["by_name"] == {"a": 5, "b": 1, "c": 9}
    assert data["names"] == {"a", "b", "c"}
    assert data["items"][-1] == {"name": "d", "qty": 0}
    assert data["order"] == {"status": "checked"}
    assert data["counter"] == 0 * 1 + 1 * 2 + 2 * 3
    assert (data["a"], data["b"]) == (2, 1)
    assert (data["first"], data["rest"]) == (1, [2, 3])
    assert data["n"] == 5
    assert data["x"] == 4
    assert data["s"] == "ab"
    assert data["lst"] == [1, 2]
    assert data["doubled"] == [2, 4]
    assert data["srt"] == "c"
    assert data["boom"] is None
    assert "double" not in data  # functions are not data


def test_string_formatting() -> None:
    data = run(
        "a = 'Invoice %s: %.2f' % (number, amount)\n"
        "b = f'{customer[\"name\"]} owes {amount:.2f} by {due:%d.%m.%Y}'\n"
        "c = '%(n)d items' % {'n': 3}\n"
        "d = ', '.join(str(i) for i in range(3)).upper()\n",
        {"number": "F-1", "amount": 12.5, "customer": {"name": "ACME"}, "due": date(2026, 1, 31)},
    )
    assert data["a"] == "Invoice F-1: 12.50"
    assert data["b"] == "ACME owes 12.50 by 31.01.2026"
    assert data["c"] == "3 items"
    assert data["d"] == "0, 1, 2"


def test_print_is_harmless() -> None:
    data = run("print('hello')\nx = 1\n")
    assert data == {"x": 1}


def test_write_back_keeps_only_data() -> None:
    data = run(
        "f = len\n"
        "g = lambda: 1\n"
        "d = Decimal\n"
        "r = range(3)\n"
        "z = zip([1], [2])\n"
        "nested = {'ok': [1, 2], 'bad': len}\n"
        "good = {'ok': [1, (2, 3)], 'when': date(2026, 1, 1), 'none': None}\n"
        "rebound = len\n",
        {"rebound": 5, "kept": "yes"},
    )
    assert data == {"kept": "yes", "good": {"ok": [1, (2, 3)], "when": date(2026, 1, 1), "none": None}}


def test_helpers_are_not_written_back_but_task_data_may_shadow_them() -> None:
    data = run("x = 1\n")
    assert data == {"x": 1}
    # A form field called ``date`` is plausible: it shadows the helper for that script.
    data = run("y = date + '!'\ndate = 'changed'\n", {"date": "2026-01-01"})
    assert data == {"date": "changed", "y": "2026-01-01!"}


def test_deleted_variables_leave_task_data() -> None:
    assert run("del tmp\n", {"tmp": 1, "keep": 2}) == {"keep": 2}


def test_underscore_task_data_is_invisible_and_kept() -> None:
    data = run("x = 1\n", {"_private": 3})
    assert data == {"_private": 3, "x": 1}


def test_environment_globals_are_available_and_not_written_back() -> None:
    data = run("x = vat_rate * 100\n", environment_globals={"vat_rate": Decimal("0.2")})
    assert data == {"x": Decimal("20.0")}
    with pytest.raises(ValueError, match="may not start with '_'"):
        SandboxedScriptEngine(environment_globals={"_getattr_": getattr})


def test_missing_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="nope"):
        evaluate("d.nope", {"d": date(2026, 1, 1)})


def test_evaluate_condition_is_fast() -> None:
    engine = SandboxedScriptEngine()
    data = {"amount": 1500, "status": "open", "_hidden": 1}
    assert engine.environment.evaluate("amount > 1000 and status == 'open'", data) is True
    runs = 20_000
    start = time.perf_counter()
    for _ in range(runs):
        engine.environment.evaluate("amount > 1000 and status == 'open'", data)
    per_call = (time.perf_counter() - start) / runs
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per evaluation"


# ---------------------------------------------------------------------------------------------
# Escapes: refused at compile time (check_source) and at run time
# ---------------------------------------------------------------------------------------------

ESCAPES: list[tuple[str, str, str]] = [
    # (source, mode, text expected in the check_source message)
    ("import os", "exec", "line 1: import statements are not allowed"),
    ("from os import system", "exec", "line 1: import statements are not allowed"),
    ("x = 1\nimport os\nos.system('id')", "exec", "line 2: import statements are not allowed"),
    ("__import__('os')", "eval", '"__import__"'),
    ("().__class__.__base__.__subclasses__()", "eval", '"__class__" is an invalid attribute name'),
    ("getattr(x, '__class__')", "eval", '"getattr" is not allowed'),
    ("open('/etc/passwd').read()", "eval", '"open" is not allowed'),
    ("eval('1')", "eval", '"eval" is not allowed'),
    ("exec('x=1')", "exec", '"exec" is not allowed'),
    ("compile('1', 'f', 'eval')", "eval", '"compile" is not allowed'),
    ("[].__class__", "eval", "starts with"),
    ("f.__globals__", "eval", '"__globals__" is an invalid attribute name'),
    ("type(x)", "eval", '"type" is not allowed'),
    ("object", "eval", '"object" is not allowed'),
    ("globals()", "eval", '"globals" is not allowed'),
    ("locals()", "eval", '"locals" is not allowed'),
    ("vars(x)", "eval", '"vars" is not allowed'),
    ("setattr(x, 'a', 1)", "exec", '"setattr" is not allowed'),
    ("delattr(x, 'a')", "exec", '"delattr" is not allowed'),
    ("__builtins__", "eval", '"__builtins__" is not allowed'),
    ("'{0.__class__}'.format(1)", "eval", "str.format() is not allowed"),
    ("(i for i in x).gi_frame", "eval", '"gi_frame" is a restricted name'),
    ("_getattr_(x, '__class__')", "eval", "starts with"),
    ("x._private", "eval", '"_private" is an invalid attribute name'),
    ("class A:\n    pass", "exec", "class definitions are not allowed"),
]


@pytest.mark.parametrize(("source", "mode", "expected"), ESCAPES)
def test_escapes_are_refused_by_check_source(source: str, mode: str, expected: str) -> None:
    message = check_source(source, mode)
    assert message is not None
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("source", "mode", "expected"), ESCAPES)
def test_escapes_are_refused_at_run_time(source: str, mode: str, expected: str) -> None:
    engine = SandboxedScriptEngine()
    task = make_task({"x": [1], "f": len})
    with pytest.raises(WorkflowTaskException) as info:
        if mode == "exec":
            engine.execute(task, source)
        else:
            engine.evaluate(task, source)
    assert "refused by the sandbox" in str(info.value)
    assert expected in str(info.value)
    assert isinstance(info.value.__cause__, ScriptRefused)


def test_refusal_message_and_line_in_workflow_exception() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException) as info:
        engine.execute(make_task(), "a = 1\nimport os\n")
    assert str(info.value).startswith(
        "Script refused by the sandbox: line 2: import statements are not allowed"
    )
    assert info.value.line_number == 2
    assert info.value.error_line == "import os"


def test_check_source_messages() -> None:
    assert check_source("x = 1", "exec") is None
    assert check_source("amount > 1000 and unknown_name", "eval") is None
    assert check_source("\n   amount > 1\n  ", "eval") is None  # whitespace from XML
    assert check_source("    a = 1\n    b = a + 1\n", "exec") is None  # indented block from XML
    assert check_source("x = (", "exec") == "line 1: syntax error: '(' was never closed"
    assert check_source("a = 1\nif a\n", "exec") == "line 2: syntax error: expected ':'"
    assert check_source("x = 1", "eval") == "line 1: syntax error: invalid syntax"
    assert check_source("", "eval") == "the expression is empty"
    assert check_source("x.__class__", "eval") == (
        'line 1: "__class__" is an invalid attribute name because it starts with "_"'
    )
    assert check_source("().__class__.__base__", "eval") == (
        'line 1: "__class__" is an invalid attribute name because it starts with "_"; '
        'line 1: "__base__" is an invalid attribute name because it starts with "_"'
    )
    with pytest.raises(ValueError):
        check_source("x", "single")


def test_validate_keeps_spiffworkflow_semantics() -> None:
    # The DMN engine relies on validate() raising SyntaxError for entries like "> 5".
    engine = SandboxedScriptEngine()
    engine.validate("amount")
    with pytest.raises(SyntaxError):
        engine.validate("> 5")


def test_syntax_error_reads_clearly() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException, match="Script has a syntax error: line 1"):
        engine.execute(make_task(), "x = (")


def _run_unchecked(source: str, data: dict[str, Any]) -> dict[str, Any]:
    """Defence in depth: compile with plain RestrictedPython (which accepts ``import`` and
    names like ``getattr``) and run in the sandbox namespace."""
    engine = SandboxedScriptEngine()
    result = compile_restricted_exec(source, "<string>")
    assert result.errors == (), result.errors
    namespace = engine.environment.build_globals(data)
    exec(result.code, namespace)
    return namespace


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import os", ImportError),
        ("r = getattr(x, 'append')", NameError),
        ("r = open('/etc/passwd')", NameError),
        ("r = type(x)", NameError),
        ("r = object", NameError),
        ("r = hasattr(x, 'a')", NameError),
        ("r = '{0.__class__}'.format(1)", NotImplementedError),
        ("r = str.format('{0.__class__}', 1)", NotImplementedError),
        ("r = 'x'.format_map({})", NotImplementedError),
        ("g = (i for i in x)\nr = g.gi_frame", SyntaxError),
    ],
)
def test_runtime_guards_without_the_policy(source: str, error: type[Exception]) -> None:
    if error is SyntaxError:
        # RestrictedPython itself refuses inspect attributes at compile time.
        assert compile_restricted_exec(source, "<string>").errors
        return
    with pytest.raises(error):
        _run_unchecked(source, {"x": [1]})


def test_runtime_getattr_guard_refuses_underscores_and_frames() -> None:
    namespace = SandboxedScriptEngine().environment.build_globals({})
    guard = namespace["_getattr_"]
    with pytest.raises(AttributeError, match="starts with"):
        guard((), "__class__")
    with pytest.raises(AttributeError, match="restricted name"):
        guard((i for i in []), "gi_frame")
    with pytest.raises(NotImplementedError):
        guard("{0.__class__}", "format")


@pytest.mark.parametrize(
    "smuggled",
    [
        {"__builtins__": builtins},
        {"__builtins__": {"__import__": __import__, "open": open, "getattr": getattr}},
        {"_getattr_": getattr, "_getitem_": lambda o, i: __import__("os")},
        {"_getiter_": lambda o: iter([__import__("os")])},
        {"_write_": lambda o: o, "_print_": None, "__import__": __import__},
    ],
)
def test_task_data_cannot_override_sandbox_globals(smuggled: dict[str, Any]) -> None:
    namespace = SandboxedScriptEngine().environment.build_globals({**smuggled, "x": [1, 2]})
    assert namespace["__builtins__"] is not builtins
    assert namespace["__builtins__"]["__import__"] is not __import__
    assert "open" not in namespace["__builtins__"]
    assert "getattr" not in namespace["__builtins__"]
    assert namespace["_getattr_"] is not getattr
    # Through the plain RestrictedPython compiler the smuggled names still do nothing.
    with pytest.raises(ImportError):
        _run_unchecked("import os", {**smuggled})
    with pytest.raises(NameError):
        _run_unchecked("r = getattr(x, 'append')", {**smuggled, "x": []})
    with pytest.raises(NotImplementedError):  # the real _getattr_ guard is in place
        _run_unchecked("r = '{0.__class__}'.format(1)", {**smuggled})
    # And a normal script still works, leaving the smuggled keys untouched.
    data = {**smuggled, "x": [1, 2]}
    SandboxedScriptEngine().environment.execute("total = 0\nfor v in x:\n    total += v\n", data)
    assert data["total"] == 3
    for key, value in smuggled.items():
        assert data[key] is value


def test_mutating_non_data_objects_is_refused() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException):
        engine.execute(make_task({"d": date(2026, 1, 1)}), "d.year = 3")


# ---------------------------------------------------------------------------------------------
# Timer expressions
# ---------------------------------------------------------------------------------------------

TIMER_LITERALS = [
    "P3D",
    "PT4H",
    "P1DT2H",
    "PT10M",
    "PT30S",
    "P1Y2M",
    "P2W",
    "R3/PT10M",
    "R/P1D",
    "2026-12-01T09:00:00+01:00",
    "2026-12-01T09:00:00Z",
    "2026-12-01T09:00",
    "2026-12-01",
    "R3/2026-12-01T09:00:00Z/PT1H",
]


@pytest.mark.parametrize("literal", TIMER_LITERALS)
def test_timer_literals_are_quoted(literal: str) -> None:
    assert is_iso_timer_literal(literal)
    assert is_iso_timer_literal(f"  {literal}\n")
    assert timer_expression(literal) == repr(literal)
    assert timer_expression(f"\n  {literal}  ") == repr(literal)
    assert check_source(timer_expression(literal), "eval") is None
    assert evaluate(timer_expression(literal)) == literal


@pytest.mark.parametrize(
    "expression",
    ["due_date", '"P%dD" % days', "'P3D'", "P", "PT", "P1DT", "PD", "R3", "R3/", "p3d", "PT4H + x", "P3D2"],
)
def test_timer_expressions_pass_through(expression: str) -> None:
    assert not is_iso_timer_literal(expression)
    assert timer_expression(expression) == expression


def test_engine_evaluates_unquoted_timer_literals() -> None:
    engine = SandboxedScriptEngine()
    task = make_task({"days": 4, "due_date": "2026-05-01T00:00:00Z"})
    assert engine.evaluate(task, "P3D") == "P3D"
    assert engine.evaluate(task, " R3/PT10M ") == "R3/PT10M"
    assert engine.evaluate(task, "2026-12-01") == "2026-12-01"
    assert engine.evaluate(task, '"P%dD" % days') == "P4D"
    assert engine.evaluate(task, "due_date") == "2026-05-01T00:00:00Z"


# ---------------------------------------------------------------------------------------------
# Errors and service calls through the engine
# ---------------------------------------------------------------------------------------------


def test_runtime_error_in_script_is_workflow_task_exception() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException) as info:
        engine.execute(make_task({"a": 1}), "b = 2\nc = a / 0\n")
    assert "ZeroDivisionError" in str(info.value)
    assert info.value.line_number == 2
    assert info.value.error_line == "c = a / 0"


def test_error_with_non_string_argument() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException, match="KeyError: 1") as info:
        engine.execute(make_task({"d": {}}), "x = d[1]")
    assert info.value.line_number == 1
    assert isinstance(info.value.__cause__, KeyError)


def test_error_in_indented_script_reports_line() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException) as info:
        engine.execute(make_task({}), "\n    a = 1\n    b = missing\n")
    assert info.value.line_number == 3
    assert info.value.error_line == "b = missing"
    assert "NameError" in str(info.value)


def test_evaluation_error_names_expression_and_cause() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException) as info:
        engine.evaluate(make_task({}), "amount > 3")
    assert "Error evaluating expression 'amount > 3'" in str(info.value)
    assert "NameError" in str(info.value)


def test_call_service_returns_json_and_propagates_errors() -> None:
    calls: list[tuple[Any, str, dict[str, Any]]] = []

    def handler(task: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((task, operation, params))
        if operation == "fail":
            raise ConnectionError("mail server down")
        return {"total": Decimal("12.30"), "when": date(2026, 1, 2), "at": FIXED_NOW, "n": [1]}

    engine = SandboxedScriptEngine(service_handler=handler)
    task = make_task()
    params = {"to": {"value": "a@b.c", "type": "str"}}
    result = engine.call_service(task, operation_name="send", operation_params=params)
    assert json.loads(result) == {
        "total": "12.30",
        "when": "2026-01-02",
        "at": "2026-03-14T09:26:53+00:00",
        "n": [1],
    }
    assert calls == [(task, "send", params)]
    with pytest.raises(ConnectionError, match="mail server down"):
        engine.call_service(task, operation_name="fail", operation_params={})


def test_call_service_without_handler_names_operation() -> None:
    engine = SandboxedScriptEngine()
    with pytest.raises(ServiceNotConfigured, match="'send_invoice'"):
        engine.call_service(make_task(), operation_name="send_invoice", operation_params={})


# ---------------------------------------------------------------------------------------------
# Through a real workflow
# ---------------------------------------------------------------------------------------------

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"


def workflow_xml(script: str, high_condition: str = "total &gt; 100") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="{BPMN_NS}" id="defs" targetNamespace="http://example.com/bpmn">
  <bpmn:process id="sandbox_test" isExecutable="true">
    <bpmn:startEvent id="start">
      <bpmn:outgoing>f1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:scriptTask id="compute" name="Compute">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="f_low">
      <bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f_high</bpmn:outgoing>
      <bpmn:outgoing>f_low</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:scriptTask id="mark_high" name="Mark high">
      <bpmn:incoming>f_high</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>route = 'high'</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:scriptTask id="mark_low" name="Mark low">
      <bpmn:incoming>f_low</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>route = 'low'</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="end_high">
      <bpmn:incoming>f3</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:endEvent id="end_low">
      <bpmn:incoming>f4</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="compute" />
    <bpmn:sequenceFlow id="f2" sourceRef="compute" targetRef="gw" />
    <bpmn:sequenceFlow id="f_high" sourceRef="gw" targetRef="mark_high">
      <bpmn:conditionExpression>{high_condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_low" sourceRef="gw" targetRef="mark_low" />
    <bpmn:sequenceFlow id="f3" sourceRef="mark_high" targetRef="end_high" />
    <bpmn:sequenceFlow id="f4" sourceRef="mark_low" targetRef="end_low" />
  </bpmn:process>
</bpmn:definitions>
"""


def start_workflow(script: str, data: dict[str, Any], **kwargs: Any) -> BpmnWorkflow:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(workflow_xml(script, **kwargs).encode(), filename="sandbox_test.bpmn")
    spec = parser.get_spec("sandbox_test")
    workflow = BpmnWorkflow(spec, script_engine=SandboxedScriptEngine(clock=fixed_clock))
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(data)
    return workflow


SCRIPT = """
total = 0
for item in items:
    total += item['qty'] * item['price']
total = Decimal(str(total))
checked_on = isoformat(today())
"""


@pytest.mark.parametrize(("price", "route"), [(60, "high"), (10, "low")])
def test_workflow_script_and_gateway(price: int, route: str) -> None:
    workflow = start_workflow(SCRIPT, {"items": [{"qty": 2, "price": price}]})
    workflow.do_engine_steps()
    assert workflow.completed
    data = workflow.last_task.data
    assert data["route"] == route
    assert data["total"] == Decimal(2 * price)
    assert data["checked_on"] == "2026-03-14"
    assert "Decimal" not in data
    assert "item" in data  # loop variable is ordinary task data


def test_workflow_hostile_script_raises() -> None:
    workflow = start_workflow("import os\nos.system('echo pwned')", {})
    with pytest.raises(WorkflowTaskException, match="import statements are not allowed"):
        workflow.do_engine_steps()
    assert not workflow.completed


def test_workflow_hostile_condition_raises() -> None:
    workflow = start_workflow(
        "total = 500", {}, high_condition="().__class__.__base__.__subclasses__() and total &gt; 1"
    )
    with pytest.raises(WorkflowTaskException, match="refused by the sandbox"):
        workflow.do_engine_steps()


def test_workflow_smuggled_builtins_do_nothing() -> None:
    workflow = start_workflow(
        "total = 1\nescaped = __builtins__", {"__builtins__": builtins, "_getattr_": getattr}
    )
    with pytest.raises(WorkflowTaskException, match="refused by the sandbox"):
        workflow.do_engine_steps()
    workflow = start_workflow("total = len(str(secret))", {"__builtins__": builtins, "secret": 12345})
    workflow.do_engine_steps()
    assert workflow.completed
    assert workflow.last_task.data["route"] == "low"
    assert workflow.last_task.data["total"] == 5


def timer_workflow_xml(kind: str, expression: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="{BPMN_NS}" id="defs" targetNamespace="http://example.com/bpmn">
  <bpmn:process id="timer_test" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:{kind}>{expression}</bpmn:{kind}></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.mark.parametrize(
    ("kind", "expression", "data"),
    [
        ("timeDuration", "PT0S", {}),
        ("timeDuration", '"PT%dS" % seconds', {"seconds": 0}),
        ("timeDate", "2020-01-01T00:00:00Z", {}),
        ("timeDate", "due", {"due": "2020-01-01"}),
    ],
)
def test_workflow_timer_accepts_unquoted_literals(kind: str, expression: str, data: dict[str, Any]) -> None:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(timer_workflow_xml(kind, expression).encode(), filename="timer_test.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("timer_test"), script_engine=SandboxedScriptEngine())
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(data)
    for _ in range(3):
        workflow.refresh_timers()
        workflow.do_engine_steps()
    assert workflow.completed


def test_workflow_timer_far_in_the_future_waits() -> None:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(timer_workflow_xml("timeDuration", "P3D").encode(), filename="timer_test.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("timer_test"), script_engine=SandboxedScriptEngine())
    workflow.do_engine_steps()
    workflow.refresh_timers()
    workflow.do_engine_steps()
    assert not workflow.completed
    waiting = workflow.waiting_events()
    assert len(waiting) == 1
    due = datetime.fromisoformat(waiting[0].value)
    assert timedelta(days=2, hours=23) < due - datetime.now(UTC) <= timedelta(days=3)
