"""Parse, validate and lint a set of BPMN/DMN files into SpiffWorkflow specs.

`parse_files` is all or nothing: it returns a `ParsedBundle` only when every file is clean, and
otherwise raises `ProcessFileErrors` listing every problem found, each located as
`file:line element-id: message`. `check_paths` does the same for files on disk (`backoffice check`).

Stages, each collecting every problem it can:
1. `xmlsafe.parse_xml` (size cap, no DOCTYPE, malformed XML with a line);
2. XSD validation (BPMN 2.0, DMN 1.1-1.3), all schema errors, not only the last one;
3. `lint`: our rules (CONVENTIONS.md) and the things SpiffWorkflow gets wrong or reports badly;
4. normalisation: unquoted ISO timer literals are quoted, Camunda attributes are copied into
   SpiffWorkflow extensions (`formKey`, `candidateGroups`, `decisionRef`);
5. SpiffWorkflow's own parser; its exceptions become located errors, minus those lint already
   reported for the same element.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser import SpiffBpmnParser

from engine.errors import ProcessFileError, ProcessFileErrors
from engine.scripts import check_source, timer_expression
from engine.xmlsafe import parse_xml

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
DMN_NAMESPACES = frozenset(DMN_SCHEMAS)

_PREFIXES = {BPMN_NS: "bpmn", BPMNDI_NS: "bpmndi", DC_NS: "dc", DI_NS: "di", SPIFF_NS: "spiffworkflow"}
_PREFIXES.update({ns: "dmn" for ns in DMN_NAMESPACES})

# User task properties that are expressions (CONVENTIONS.md, "User task properties").
EXPRESSION_PROPERTIES = (
    "title",
    "dueDate",
    "priority",
    "assignee",
    "excludedUsers",
    "documentType",
    "documentKey",
)
# Hit policies with their documented meaning here; SpiffWorkflow runs every other one as FIRST.
HIT_POLICIES = ("UNIQUE", "FIRST", "COLLECT")
# Python's default limit lets SpiffWorkflow's recursive parser follow ~490 nodes (notes point 8).
PARSE_RECURSION_LIMIT = 10_000

_TASKS = {
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
}  # fmt: skip
_EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
_GATEWAYS = {"exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway"}
_CONDITIONAL_GATEWAYS = {"exclusiveGateway", "inclusiveGateway"}
_SUBPROCESSES = {"subProcess", "transaction", "adHocSubProcess"}
_TIMER_FIELDS = ("timeDate", "timeDuration", "timeCycle")
_PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SCRIPT_LINE = re.compile(r"^line (\d+): ")
_DMN_INPUT_MARK = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")  # as SpiffWorkflow's DMNEngine
# Looks like an ISO 8601 timer literal (so it is not an expression) but timer_expression refused it.
_ALMOST_ISO = re.compile(r"(?:R\d*/)?P[T\d][\w.,]*|R\d*/\S*|\d{4}-\d\S*")
_WRAPPED_EXCEPTION = re.compile(r"^(\w+(?:Error|Exception))\((.*)\)$", re.DOTALL)

_SPIFF_LOCK = threading.Lock()  # recursion limit is process-wide; lxml schemas are shared


@dataclass
class ParsedBundle:
    """Every process of a clean set of files, ready for `BpmnWorkflow(spec, subprocess_specs)`."""

    processes: dict[str, BpmnProcessSpec]
    subprocess_specs: dict[str, dict[str, BpmnProcessSpec]]
    files: dict[str, bytes]
    process_files: dict[str, str]
    warnings: list[ProcessFileError] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


def _local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _namespace(element: etree._Element) -> str | None:
    tag = element.tag
    return etree.QName(tag).namespace if isinstance(tag, str) else None


def _is_bpmn(element: etree._Element, *names: str) -> bool:
    return _namespace(element) == BPMN_NS and (not names or _local(element) in names)


def _line(element: etree._Element | None) -> int | None:
    line = element.sourceline if element is not None else None
    return line if isinstance(line, int) else None


def _text(element: etree._Element | None) -> str | None:
    """The element's text, or None when missing or blank."""
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text


def _shorten(message: str) -> str:
    def prefix(match: re.Match[str]) -> str:
        known = _PREFIXES.get(match.group(1))
        return f"{known}:" if known else match.group(0)

    message = re.sub(r"\{([^}]*)\}", prefix, message).strip()
    return message if len(message) <= 400 else message[:397] + "..."


class _Document:
    """One parsed file with the indexes every stage needs."""

    def __init__(self, name: str, tree: etree._ElementTree, kind: str) -> None:
        self.name = name
        self.tree = tree
        self.kind = kind  # "bpmn" or "dmn"
        self.root = tree.getroot()
        self.by_id: dict[str, etree._Element] = {}
        for element in self.root.iter():
            element_id = element.get("id") if isinstance(element.tag, str) else None
            if element_id and element_id not in self.by_id:
                self.by_id[element_id] = element

    def line_of(self, element_id: str | None) -> int | None:
        element = self.by_id.get(element_id) if element_id else None
        return _line(element) if element is not None else None

    def id_at_line(self, line: int | None) -> str | None:
        if line is None:
            return None
        for element_id, element in self.by_id.items():
            if _line(element) == line:
                return element_id
        return None

    def top_processes(self) -> list[etree._Element]:
        return [child for child in self.root if _is_bpmn(child, "process")]


def _kind_of(tree: etree._ElementTree) -> str | None:
    root = tree.getroot()
    if _local(root) != "definitions":
        return None
    if _namespace(root) == BPMN_NS:
        return "bpmn"
    if _namespace(root) in DMN_NAMESPACES:
        return "dmn"
    return None


def _has_flow_content(process: etree._Element) -> bool:
    return any(_is_bpmn(child) and _local(child) in _TASKS | _EVENTS | _GATEWAYS for child in process)


