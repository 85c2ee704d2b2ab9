from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.errors import ProcessFileError, ProcessFileErrors
from engine.specs import check_paths, check_paths_with_warnings, lint, parse_files
from engine.xmlsafe import DOCTYPE_MESSAGE, parse_xml

FILES = Path(__file__).parent / "files"
CLEAN = ("clean.bpmn", "discount.dmn")


def read(*names: str) -> dict[str, bytes]:
    return {name: (FILES / name).read_bytes() for name in names}


def line_of(name: str, needle: str) -> int:
    """The 1-based line of the only occurrence of `needle` in a fixture."""
    lines = [i for i, text in enumerate((FILES / name).read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, (name, needle, lines)
    return lines[0]


class _ServiceEngine(PythonScriptEngine):
    def call_service(self, task: Any, **kwargs: Any) -> str:
        return json.dumps({"sent": kwargs["operation_name"]})


def errors_of(files: dict[str, bytes], forms_dir: Path | None = None) -> list[ProcessFileError]:
    with pytest.raises(ProcessFileErrors) as caught:
        parse_files(files, forms_dir)
    return caught.value.errors


@pytest.fixture
def forms_dir(tmp_path: Path) -> Path:
    (tmp_path / "clean").mkdir()
    shutil.copy(FILES / "enter_request.json", tmp_path / "clean" / "enter_request.json")
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Clean files
# ---------------------------------------------------------------------------------------------


def test_clean_files_parse_into_runnable_specs(forms_dir: Path) -> None:
    files = read(*CLEAN)
    bundle = parse_files(files, forms_dir)

    assert set(bundle.processes) == {"clean", "archive"}
    assert set(bundle.subprocess_specs["clean"]) == {"archive"}
    assert bundle.subprocess_specs["archive"] == {}
    assert bundle.process_files == {"clean": "clean.bpmn", "archive": "clean.bpmn"}
    assert bundle.files == files
    assert bundle.warnings == []
    task = bundle.processes["clean"].task_specs["enter_request"]
    assert task.lane == "sales"
    assert task.extensions["properties"]["formJsonSchemaFilename"] == "enter_request.json"

    # The DMN input entries ('"gold"', '< 500', '500 <= ? < 5000', '-') really run.
    workflow = BpmnWorkflow(
        bundle.processes["clean"], bundle.subprocess_specs["clean"], script_engine=_ServiceEngine()
    )
    workflow.do_engine_steps()
    [user_task] = workflow.get_tasks(state=TaskState.READY, manual=True)
    user_task.set_data(amount=700, customer_type="gold", urgent=False)
    user_task.run()
    workflow.do_engine_steps()
    [waiting] = [t for t in workflow.get_tasks(state=TaskState.WAITING) if t.task_spec.name == "wait_payment"]
    assert waiting.data["discount"] == 0.1
    assert waiting.data["sent"] == {"sent": "send_invoice"}


def test_forms_dir_none_skips_the_form_file_check() -> None:
    assert set(parse_files(read(*CLEAN), None).processes) == {"clean", "archive"}


def test_unquoted_iso_timers_are_accepted_and_quoted_for_spiffworkflow() -> None:
    bundle = parse_files(read("timers.bpmn"), None)

    specs = bundle.processes["timers"].task_specs
    assert specs["start"].event_definition.expression == "'2026-12-01T09:00:00+01:00'"
    assert specs["remind"].event_definition.expression == "'R3/PT10M'"
    assert specs["wait_three_days"].event_definition.expression == "'P3D'"
    assert specs["wait_computed"].event_definition.expression == '"P%dD" % days'
    assert bundle.warnings == []


def test_camunda_attributes_are_copied_into_spiffworkflow_extensions(forms_dir: Path) -> None:
    text = (FILES / "user_task_no_role.bpmn").read_text()
    text = text.replace(
        'name="Approve the request"', 'name="Approve the request" camunda:candidateGroups="sales"'
    )
    (forms_dir / "user_task_no_role").mkdir()
    for form in ("approve_request.json", "review_request.json"):
        shutil.copy(FILES / "enter_request.json", forms_dir / "user_task_no_role" / form)

    bundle = parse_files({"user_task_no_role.bpmn": text.encode()}, forms_dir)

    review = bundle.processes["user_task_no_role"].task_specs["review_request"]
    assert review.lane is None
    assert review.extensions["properties"] == {
        "formJsonSchemaFilename": "review_request.json",
        "candidateGroups": "manager,director",
    }


def test_a_600_node_chain_parses_and_the_recursion_limit_is_restored() -> None:
    limit = sys.getrecursionlimit()

    bundle = parse_files({"chain.bpmn": chain_bpmn(600)}, None)

    assert len([name for name in bundle.processes["chain"].task_specs if name.startswith("t")]) == 600
    assert sys.getrecursionlimit() == limit


def test_a_chain_too_deep_even_for_the_raised_limit_is_an_error_not_a_crash() -> None:
    limit = sys.getrecursionlimit()

    [error] = errors_of({"chain.bpmn": chain_bpmn(5200)})

    assert error.file == "chain.bpmn"
    assert error.element_id is not None and error.element_id.startswith("t")
    assert error.line == 5 + int(error.element_id[1:])  # task t<i> is on line 5 + i
    assert error.message.startswith("the parser ran out of depth (recursion limit 10000)")
    assert sys.getrecursionlimit() == limit


def chain_bpmn(length: int) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="Definitions_chain" '
        'targetNamespace="http://example.com/backoffice">',
        '<bpmn:process id="chain" name="Chain" isExecutable="true">',
        '<bpmn:startEvent id="start" name="Start" />',
        *[f'<bpmn:task id="t{i}" name="Step {i}" />' for i in range(length)],
        '<bpmn:endEvent id="end" name="End" />',
        '<bpmn:sequenceFlow id="Flow_start" sourceRef="start" targetRef="t0" />',
        *[
            f'<bpmn:sequenceFlow id="Flow_{i}" sourceRef="t{i}" targetRef="t{i + 1}" />'
            for i in range(length - 1)
        ],
        f'<bpmn:sequenceFlow id="Flow_end" sourceRef="t{length - 1}" targetRef="end" />',
        "</bpmn:process>",
        "</bpmn:definitions>",
    ]
    return "\n".join(lines).encode()


# ---------------------------------------------------------------------------------------------
# Hostile and broken XML
# ---------------------------------------------------------------------------------------------


def test_xxe_is_refused_before_anything_is_parsed() -> None:
    errors = errors_of(read("xxe.bpmn", *CLEAN))

    assert errors == [ProcessFileError("xxe.bpmn", 2, None, DOCTYPE_MESSAGE)]
    assert str(errors[0]) == (
        "xxe.bpmn:2: DOCTYPE declarations are not allowed "
        "(external entities and entity expansion are refused)"
    )
    assert "root:" not in str(errors)


def test_billion_laughs_is_refused() -> None:
    assert errors_of(read("billion_laughs.bpmn")) == [
        ProcessFileError(
            "billion_laughs.bpmn", line_of("billion_laughs.bpmn", "<!DOCTYPE"), None, DOCTYPE_MESSAGE
        )
    ]


def test_parse_xml_refuses_doctype_oversize_and_malformed_input() -> None:
    with pytest.raises(ProcessFileErrors) as caught:
        parse_xml((FILES / "xxe.bpmn").read_bytes(), "xxe.bpmn")
    assert caught.value.errors == [ProcessFileError("xxe.bpmn", 2, None, DOCTYPE_MESSAGE)]

    with pytest.raises(ProcessFileErrors) as caught:
        parse_xml(b"<a/>" + b" " * 6_000_000, "big.bpmn")
    assert caught.value.errors == [
        ProcessFileError("big.bpmn", None, None, "the file is larger than 5 MB (6,000,004 bytes); refused")
    ]

    with pytest.raises(ProcessFileErrors) as caught:
        parse_xml(b"", "empty.bpmn")
    assert caught.value.errors == [
        ProcessFileError("empty.bpmn", 1, None, "malformed XML: Document is empty")
    ]


def test_malformed_xml_gives_file_and_line() -> None:
    assert errors_of(read("malformed.bpmn")) == [
        ProcessFileError(
            "malformed.bpmn",
            line_of("malformed.bpmn", "</bpmn:process>"),
            None,
            "malformed XML: Opening and ending tag mismatch: startEvent line 4 and process",
        )
    ]


def test_schema_errors_are_all_reported_with_lines() -> None:
    name = "gateway_no_condition.bpmn"
    text = (FILES / name).read_text()
    text = text.replace('<bpmn:startEvent id="start" name="Start">', '<bpmn:startEvent id="start" size="3">')
    text = text.replace('<bpmn:sequenceFlow id="Flow_1"', '<bpmn:sequenceFlw id="Flow_1"')

    errors = errors_of({name: text.encode()})

    assert errors[0] == ProcessFileError(
        name,
        line_of(name, 'id="start"'),
        "start",
        "Element 'bpmn:startEvent', attribute 'size': The attribute 'size' is not allowed.",
    )
    assert (errors[1].line, errors[1].element_id) == (line_of(name, 'id="Flow_1"'), "Flow_1")
    assert errors[1].message.startswith(
        "Element 'bpmn:sequenceFlw': This element is not expected. Expected is one of ( bpmn:artifact, "
    )


# ---------------------------------------------------------------------------------------------
# Lint rules
# ---------------------------------------------------------------------------------------------


def test_process_not_executable() -> None:
    assert errors_of(read("not_executable.bpmn")) == [
        ProcessFileError(
            "not_executable.bpmn",
            line_of("not_executable.bpmn", '<bpmn:process id="not_executable"'),
            "not_executable",
            "process 'not_executable' is not executable (isExecutable is not true); "
            'set isExecutable="true"',
        )
    ]


def test_user_task_without_lane_or_candidate_groups() -> None:
    assert errors_of(read("user_task_no_role.bpmn")) == [
        ProcessFileError(
            "user_task_no_role.bpmn",
            line_of("user_task_no_role.bpmn", 'id="approve_request"'),
            "approve_request",
            "user task has no role: put it in a named lane or set camunda:candidateGroups",
        )
    ]


def test_user_task_form_file_missing(tmp_path: Path) -> None:
    assert errors_of(read(*CLEAN), tmp_path) == [
        ProcessFileError(
            "clean.bpmn",
            line_of("clean.bpmn", '<bpmn:userTask id="enter_request"'),
            "enter_request",
            f"form file {tmp_path / 'clean' / 'enter_request.json'} not found",
        )
    ]


def test_user_task_form_file_not_a_json_schema(forms_dir: Path) -> None:
    form = forms_dir / "clean" / "enter_request.json"
    form.write_text('{"type": "objekt"}')

    [error] = errors_of(read(*CLEAN), forms_dir)

    assert error.line == line_of("clean.bpmn", '<bpmn:userTask id="enter_request"')
    assert error.message.startswith(
        f"form file {form} is not a valid JSON Schema at type: 'objekt' is not valid"
    )

    form.write_text("{nope")
    [error] = errors_of(read(*CLEAN), forms_dir)
    assert error.message == (
        f"form file {form} is not valid JSON: line 1: Expecting property name enclosed in double quotes"
    )


def test_scripts_refused_by_the_sandbox_name_the_element_and_line() -> None:
    assert errors_of(read("bad_scripts.bpmn")) == [
        ProcessFileError(
            "bad_scripts.bpmn",
            line_of("bad_scripts.bpmn", "import os"),
            "script_import",
            "script: import statements are not allowed",
        ),
        ProcessFileError(
            "bad_scripts.bpmn",
            line_of("bad_scripts.bpmn", "__subclasses__"),
            "script_dunder",
            'script: "__class__" is an invalid attribute name because it starts with "_"; '
            '"__base__" is an invalid attribute name because it starts with "_"; '
            '"__subclasses__" is an invalid attribute name because it starts with "_"',
        ),
    ]


def test_exclusive_gateway_flow_without_condition_and_not_default() -> None:
    assert errors_of(read("gateway_no_condition.bpmn")) == [
        ProcessFileError(
            "gateway_no_condition.bpmn",
            line_of("gateway_no_condition.bpmn", 'id="Flow_no"'),
            "Flow_no",
            "sequence flow leaves exclusiveGateway 'gw_choice' without a condition and is not its "
            "default flow; add a condition or make it the default",
        )
    ]


def test_call_activity_to_a_missing_process() -> None:
    assert errors_of(read("call_missing.bpmn")) == [
        ProcessFileError(
            "call_missing.bpmn",
            line_of("call_missing.bpmn", 'id="call_nowhere"'),
            "call_nowhere",
            "call activity calls process 'nowhere', which is not in these files",
        )
    ]


def test_business_rule_task_with_a_missing_decision() -> None:
    # decide_camunda names `discount` with camunda:decisionRef, which discount.dmn provides.
    assert errors_of(read("decision_missing.bpmn", "discount.dmn")) == [
        ProcessFileError(
            "decision_missing.bpmn",
            line_of("decision_missing.bpmn", 'id="decide_price"'),
            "decide_price",
            "decision 'price_table' is not in the DMN files (decisions available: discount)",
        )
    ]


def test_message_without_name_is_a_clear_error_not_a_type_error() -> None:
    name = "message_no_name.bpmn"
    message_line = line_of(name, '<bpmn:message id="Message_nameless"')

    errors = errors_of(read(name))

    assert errors == [
        ProcessFileError(
            name,
            line_of(name, 'id="wait_message"'),
            "wait_message",
            f"message 'Message_nameless' has no name (line {message_line}); give it a name",
        )
    ]
    assert "TypeError" not in str(errors)


def test_what_modelers_export_is_reported_element_by_element_once() -> None:
    name = "modeler_export.bpmn"
    assert errors_of(read(name)) == [
        ProcessFileError(
            name,
            line_of(name, 'dataStore id="DataStore_crm"'),
            "DataStore_crm",
            "data stores are not supported",
        ),
        ProcessFileError(
            name,
            line_of(name, '<bpmn:process id="modeler_export">'),
            "modeler_export",
            "process 'modeler_export' is not executable (isExecutable is missing); set isExecutable=\"true\"",
        ),
        ProcessFileError(
            name,
            line_of(name, 'id="qualify"'),
            "qualify",
            "2 outgoing sequence flows (Flow_2, Flow_3) leave this task: an implicit split is not supported; "
            "draw a parallel gateway (all paths) or an exclusive gateway with conditions (one path)",
        ),
        ProcessFileError(
            name,
            line_of(name, 'id="wait_unset"'),
            "wait_unset",
            "timer has no time: add a timeDuration, timeDate or timeCycle expression",
        ),
        ProcessFileError(
            name,
            line_of(name, 'id="DataStoreReference_crm"'),
            "DataStoreReference_crm",
            "data stores are not supported",
        ),
    ]


def test_dmn_entries_are_checked_as_spiffworkflow_evaluates_them() -> None:
    name = "bad_decision.dmn"
    assert errors_of(read(name)) == [
        ProcessFileError(
            name,
            line_of(name, 'id="Entry_medium"'),
            "Entry_medium",
            "input entry '>= 500 and < 5000' is not a condition SpiffWorkflow can evaluate: write a value "
            "('\"manager\"', '500'), a comparison ('< 500'), '-', or a Python condition with '?' for the "
            "input value ('500 <= ? < 5000')",
        ),
        ProcessFileError(
            name,
            line_of(name, 'id="Out_large"'),
            "Out_large",
            'output entry: "__class__" is an invalid attribute name because it starts with "_"',
        ),
    ]


def test_one_bad_file_fails_the_whole_bundle_with_every_error() -> None:
    errors = errors_of(read(*CLEAN, "bad_scripts.bpmn", "gateway_no_condition.bpmn"))

    assert [(e.file, e.line, e.element_id) for e in errors] == [
        ("bad_scripts.bpmn", line_of("bad_scripts.bpmn", "import os"), "script_import"),
        ("bad_scripts.bpmn", line_of("bad_scripts.bpmn", "__subclasses__"), "script_dunder"),
        ("gateway_no_condition.bpmn", line_of("gateway_no_condition.bpmn", 'id="Flow_no"'), "Flow_no"),
    ]
    assert errors[0].message == "script: import statements are not allowed"
    assert errors[2].message.startswith(
        "sequence flow leaves exclusiveGateway 'gw_choice' without a condition"
    )


def test_lint_reports_warnings_separately() -> None:
    text = (FILES / "timers.bpmn").read_text().replace(' name="Prepare the shipment"', "")
    trees = {"shipping.bpmn": parse_xml(text.encode(), "shipping.bpmn")}

    errors, warnings = lint(trees, None)

    assert errors == []
    assert warnings == [
        ProcessFileError(
            "shipping.bpmn", 1, None, "no process has the id 'shipping' (convention: process id = file stem)"
        ),
        ProcessFileError(
            "shipping.bpmn",
            line_of("timers.bpmn", 'id="prepare"'),
            "prepare",
            "manualTask has no name (every task, event and gateway needs one)",
        ),
    ]


# ---------------------------------------------------------------------------------------------
# check_paths
# ---------------------------------------------------------------------------------------------


def test_check_paths_reads_directories_and_files(tmp_path: Path, forms_dir: Path) -> None:
    processes = tmp_path / "processes"
    processes.mkdir()
    for name in CLEAN:
        shutil.copy(FILES / name, processes / name)
    (processes / "notes.txt").write_text("not a process")

    assert check_paths([processes], forms_dir) == []

    bad = FILES / "call_missing.bpmn"
    assert check_paths([processes, bad, tmp_path / "missing.bpmn"], forms_dir) == [
        ProcessFileError(str(tmp_path / "missing.bpmn"), None, None, "no such file or directory"),
        ProcessFileError(
            str(bad),
            line_of("call_missing.bpmn", 'id="call_nowhere"'),
            "call_nowhere",
            "call activity calls process 'nowhere', which is not in these files",
        ),
    ]
    errors, warnings = check_paths_with_warnings([processes], forms_dir)
    assert (errors, warnings) == ([], [])
