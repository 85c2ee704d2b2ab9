"""Parse untrusted XML (BPMN/DMN uploads) without the classic XML attacks.

No DOCTYPE is accepted at all, which refuses external entities (XXE), entity expansion
("billion laughs") and DTD loading in one rule; the network is never used; the size is capped.
Every failure is a `ProcessFileErrors` naming the file and line.
"""

from __future__ import annotations

import io
import re

from lxml import etree

from engine.errors import ProcessFileError, ProcessFileErrors

DOCTYPE_MESSAGE = "DOCTYPE declarations are not allowed (external entities and entity expansion are refused)"

# (marker, newline) in the encodings a BPMN file realistically comes in.
_DOCTYPE_MARKERS = tuple(
    ("<!DOCTYPE".encode(encoding), "\n".encode(encoding)) for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)
_LOCATION_SUFFIX = re.compile(r",\s*line \d+, column \d+\s*$")


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread-safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _doctype_line(data: bytes) -> int | None:
    """The line of the first DOCTYPE marker in the raw bytes, or None when there is none."""
    for marker, newline in _DOCTYPE_MARKERS:
        index = data.find(marker)
        if index >= 0:
            return data.count(newline, 0, index) + 1
    return None


def _error(filename: str, line: int | None, message: str) -> ProcessFileErrors:
    return ProcessFileErrors([ProcessFileError(filename, line, None, message)])


def parse_xml(data: bytes, filename: str, max_bytes: int = 5_000_000) -> etree._ElementTree:
    """Parse `data` with hardened settings; raise `ProcessFileErrors` (with a line) on any problem."""
    if len(data) > max_bytes:
        limit = f"{max_bytes / 1_000_000:g} MB" if max_bytes >= 1_000_000 else f"{max_bytes} bytes"
        raise _error(filename, None, f"the file is larger than {limit} ({len(data):,} bytes); refused")
    line = _doctype_line(data)
    if line is not None:
        raise _error(filename, line, DOCTYPE_MESSAGE)
    try:
        tree = etree.parse(io.BytesIO(data), _parser())
    except etree.XMLSyntaxError as exc:
        message = _LOCATION_SUFFIX.sub("", str(exc.msg or exc)).strip() or "malformed XML"
        raise _error(filename, exc.lineno or None, f"malformed XML: {message}") from None
    # Belt and braces: an encoding the byte scan above does not know could hide a DOCTYPE.
    if getattr(tree.docinfo, "doctype", None) or tree.docinfo.internalDTD is not None:
        raise _error(filename, 1, DOCTYPE_MESSAGE)
    return tree