def _is_executable(process: etree._Element) -> bool:
    return (process.get("isExecutable") or "").strip().lower() == "true"


# ---------------------------------------------------------------------------------------------
# Problem collection
# ---------------------------------------------------------------------------------------------


class _Report:
    def __init__(self) -> None:
        self.errors: list[ProcessFileError] = []
        self.warnings: list[ProcessFileError] = []

    @staticmethod
    def _make(
        doc: _Document, element: etree._Element | None, message: str, line: int | None
    ) -> ProcessFileError:
        element_id = element.get("id") if element is not None else None
        if line is None and element is not None:
            line = _line(element)
        return ProcessFileError(doc.name, line, element_id or None, message)

    def error(
        self, doc: _Document, element: etree._Element | None, message: str, line: int | None = None
    ) -> None:
        self.errors.append(self._make(doc, element, message, line))

    def warning(
        self, doc: _Document, element: etree._Element | None, message: str, line: int | None = None
    ) -> None:
        self.warnings.append(self._make(doc, element, message, line))


def _unique_sorted(problems: list[ProcessFileError], order: Mapping[str, int]) -> list[ProcessFileError]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (order.get(p.file, len(order)), p.file, p.line or 0))


# ---------------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------------


class _Linter:
    def __init__(self, docs: list[_Document], forms_dir: Path | None, report: _Report) -> None:
        self.docs = docs
        self.forms_dir = forms_dir
        self.report = report
        self.process_ids: dict[str, _Document] = {}
        self.decision_ids: dict[str, _Document] = {}
        self._form_checks: dict[Path, str | None] = {}

    # -- entry point -------------------------------------------------------------------------
    def run(self) -> None:
        self._index()
        for doc in self.docs:
            if doc.kind == "bpmn":
                self._lint_bpmn(doc)
            else:
                self._lint_dmn(doc)

    def _index(self) -> None:
        for doc in self.docs:
            if doc.kind == "bpmn":
                for process in doc.top_processes():
                    process_id = process.get("id")
                    if not process_id:
                        continue
                    if process_id in self.process_ids:
                        other = self.process_ids[process_id].name
                        self.report.error(
                            doc, process, f"process id '{process_id}' is already defined in {other}"
                        )
                    else:
                        self.process_ids[process_id] = doc
            else:
                for decision in self._decisions(doc):
                    decision_id = decision.get("id")
                    if not decision_id:
                        continue
                    if decision_id in self.decision_ids:
                        other = self.decision_ids[decision_id].name
                        self.report.error(
                            doc, decision, f"decision id '{decision_id}' is already defined in {other}"
                        )
                    else:
                        self.decision_ids[decision_id] = doc

    # -- expressions -------------------------------------------------------------------------
    def _check_code(
        self,
        doc: _Document,
        element: etree._Element,
        source: str | None,
        mode: str,
        what: str,
        line: int | None = None,
    ) -> None:
        """Compile `source` in the sandbox; report with the file line of the offending code line."""
        if source is None:
            return
        problem = check_source(source, mode)
        if problem is None:
            return
        base = line if line is not None else _line(element)
        match = _SCRIPT_LINE.match(problem)
        if match is not None:
            # The file line replaces the script line; the sandbox may list several problems of that line.
            problem = problem[match.end() :].replace(f"; {match.group(0)}", "; ")
            if base is not None:
                offset = int(match.group(1)) - 1
                if mode == "eval":  # the sandbox strips an expression before compiling it
                    offset += source[: len(source) - len(source.lstrip())].count("\n")
                base += offset
        self.report.error(doc, element, f"{what}: {problem}", line=base)

    # -- BPMN --------------------------------------------------------------------------------
    def _lint_bpmn(self, doc: _Document) -> None:
        root = doc.root
        lanes = self._lanes(doc)
        outgoing: dict[str, list[etree._Element]] = {}
        for flow in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
            source = flow.get("sourceRef")
            if source:
                outgoing.setdefault(source, []).append(flow)

        processes = doc.top_processes()
        if not any(p.get("id") == Path(doc.name).stem for p in processes):
            self.report.warning(
                doc,
                None,
                f"no process has the id '{Path(doc.name).stem}' (convention: process id = file stem)",
                1,
            )
        for process in processes:
            self._lint_process(doc, process, lanes, outgoing)

        self._lint_shadowed_ids(doc)
        for kind in ("message", "signal", "error", "escalation", "correlationProperty"):
            for element in root.iter(f"{{{BPMN_NS}}}{kind}"):
                if not (element.get("id") or "").strip():
                    self.report.error(doc, element, f"bpmn:{kind} has no id")
        for element in root.iter(f"{{{BPMN_NS}}}dataStore", f"{{{BPMN_NS}}}dataStoreReference"):
            self.report.error(doc, element, "data stores are not supported")
        for prop in root.iter(f"{{{BPMN_NS}}}correlationProperty"):
            self._lint_correlation_property(doc, prop)

    def _lint_shadowed_ids(self, doc: _Document) -> None:
        """SpiffWorkflow indexes every element with an id, extension elements included, by that id."""
        for process in doc.top_processes():
            seen: dict[str, etree._Element] = {}
            for element in process.iter():
                element_id = element.get("id") if isinstance(element.tag, str) else None
                if not element_id:
                    continue
                first = seen.setdefault(element_id, element)
                if first is element or _is_bpmn(first) == _is_bpmn(element):
                    # the same element; a duplicate BPMN id (the XSD reports those); or extension
                    # elements sharing an id (operator ids are operation names): harmless
                    continue
                bpmn = first if _is_bpmn(first) else element
                other = element if bpmn is first else first
                self.report.error(
                    doc,
                    bpmn,
                    f"id '{element_id}' is also used by {_shorten(str(other.tag))} on line {_line(other)}; "
                    "SpiffWorkflow mixes elements with the same id up: rename one",
                )

    def _lanes(self, doc: _Document) -> dict[str, str | None]:
        # Same rule as SpiffWorkflow: the last flowNodeRef of a node wins (child lanes follow parents).
        lanes: dict[str, str | None] = {}
        for ref in doc.root.iter(f"{{{BPMN_NS}}}flowNodeRef"):
            if ref.text is not None:
                parent = ref.getparent()
                lanes[ref.text.strip()] = parent.get("name") if parent is not None else None
        return lanes

    @staticmethod
    def _lane_of(element: etree._Element, lanes: Mapping[str, str | None]) -> str | None:
        # SpiffWorkflow hands a sub-process's lane down to everything inside it.
        chain = [element]
        parent = element.getparent()
        while parent is not None and not _is_bpmn(parent, "process"):
            if _is_bpmn(parent, *_SUBPROCESSES):
                chain.append(parent)
            parent = parent.getparent()
        for node in reversed(chain):
            lane = lanes.get(node.get("id") or "")
            if lane:
                return lane
        return None

    def _lint_process(
        self,
        doc: _Document,
        process: etree._Element,
        lanes: Mapping[str, str | None],
        outgoing: Mapping[str, list[etree._Element]],
    ) -> None:
        process_id = process.get("id") or "?"
        if not process.get("id"):
            self.report.error(doc, process, "process has no id")
        if not _is_executable(process):
            if not _has_flow_content(process):
                return  # an empty pool, drawn for documentation only
            state = (
                "isExecutable is missing"
                if process.get("isExecutable") is None
                else "isExecutable is not true"
            )
            self.report.error(
                doc, process, f"process '{process_id}' is not executable ({state}); set isExecutable=\"true\""
            )
        for element in process.iter():
            if not _is_bpmn(element):
                continue
            kind = _local(element)
            if kind in _TASKS | _EVENTS | _GATEWAYS:
                self._lint_flow_node(doc, process_id, element, kind, lanes, outgoing)
            elif kind == "sequenceFlow":
                self._lint_sequence_flow(doc, element)
            elif kind == "conditionalEventDefinition":
                event = element.getparent()
                owner = event if event is not None else element
                condition = element.find(f"{{{BPMN_NS}}}condition")
                if condition is None or _text(condition) is None:
                    self.report.error(doc, owner, "conditional event has no condition")
                else:
                    self._check_code(doc, owner, condition.text, "eval", "condition", _line(condition))

    def _lint_flow_node(
        self,
        doc: _Document,
        process_id: str,
        element: etree._Element,
        kind: str,
        lanes: Mapping[str, str | None],
        outgoing: Mapping[str, list[etree._Element]],
    ) -> None:
        report = self.report
        if not (element.get("name") or "").strip():
            report.warning(doc, element, f"{kind} has no name (every task, event and gateway needs one)")

        flows = outgoing.get(element.get("id") or "", [])
        if kind in _CONDITIONAL_GATEWAYS:
            self._lint_conditional_gateway(doc, element, kind, flows)
        elif len(flows) > 1 and kind not in _GATEWAYS:
            targets = ", ".join(f.get("id") or "?" for f in flows)
            if kind == "startEvent":
                report.warning(
                    doc, element, f"{len(flows)} outgoing sequence flows ({targets}) all run in parallel"
                )
            else:
                report.error(
                    doc,
                    element,
                    f"{len(flows)} outgoing sequence flows ({targets}) leave this {kind}: an implicit split "
                    "is not supported; draw a parallel gateway (all paths) or an exclusive gateway with "
                    "conditions (one path)",
                )

        extensions = element.find(f"{{{BPMN_NS}}}extensionElements")
        if extensions is not None:
            for name in ("preScript", "postScript"):
                for hook in extensions.findall(f"{{{SPIFF_NS}}}{name}"):
                    self._check_code(doc, element, hook.text, "exec", name, line=_line(hook))
            for payload in extensions.iter(f"{{{SPIFF_NS}}}messagePayload"):
                self._check_code(doc, element, payload.text, "eval", "message payload", line=_line(payload))

        if kind == "userTask":
            self._lint_user_task(doc, process_id, element, lanes)
        elif kind == "scriptTask":
            script: etree._Element | None = None
            for child in element:
                if _is_bpmn(child, "script"):
                    script = child
            if _text(script) is None:
                report.error(doc, element, "script task has no script")
            else:
                assert script is not None
                self._check_code(doc, element, script.text, "exec", "script", line=_line(script))
        elif kind == "serviceTask":
            self._lint_service_task(doc, element)
        elif kind == "businessRuleTask":
            self._lint_business_rule_task(doc, element)
        elif kind == "callActivity":
            called = (element.get("calledElement") or "").strip()
            if not called:
                report.error(
                    doc, element, "call activity has no calledElement (the id of the process it calls)"
                )
            elif called not in self.process_ids:
                report.error(
                    doc, element, f"call activity calls process '{called}', which is not in these files"
                )
        elif kind in ("sendTask", "receiveTask"):
            definitions = element.findall(f"{{{BPMN_NS}}}messageEventDefinition")
            if element.get("messageRef") is not None or not definitions:
                self._lint_message_ref(doc, element, element.get("messageRef"), kind)
        if kind in _EVENTS or kind in ("sendTask", "receiveTask"):
            self._lint_event_definitions(doc, element, kind)
        if kind == "boundaryEvent" and not any(_local(c).endswith("EventDefinition") for c in element):
            report.error(doc, element, "boundary event has no event definition (timer, message, error, ...)")
        self._lint_loops(doc, element)

    def _lint_sequence_flow(self, doc: _Document, flow: etree._Element) -> None:
        condition = flow.find(f"{{{BPMN_NS}}}conditionExpression")
        if condition is None or _text(condition) is None:
            return
        source = doc.by_id.get(flow.get("sourceRef") or "")
        if source is not None and _is_bpmn(source, *_CONDITIONAL_GATEWAYS):
            self._check_code(doc, flow, condition.text, "eval", "condition", line=_line(condition))
        else:
            self.report.warning(
                doc,
                flow,
                "this condition is ignored: only flows leaving an exclusive or inclusive gateway "
                "are conditional",
                line=_line(condition),
            )

    def _lint_conditional_gateway(
        self, doc: _Document, gateway: etree._Element, kind: str, flows: list[etree._Element]
    ) -> None:
        default = gateway.get("default")
        flow_ids = [f.get("id") for f in flows]
        if default and default not in flow_ids:
            self.report.error(
                doc, gateway, f"default flow '{default}' is not an outgoing flow of this gateway"
            )
        if len(flows) < 2:
            return
        for flow in flows:
            if flow.get("id") == default:
                continue
            if _text(flow.find(f"{{{BPMN_NS}}}conditionExpression")) is None:
                self.report.error(
                    doc,
                    flow,
                    f"sequence flow leaves {kind} '{gateway.get('id')}' without a condition and is not its "
                    "default flow; add a condition or make it the default",
                )

    def _lint_user_task(
        self, doc: _Document, process_id: str, task: etree._Element, lanes: Mapping[str, str | None]
    ) -> None:
        report = self.report
        property_elements = _spiff_property_elements(task)
        properties = {name: prop.get("value") or "" for name, prop in property_elements.items()}
        role = (
            self._lane_of(task, lanes)
            or (task.get(f"{{{CAMUNDA_NS}}}candidateGroups") or "").strip()
            or (properties.get("candidateGroups") or "").strip()
        )
        if not role:
            report.error(
                doc, task, "user task has no role: put it in a named lane or set camunda:candidateGroups"
            )

        for name in EXPRESSION_PROPERTIES:
            if name not in property_elements:
                continue
            value, line = properties[name], _line(property_elements[name])
            if value.strip():
                self._check_code(doc, task, timer_expression(value), "eval", f"property '{name}'", line)
            else:
                report.error(doc, task, f"property '{name}' is empty", line)

        form = (properties.get("formJsonSchemaFilename") or "").strip() or (
            task.get(f"{{{CAMUNDA_NS}}}formKey") or ""
        ).strip()
        if not form:
            report.error(
                doc,
                task,
                "user task has no form: add the spiffworkflow property formJsonSchemaFilename "
                f"(e.g. {task.get('id')}.json) or camunda:formKey",
            )
            return
        if not _PLAIN_FILE_NAME.fullmatch(form) or ".." in form or not form.endswith(".json"):
            report.error(doc, task, f"form '{form}' must be a plain JSON file name like approve_request.json")
            return
        if form[: -len(".json")] != task.get("id"):
            report.warning(
                doc, task, f"form '{form}' is not named after the task (convention: <task id>.json)"
            )
        if self.forms_dir is not None:
            problem = self._check_form(self.forms_dir / process_id / form)
            if problem is not None:
                report.error(doc, task, problem)

    def _check_form(self, path: Path) -> str | None:
        if path not in self._form_checks:
            self._form_checks[path] = _form_problem(path)
        return self._form_checks[path]

    def _lint_service_task(self, doc: _Document, task: etree._Element) -> None:
        operator = task.find(f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}serviceTaskOperator")
        if operator is None:
            self.report.error(
                doc, task, "service task has no spiffworkflow:serviceTaskOperator (the operation to call)"
            )
            return
        if not (operator.get("id") or "").strip():
            self.report.error(doc, task, "spiffworkflow:serviceTaskOperator has no id (the operation name)")
        for parameter in operator.iter(f"{{{SPIFF_NS}}}parameter"):
            name = parameter.get("id") or "?"
            value = parameter.get("value")
            if value is None:
                continue
            if parameter.get("type") is None:
                self.report.error(doc, task, f"parameter '{name}' has no type", line=_line(parameter))
            self._check_code(doc, task, value, "eval", f"parameter '{name}'", line=_line(parameter))

    def _lint_business_rule_task(self, doc: _Document, task: etree._Element) -> None:
        called = task.find(f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}calledDecisionId")
        decision = (_text(called) or "").strip() or (task.get(f"{{{CAMUNDA_NS}}}decisionRef") or "").strip()
        if not decision:
            self.report.error(
                doc,
                task,
                "business rule task names no decision: add spiffworkflow:calledDecisionId "
                "or camunda:decisionRef",
            )
        elif decision not in self.decision_ids:
            known = ", ".join(sorted(self.decision_ids)) or "none"
            self.report.error(
                doc, task, f"decision '{decision}' is not in the DMN files (decisions available: {known})"
            )

    def _lint_message_ref(self, doc: _Document, element: etree._Element, ref: str | None, kind: str) -> None:
        if not ref:
            self.report.error(
                doc, element, f"{kind} has no message: set messageRef to a bpmn:message with a name"
            )
            return
        message = doc.by_id.get(ref)
        if message is None or not _is_bpmn(message, "message"):
            self.report.error(doc, element, f"message '{ref}' is not defined in this file")
        elif not (message.get("name") or "").strip():
            self.report.error(
                doc, element, f"message '{ref}' has no name (line {_line(message)}); give it a name"
            )

    def _lint_event_definitions(self, doc: _Document, event: etree._Element, kind: str) -> None:
        for definition in event:
            definition_kind = _local(definition) if _is_bpmn(definition) else ""
            if definition_kind == "messageEventDefinition":
                self._lint_message_ref(doc, event, definition.get("messageRef"), f"message {kind}")
                for payload in definition.iter(f"{{{SPIFF_NS}}}messagePayload"):
                    self._check_code(doc, event, payload.text, "eval", "message payload", line=_line(payload))
                for correlation in definition.iter(f"{{{SPIFF_NS}}}processVariableCorrelation"):
                    expression = correlation.find(f"{{{SPIFF_NS}}}expression")
                    if _text(expression) is None:
                        self.report.error(doc, event, "process variable correlation has no expression")
                    else:
                        assert expression is not None
                        self._check_code(
                            doc, event, expression.text, "eval", "correlation", line=_line(expression)
                        )
            elif definition_kind == "timerEventDefinition":
                self._lint_timer(doc, event, definition)
            elif definition_kind in (
                "signalEventDefinition",
                "errorEventDefinition",
                "escalationEventDefinition",
            ):
                what = definition_kind[: -len("EventDefinition")]
                ref = definition.get(f"{what}Ref")
                target = doc.by_id.get(ref) if ref else None
                if ref and (target is None or not _is_bpmn(target, what)):
                    self.report.error(doc, event, f"{what} '{ref}' is not defined in this file")

    def _lint_timer(self, doc: _Document, event: etree._Element, definition: etree._Element) -> None:
        fields = [child for child in definition if _is_bpmn(child, *_TIMER_FIELDS)]
        if not fields:
            self.report.error(
                doc, event, "timer has no time: add a timeDuration, timeDate or timeCycle expression"
            )
            return
        for time_field in fields:
            what = f"timer {_local(time_field)}"
            text = _text(time_field)
            if text is None:
                message = f"{what} is empty (e.g. P3D, PT4H, R3/PT10M, a date)"
                self.report.error(doc, event, message, line=_line(time_field))
            elif timer_expression(text) == text and _ALMOST_ISO.fullmatch(text.strip()):
                message = (
                    f"{what} '{text.strip()}' is not a valid ISO 8601 value "
                    "(e.g. P3D, PT4H, P1DT12H, R3/PT10M, R/P1D, 2026-12-01T09:00:00+01:00)"
                )
                self.report.error(doc, event, message, line=_line(time_field))
            else:
                self._check_code(doc, event, timer_expression(text), "eval", what, line=_line(time_field))

    def _lint_loops(self, doc: _Document, element: etree._Element) -> None:
        for loop in element:
            if _is_bpmn(loop, "standardLoopCharacteristics"):
                for condition in loop.findall(f"{{{BPMN_NS}}}loopCondition"):
                    self._check_code(
                        doc, element, _text(condition), "eval", "loop condition", _line(condition)
                    )
            elif _is_bpmn(loop, "multiInstanceLoopCharacteristics"):
                for name in ("loopCardinality", "completionCondition"):
                    for expression in loop.findall(f"{{{BPMN_NS}}}{name}"):
                        self._check_code(doc, element, _text(expression), "eval", name, _line(expression))
        if _is_bpmn(element, "adHocSubProcess"):
            for condition in element.findall(f"{{{BPMN_NS}}}completionCondition"):
                self._check_code(
                    doc, element, _text(condition), "eval", "completion condition", _line(condition)
                )

    def _lint_correlation_property(self, doc: _Document, prop: etree._Element) -> None:
        expressions = prop.findall(f"{{{BPMN_NS}}}correlationPropertyRetrievalExpression")
        if not expressions:
            self.report.error(doc, prop, "correlation property has no retrieval expression")
        for retrieval in expressions:
            message_ref = retrieval.get("messageRef")
            if not message_ref:
                self.report.error(doc, prop, "retrieval expression has no messageRef", line=_line(retrieval))
            elif not _is_bpmn(doc.by_id.get(message_ref, prop), "message"):
                message = f"retrieval expression names message '{message_ref}', which is not defined"
                self.report.error(doc, prop, message, line=_line(retrieval))
            children = [c for c in retrieval if isinstance(c.tag, str)]
            # SpiffWorkflow reads the first child (formalExpression, or messagePath after XSD preprocessing).
            expression = _text(children[0]) if children else None
            if expression is None:
                self.report.error(doc, prop, "retrieval expression is empty", line=_line(retrieval))
            else:
                self._check_code(doc, prop, expression, "eval", "retrieval expression", _line(children[0]))

    # -- DMN ---------------------------------------------------------------------------------
    @staticmethod
    def _decisions(doc: _Document) -> list[etree._Element]:
        namespace = _namespace(doc.root)
        return [child for child in doc.root if _namespace(child) == namespace and _local(child) == "decision"]

    def _lint_dmn(self, doc: _Document) -> None:
        decisions = self._decisions(doc)
        if not decisions:
            self.report.error(doc, doc.root, "the DMN file has no decision")
            return
        if len(decisions) > 1:
            self.report.error(
                doc, decisions[1], f"only one decision per DMN file is supported (found {len(decisions)})"
            )
        namespace = _namespace(doc.root)
        for decision in decisions:
            tables = [c for c in decision if _namespace(c) == namespace and _local(c) == "decisionTable"]
            if not tables:
                self.report.error(
                    doc, decision, "decision has no decision table (only decision tables are supported)"
                )
            for table in tables:
                self._lint_decision_table(doc, table, namespace or "")

    def _lint_decision_table(self, doc: _Document, table: etree._Element, ns: str) -> None:
        report = self.report
        policy = (table.get("hitPolicy") or "UNIQUE").upper()
        if policy not in HIT_POLICIES:
            report.warning(
                doc, table, f"hit policy {policy} runs as FIRST here (the first matching rule wins)"
            )
        elif policy == "COLLECT" and table.get("aggregation"):
            report.warning(
                doc, table, f"aggregation {table.get('aggregation')} is ignored: COLLECT returns lists"
            )

        inputs: list[str | None] = []
        outputs = 0
        for column in table:
            if _namespace(column) != ns:
                continue
            if _local(column) == "input":
                text_node = column.find(f"{{{ns}}}inputExpression/{{{ns}}}text")
                expression = _text(text_node)
                if expression is None:
                    report.error(doc, column, "input has no expression")
                else:
                    self._check_code(doc, column, expression, "eval", "input expression", _line(text_node))
                inputs.append(expression)
            elif _local(column) == "output":
                outputs += 1
                if not (column.get("name") or column.get("label") or "").strip():
                    report.error(doc, column, "output has no name (the variable the result is stored in)")

        for rule in table.findall(f"{{{ns}}}rule"):
            entries = rule.findall(f"{{{ns}}}inputEntry")
            results = rule.findall(f"{{{ns}}}outputEntry")
            if len(entries) > len(inputs) or len(results) > outputs:
                message = (
                    f"rule has {len(entries)} input and {len(results)} output entries; the table has "
                    f"{len(inputs)} inputs and {outputs} outputs"
                )
                report.error(doc, rule, message)
                continue
            for entry, input_expression in zip(entries, inputs, strict=False):
                text_node = entry.find(f"{{{ns}}}text")
                text = text_node.text if text_node is not None else None
                problem = _dmn_input_entry_problem(text, input_expression)
                if problem is not None:
                    line = _line(text_node) if text_node is not None else None
                    report.error(doc, entry, problem, line=line)
            for result in results:
                text_node = result.find(f"{{{ns}}}text")
                if text_node is not None and text_node.text:
                    self._check_code(doc, result, text_node.text, "eval", "output entry", _line(text_node))


