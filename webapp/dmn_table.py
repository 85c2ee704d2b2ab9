"""A DMN decision table as rows a person edits, and the rows back into the DMN XML.

The file is read with the engine's hardened parser (`engine/xmlsafe.py`: no DOCTYPE, no
entities, size cap). Writing keeps everything but the rules as it was — columns, hit policy,
diagram, ids — keeps the ids of the rules and entries that stay, and gives new rules fresh ids.
The engine checks the result (`Engine.check_files`) exactly as it checks a file from disk.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from lxml import etree

from engine.errors import ProcessFileError, ProcessFileErrors
from engine.xmlsafe import parse_xml


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    expression: str  # inputs: the input expression; outputs: the variable the result goes to
    type_ref: str


@dataclass
class Row:
    """One rule: its id ("" for a rule not saved yet), its cells and its annotation."""

    rule_id: str
    inputs: list[str]
    outputs: list[str]
    annotation: str = ""
    line: int | None = None
    errors: list[str] = field(default_factory=list)
    cell_errors: dict[str, list[str]] = field(default_factory=dict)  # "in-0" / "out-1" -> messages

    def is_blank(self) -> bool:
        return not self.rule_id and not any(c.strip() for c in [*self.inputs, *self.outputs, self.annotation])


@dataclass
class DecisionTable:
    file_name: str
    decision_id: str
    decision_name: str
    table_id: str
    hit_policy: str
    inputs: list[Column]
    outputs: list[Column]
    rows: list[Row]
    errors: list[str] = field(default_factory=list)  # problems not tied to a row


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    namespace = etree.QName(element).namespace
    return [c for c in element if isinstance(c.tag, str) and c.tag == f"{{{namespace}}}{name}"]


def _text_of(element: etree._Element | None) -> str:
    """The text of an entry's `<text>` child (or of the element itself)."""
    if element is None:
        return ""
    texts = _children(element, "text")
    node = texts[0] if texts else element
    return node.text or ""


def _line(element: etree._Element | None) -> int | None:
    line = element.sourceline if element is not None else None
    return line if isinstance(line, int) else None


def _refuse(file_name: str, element: etree._Element | None, message: str) -> ProcessFileErrors:
    element_id = element.get("id") if element is not None else None
    return ProcessFileErrors([ProcessFileError(file_name, _line(element), element_id, message)])


def _table_element(tree: etree._ElementTree, file_name: str) -> tuple[etree._Element, etree._Element]:
    """The (decision, decisionTable) of the file: one decision per DMN file, as the engine runs it."""
    root = tree.getroot()
    if _local(root) != "definitions":
        raise _refuse(file_name, root, "not a DMN file (the root element is not <definitions>)")
    for decision in _children(root, "decision"):
        tables = _children(decision, "decisionTable")
        if tables:
            return decision, tables[0]
    raise _refuse(file_name, root, "the file has no decision table to edit")


def read_table(data: bytes, file_name: str) -> DecisionTable:
    """The decision table of a DMN file as columns and rows; `ProcessFileErrors` if it has none."""
    tree = parse_xml(data, file_name)
    decision, table = _table_element(tree, file_name)
    inputs = []
    for column in _children(table, "input"):
        expressions = _children(column, "inputExpression")
        expression = expressions[0] if expressions else None
        inputs.append(
            Column(
                id=column.get("id") or "",
                label=column.get("label") or "",
                expression=_text_of(expression),
                type_ref=(expression.get("typeRef") or "") if expression is not None else "",
            )
        )
    outputs = [
        Column(
            id=column.get("id") or "",
            label=column.get("label") or "",
            expression=column.get("name") or "",
            type_ref=column.get("typeRef") or "",
        )
        for column in _children(table, "output")
    ]
    rows = []
    for rule in _children(table, "rule"):
        entries = [_text_of(e) for e in _children(rule, "inputEntry")]
        results = [_text_of(e) for e in _children(rule, "outputEntry")]
        descriptions = _children(rule, "description")
        rows.append(
            Row(
                rule_id=rule.get("id") or "",
                inputs=(entries + [""] * len(inputs))[: max(len(inputs), len(entries))],
                outputs=(results + [""] * len(outputs))[: max(len(outputs), len(results))],
                annotation=(descriptions[0].text or "") if descriptions else "",
                line=_line(rule),
            )
        )
    return DecisionTable(
        file_name=file_name,
        decision_id=decision.get("id") or "",
        decision_name=decision.get("name") or decision.get("id") or "",
        table_id=table.get("id") or "",
        hit_policy=(table.get("hitPolicy") or "UNIQUE").upper(),
        inputs=inputs,
        outputs=outputs,
        rows=rows,
    )