def _spiff_property_elements(element: etree._Element) -> dict[str, etree._Element]:
    """`spiffworkflow:property` elements by name (the last one wins, as in SpiffWorkflow)."""
    path = f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}properties/{{{SPIFF_NS}}}property"
    return {prop.get("name") or "": prop for prop in element.iterfind(path) if prop.get("name")}


def _spiff_properties(element: etree._Element) -> dict[str, str]:
    return {name: prop.get("value") or "" for name, prop in _spiff_property_elements(element).items()}


def _form_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"form file {path} not found"
    try:
        schema = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError) as exc:
        return f"form file {path} cannot be read: {exc}"
    except json.JSONDecodeError as exc:
        return f"form file {path} is not valid JSON: line {exc.lineno}: {exc.msg}"
    if not isinstance(schema, dict):
        return f"form file {path} must hold a JSON Schema object"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"form file {path} is not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def _parses(source: str, mode: str) -> bool:
    try:
        ast.parse(source, mode=mode)
    except (SyntaxError, ValueError):
        return False
    return True


def _dmn_input_entry_problem(text: str | None, input_expression: str | None) -> str | None:
    """Mimic SpiffWorkflow's DMNEngine.evaluate: report the expression it would fail to build."""
    if text is None or text == "-":
        return None  # "no condition"
    subject = input_expression or "input"
    marked = _DMN_INPUT_MARK.sub("dmninputexpr", text)
    if "dmninputexpr" in marked:
        expression = marked
    elif _parses(text, "eval"):
        expression = f"({subject}) == ({text})"
    elif _parses(f"v {text}", "exec"):
        if subject[-1:].isidentifier() and (text[:1].isalnum() or text[:1] == "_"):
            return (
                f"input entry '{text}' would be read as '{subject}{text}'; use '?' for the input value "
                f"(e.g. '? {text}')"
            )
        expression = subject + text
    else:
        return (
            f"input entry '{text}' is not a condition SpiffWorkflow can evaluate: write a value "
            "('\"manager\"', '500'), a comparison ('< 500'), '-', or a Python condition with '?' for the "
            "input value ('500 <= ? < 5000')"
        )
    problem = check_source(expression, "eval")
    if problem is not None:
        return f"input entry '{text}': {_SCRIPT_LINE.sub('', problem)}"
    return None


def lint(
    documents: Mapping[str, etree._ElementTree], forms_dir: Path | None
) -> tuple[list[ProcessFileError], list[ProcessFileError]]:
    """Our rules over parsed BPMN/DMN trees (name -> tree): returns (errors, warnings).

    Reads the trees only; BPMN and DMN are told apart by their root element.
    """
    report = _Report()
    docs: list[_Document] = []
    for name, tree in documents.items():
        kind = _kind_of(tree)
        if kind is None:
            report.errors.append(ProcessFileError(name, 1, None, "not a BPMN 2.0 or DMN file"))
        else:
            docs.append(_Document(name, tree, kind))
    _Linter(docs, forms_dir, report).run()
    order = {name: i for i, name in enumerate(documents)}
    return _unique_sorted(report.errors, order), _unique_sorted(report.warnings, order)


# ---------------------------------------------------------------------------------------------
# XSD
# ---------------------------------------------------------------------------------------------

_validators: dict[str | None, BpmnValidator] = {}


def _validator(dmn_namespace: str | None = None) -> BpmnValidator:
    """The BPMN validator (None) or the DMN one for a namespace; built once (call under the lock)."""
    if dmn_namespace not in _validators:
        _validators[dmn_namespace] = (
            BpmnValidator() if dmn_namespace is None else BpmnValidator(DMN_SCHEMAS[dmn_namespace])
        )
    return _validators[dmn_namespace]