def _fresh_id(prefix: str, taken: set[str], plain_first: bool = False) -> str:
    if plain_first and prefix not in taken:
        taken.add(prefix)
        return prefix
    while True:
        candidate = f"{prefix}_{uuid.uuid4().hex[:8]}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _set_text(parent: etree._Element, value: str) -> None:
    """Put `value` into the `<text>` child of an entry (created when missing)."""
    texts = _children(parent, "text")
    node = texts[0] if texts else etree.SubElement(parent, f"{{{etree.QName(parent).namespace}}}text")
    node.text = value


def _entries(rule: etree._Element, name: str, values: list[str], taken: set[str], suffix: str) -> None:
    """Make the rule's `inputEntry`/`outputEntry` children hold `values`, reusing those there."""
    namespace = etree.QName(rule).namespace
    existing = _children(rule, name)
    for extra in existing[len(values) :]:
        rule.remove(extra)
    for index, value in enumerate(values):
        if index < len(existing):
            entry = existing[index]
        else:
            entry = etree.SubElement(rule, f"{{{namespace}}}{name}")
            entry.set("id", _fresh_id(f"{rule.get('id')}_{suffix}{index}", taken, plain_first=True))
        _set_text(entry, value)


def _annotate(rule: etree._Element, annotation: str) -> None:
    namespace = etree.QName(rule).namespace
    descriptions = _children(rule, "description")
    if not annotation.strip():
        for node in descriptions:
            rule.remove(node)
        return
    node = descriptions[0] if descriptions else etree.Element(f"{{{namespace}}}description")
    node.text = annotation
    if not descriptions:
        rule.insert(0, node)  # <description> comes first in a DMN element


def write_table(data: bytes, file_name: str, rows: list[Row]) -> bytes:
    """The DMN file with its rules replaced by `rows`, in their order.

    A row naming an existing rule keeps that rule's element and ids (and anything else it holds);
    a row without a rule id becomes a new rule with fresh ids; rules not named are deleted."""
    tree = parse_xml(data, file_name)
    _decision, table = _table_element(tree, file_name)
    namespace = etree.QName(table).namespace
    taken = {str(e.get("id")) for e in tree.iter() if isinstance(e.tag, str) and e.get("id")}
    old = {str(rule.get("id")): rule for rule in _children(table, "rule")}
    for rule in old.values():
        table.remove(rule)
    for row in rows:
        if row.rule_id in old:
            rule = old.pop(row.rule_id)
        else:
            rule = etree.Element(f"{{{namespace}}}rule")
            rule.set("id", _fresh_id(f"{table.get('id') or 'rule'}_rule", taken))
        _annotate(rule, row.annotation)
        _entries(rule, "inputEntry", row.inputs, taken, "in_")
        _entries(rule, "outputEntry", row.outputs, taken, "out_")
        table.append(rule)
    # the rules are laid out like the rest of the file; the columns above them stay untouched
    depth = sum(1 for _ in table.iterancestors())
    etree.indent(table, space="  ", level=depth)
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return out + b"\n"


def place_errors(table: DecisionTable, xml: bytes, problems: list[ProcessFileError]) -> None:
    """Put each problem beside the rule or cell it concerns (by element id, else by line)."""
    rules = []
    try:
        _decision, element = _table_element(parse_xml(xml, table.file_name), table.file_name)
        rules = _children(element, "rule")
    except ProcessFileErrors:
        pass
    cells: dict[str, tuple[int, str | None]] = {}  # element id -> (row index, cell key)
    lines: dict[int, tuple[int, str | None]] = {}
    for index, rule in enumerate(rules):
        if index < len(table.rows):
            table.rows[index].line = _line(rule)
        cells[str(rule.get("id"))] = (index, None)
        for key, name in (("in", "inputEntry"), ("out", "outputEntry")):
            for column, entry in enumerate(_children(rule, name)):
                cell = (index, f"{key}-{column}")
                cells[str(entry.get("id"))] = cell
                for node in entry.iter():
                    line = _line(node)
                    if line is not None:
                        lines[line] = cell
        rule_line = _line(rule)
        if rule_line is not None:
            lines.setdefault(rule_line, (index, None))
    for problem in problems:
        where: tuple[int, str | None] | None = cells.get(problem.element_id or "")
        if where is None and problem.line is not None:
            where = lines.get(problem.line)
        text = f"line {problem.line}: {problem.message}" if problem.line else problem.message
        if problem.file != table.file_name or where is None or where[0] >= len(table.rows):
            table.errors.append(str(problem))
            continue
        row = table.rows[where[0]]
        if where[1] is None:
            row.errors.append(text)
        else:
            row.cell_errors.setdefault(where[1], []).append(text)