def _schema_errors(doc: _Document) -> list[ProcessFileError]:
    validator = _validator(None if doc.kind == "bpmn" else _namespace(doc.root))
    validator.preprocess(doc.tree)  # what SpiffWorkflow does before validating (correlation tags)
    schema = validator.validator
    if schema.validate(doc.tree):
        return []
    problems = []
    for entry in schema.error_log:
        line = entry.line or None
        problems.append(ProcessFileError(doc.name, line, doc.id_at_line(line), _shorten(entry.message)))
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------
# Normalisation (what the modelers write -> what SpiffWorkflow runs)
# ---------------------------------------------------------------------------------------------


def _extension_elements(element: etree._Element) -> etree._Element:
    existing = element.find(f"{{{BPMN_NS}}}extensionElements")
    if existing is not None:
        return existing
    created = etree.Element(f"{{{BPMN_NS}}}extensionElements")
    position = 0  # the schema wants it after any bpmn:documentation, before everything else
    for child in element:
        if isinstance(child.tag, str) and not _is_bpmn(child, "documentation"):
            break
        position += 1
    element.insert(position, created)
    return created


def _add_property(element: etree._Element, name: str, value: str) -> None:
    extensions = _extension_elements(element)
    properties = extensions.find(f"{{{SPIFF_NS}}}properties")
    if properties is None:
        properties = etree.SubElement(extensions, f"{{{SPIFF_NS}}}properties")
    etree.SubElement(properties, f"{{{SPIFF_NS}}}property", name=name, value=value)


def normalise(doc_root: etree._Element) -> None:
    """Rewrite a BPMN tree in place so SpiffWorkflow runs what modelers write.

    - timeDuration/timeDate/timeCycle: an unquoted ISO literal (`P3D`) becomes a Python string;
    - userTask `camunda:formKey` -> spiffworkflow property `formJsonSchemaFilename`;
    - userTask `camunda:candidateGroups` -> spiffworkflow property `candidateGroups`;
    - businessRuleTask `camunda:decisionRef` -> `spiffworkflow:calledDecisionId`.
    """
    for name in _TIMER_FIELDS:
        for time_field in doc_root.iter(f"{{{BPMN_NS}}}{name}"):
            if time_field.text is not None and time_field.text.strip():
                time_field.text = timer_expression(time_field.text)
    for task in doc_root.iter(f"{{{BPMN_NS}}}userTask"):
        properties = _spiff_properties(task)
        form_key = (task.get(f"{{{CAMUNDA_NS}}}formKey") or "").strip()
        if form_key and not (properties.get("formJsonSchemaFilename") or "").strip():
            _add_property(task, "formJsonSchemaFilename", form_key)
        groups = (task.get(f"{{{CAMUNDA_NS}}}candidateGroups") or "").strip()
        if groups and not (properties.get("candidateGroups") or "").strip():
            _add_property(task, "candidateGroups", groups)
    for task in doc_root.iter(f"{{{BPMN_NS}}}businessRuleTask"):
        called = task.find(f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}calledDecisionId")
        decision_ref = (task.get(f"{{{CAMUNDA_NS}}}decisionRef") or "").strip()
        if decision_ref and _text(called) is None:
            if called is None:
                called = etree.SubElement(_extension_elements(task), f"{{{SPIFF_NS}}}calledDecisionId")
            called.text = decision_ref


# ---------------------------------------------------------------------------------------------
# SpiffWorkflow
# ---------------------------------------------------------------------------------------------


@contextmanager
def _deep_recursion(limit: int = PARSE_RECURSION_LIMIT) -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _spiff_error(exc: BaseException, doc: _Document, docs: Mapping[str, _Document]) -> ProcessFileError:
    """A located error for an exception SpiffWorkflow raised while parsing `doc` (or what it calls)."""
    file, element_id, line = doc.name, None, None
    if isinstance(exc, ValidationException):
        file = exc.file_name or doc.name
        element_id = exc.id or None
        line = exc.line_number if isinstance(exc.line_number, int) and exc.line_number > 0 else None
        message = str(exc.args[0]) if exc.args else "invalid"
        message = "; ".join([message.strip().rstrip("."), *getattr(exc, "notes", [])])
    else:
        message = f"{type(exc).__name__}({exc})"
    wrapped = _WRAPPED_EXCEPTION.match(message)
    if isinstance(exc, RecursionError) or (wrapped is not None and wrapped.group(1) == "RecursionError"):
        message = (
            f"the parser ran out of depth (recursion limit {PARSE_RECURSION_LIMIT}) following this chain; "
            "split the process with call activities or use a loop"
        )
    elif wrapped is not None:
        message = f"SpiffWorkflow cannot parse this element ({wrapped.group(1)}: {wrapped.group(2)})"
    source = docs.get(file, doc)
    if line is None:
        line = source.line_of(element_id)
    return ProcessFileError(file, line, element_id, _shorten(message))


def _keep_spiff_error(problem: ProcessFileError, known: list[ProcessFileError]) -> bool:
    """Drop what lint/XSD already said: the same element or line, or a location-less consequence."""
    if problem.element_id is None and problem.line is None and known:
        return False
    for other in known:
        if other.file != problem.file:
            continue
        if problem.element_id is not None and other.element_id == problem.element_id:
            return False
        if problem.element_id is None and problem.line == other.line:
            return False
    return True


def _record_warnings(caught: list[warnings.WarningMessage], doc: _Document, report: _Report) -> None:
    for warning in caught:
        report.warning(doc, None, f"SpiffWorkflow: {warning.message}")


def _build_specs(
    docs: list[_Document], report: _Report
) -> tuple[dict[str, BpmnProcessSpec], dict[str, dict[str, BpmnProcessSpec]], dict[str, str]]:
    by_name = {doc.name: doc for doc in docs}
    spiff_errors: list[ProcessFileError] = []
    processes: dict[str, BpmnProcessSpec] = {}
    subprocess_specs: dict[str, dict[str, BpmnProcessSpec]] = {}
    process_files: dict[str, str] = {}

    parser = SpiffBpmnParser(validator=_validator())
    added: list[_Document] = []
    with warnings.catch_warnings(record=True) as caught:  # e.g. DeprecationWarnings about the file
        warnings.simplefilter("always")
        for doc in sorted(docs, key=lambda d: d.kind != "dmn"):  # decisions first
            seen = len(caught)
            try:
                if doc.kind == "dmn":
                    parser.add_dmn_xml(doc.root, filename=doc.name)
                    for dmn_parser in list(parser.dmn_parsers.values()):
                        if dmn_parser.filename == doc.name and dmn_parser.decision is None:
                            dmn_parser.parse()  # DMN is otherwise parsed only when a task uses it
                else:
                    parser.add_bpmn_xml(doc.tree, filename=doc.name)
                    added.append(doc)
            except Exception as exc:  # RecursionError included
                spiff_errors.append(_spiff_error(exc, doc, by_name))
            _record_warnings(caught[seen:], doc, report)

        for doc in added:
            for process in doc.top_processes():
                process_id = process.get("id")
                if not process_id or parser.get_process_parser(process_id) is None:
                    continue
                if not _is_executable(process) and not _has_flow_content(process):
                    continue
                seen = len(caught)
                try:
                    processes[process_id] = parser.get_spec(process_id)
                    subprocess_specs[process_id] = parser.get_subprocess_specs(process_id)
                    process_files[process_id] = doc.name
                except Exception as exc:  # RecursionError included
                    spiff_errors.append(_spiff_error(exc, doc, by_name))
                _record_warnings(caught[seen:], doc, report)

    known = list(report.errors)
    for problem in spiff_errors:
        if _keep_spiff_error(problem, known):
            report.errors.append(problem)
            known.append(problem)
    return processes, subprocess_specs, process_files


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _parse(
    files: Mapping[str, bytes], forms_dir: Path | None
) -> tuple[ParsedBundle | None, list[ProcessFileError], list[ProcessFileError]]:
    report = _Report()
    docs: list[_Document] = []
    for name, data in files.items():
        try:
            tree = parse_xml(data, name)
        except ProcessFileErrors as exc:
            report.errors.extend(exc.errors)
            continue
        kind = _kind_of(tree)
        if kind is None:
            root = tree.getroot()
            report.errors.append(
                ProcessFileError(
                    name, _line(root), None, "not a BPMN 2.0 or DMN file (root is not definitions)"
                )
            )
            continue
        docs.append(_Document(name, tree, kind))

    schema_ok: list[_Document] = []
    with _SPIFF_LOCK:
        for doc in docs:
            problems = _schema_errors(doc)
            report.errors.extend(problems)
            if not problems:
                schema_ok.append(doc)

    _Linter(docs, forms_dir, report).run()

    processes: dict[str, BpmnProcessSpec] = {}
    subprocess_specs: dict[str, dict[str, BpmnProcessSpec]] = {}
    process_files: dict[str, str] = {}
    if schema_ok:
        for doc in schema_ok:
            if doc.kind == "bpmn":
                normalise(doc.root)
        with _SPIFF_LOCK, _deep_recursion():
            processes, subprocess_specs, process_files = _build_specs(schema_ok, report)

    order = {name: i for i, name in enumerate(files)}
    errors = _unique_sorted(report.errors, order)
    warnings = _unique_sorted(report.warnings, order)
    if errors:
        return None, errors, warnings
    bundle = ParsedBundle(
        processes=processes,
        subprocess_specs=subprocess_specs,
        files=dict(files),
        process_files=process_files,
        warnings=warnings,
    )
    return bundle, errors, warnings


def parse_files(files: dict[str, bytes], forms_dir: Path | None) -> ParsedBundle:
    """Parse, validate and lint a set of BPMN/DMN files (name -> content); all or nothing.

    Raises `ProcessFileErrors` with every problem found when any file has one. `forms_dir`
    is where `<process id>/<form>.json` files live; None skips the existence check.
    """
    bundle, errors, _warnings = _parse(files, forms_dir)
    if bundle is None:
        raise ProcessFileErrors(errors)
    return bundle


def _collect(paths: list[Path]) -> tuple[dict[str, bytes], list[ProcessFileError]]:
    files: dict[str, bytes] = {}
    errors: list[ProcessFileError] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.bpmn"), *path.glob("*.dmn")])
            if not found:
                errors.append(
                    ProcessFileError(str(path), None, None, "no .bpmn or .dmn files in this directory")
                )
        elif path.exists():
            found = [path]
        else:
            errors.append(ProcessFileError(str(path), None, None, "no such file or directory"))
            continue
        for file in found:
            try:
                files[str(file)] = file.read_bytes()
            except OSError as exc:
                errors.append(ProcessFileError(str(file), None, None, f"cannot read: {exc.strerror or exc}"))
    return files, errors


def check_paths_with_warnings(
    paths: list[Path], forms_dir: Path | None
) -> tuple[list[ProcessFileError], list[ProcessFileError]]:
    """`check_paths`, also returning the warnings: (errors, warnings)."""
    files, errors = _collect(paths)
    if not files:
        return errors, []
    _bundle, parse_errors, warnings = _parse(files, forms_dir)
    return errors + parse_errors, warnings


def check_paths(paths: list[Path], forms_dir: Path | None) -> list[ProcessFileError]:
    """Check the *.bpmn/*.dmn files given or found in the given directories; [] when clean."""
    return check_paths_with_warnings(paths, forms_dir)[0]


def check_files(
    files: dict[str, bytes], forms_dir: Path | None
) -> tuple[ParsedBundle | None, list[ProcessFileError]]:
    """`check_paths` for files in memory (name -> content): the bundle when clean, and the errors."""
    bundle, errors, _warnings = _parse(files, forms_dir)
    return bundle, errors


__all__ = [
    "ParsedBundle",
    "check_files",
    "check_paths",
    "check_paths_with_warnings",
    "lint",
    "normalise",
    "parse_files",
]
