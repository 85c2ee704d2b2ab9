"""The translation catalogs: extract every translatable string, merge it into the five catalogs,
compile them — `backoffice i18n extract | update | compile`, through Babel's Python API.

Translatable strings come from
- the web app's Python modules and templates, as `webapp/babel.cfg` maps them (`_`, `gettext`,
  `_l`, `lazy_gettext`, ...);
- the forms (`forms/*/*.json`): titles and descriptions anywhere in a JSON Schema, the titles of
  `oneOf`/`anyOf` choices, enum values and untitled property names as `form_render` shows them;
- the processes (`processes/*.bpmn`): process names, the names of user tasks and start events
  (a user task's name is its inbox title) and `title` properties that are plain literals —
  titles computed by an expression cannot be looked up in a catalog;
- the role titles of `engine.users.ROLES`.

English is the source language: its catalog repeats each msgid. The compiled `.mo` files are
committed next to their `.po` files; `tests/webapp/test_translations.py` checks they agree.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
WEBAPP = ROOT / "webapp"
TRANSLATIONS = WEBAPP / "translations"
POT = TRANSLATIONS / "messages.pot"
DOMAIN = "messages"
SOURCE_LOCALE = "en"
LOCALES = ("en", "pl", "lt", "ru", "zh")
PROJECT = "Back office"
KEYWORDS: dict[str, Any] = {
    **DEFAULT_KEYWORDS,
    "_l": None,
    "lazy_gettext": None,
    "lazy_ngettext": (1, 2),
    "lazy_pgettext": ((1, "c"), 2),
}
COMMENT_TAGS = ("TRANSLATORS:",)
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
# lines that change on every run and say nothing about the messages
_DATE_HEADERS = (b'"POT-Creation-Date:', b'"PO-Revision-Date:')
# printf-style placeholders as Python's % operator reads them
PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conv>[diouxXeEfFgGcrsa%])"
)


@dataclass(frozen=True)
class Found:
    """A translatable string found outside Python and templates."""

    msgid: str
    path: str  # relative to ROOT, with forward slashes
    line: int
    comment: str


# -- extraction --------------------------------------------------------------------------------------------
def extract(root: Path = ROOT) -> Catalog:
    """The template catalog of the sources under `root` (nothing is written)."""
    template = Catalog(project=PROJECT, version=_version(), charset="utf-8", fuzzy=False)
    for msgid, path, line, comments, context in _code_messages(root):
        template.add(msgid, locations=[(path, line)], auto_comments=comments, context=context)
    for found in [*form_strings(root / "forms"), *process_strings(root / "processes"), *role_strings(root)]:
        template.add(found.msgid, locations=[(found.path, found.line)], auto_comments=[found.comment])
    return template


def _code_messages(root: Path) -> Iterator[tuple[Any, str, int, list[str], str | None]]:
    webapp = root / "webapp"
    with (webapp / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    literals: dict[str, set[str]] = {}
    for filename, line, msgid, comments, context in extract_from_dir(
        str(webapp),
        method_map,
        options_map,
        keywords=KEYWORDS,
        comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
    ):
        if filename.endswith(".py"):
            # Babel's Python extractor takes any string inside the call, as "title" from
            # `_(schema["title"])`: only a literal argument is a message
            if filename not in literals:
                literals[filename] = _call_literals(webapp / filename)
            first = msgid if isinstance(msgid, str) else msgid[0]
            if first not in literals[filename]:
                continue
        yield msgid, f"webapp/{Path(filename).as_posix()}", line, list(comments), context


def _call_literals(path: Path) -> set[str]:
    """The string literals passed straight to a gettext function in a Python file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in KEYWORDS:
            out.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _humanize(value: Any) -> str:
    """As `form_render` labels an untitled property or an enum value."""
    return str(value).replace("_", " ").capitalize()


def _line_finder(text: str) -> Any:
    def line_of(needle: str) -> int:
        at = text.find(needle)
        return text.count("\n", 0, at) + 1 if at >= 0 else 1

    return line_of


def form_strings(forms_dir: Path) -> list[Found]:
    """Titles, descriptions, choice labels and untitled field names of every JSON Schema form."""
    found: list[Found] = []
    root = forms_dir.parent
    for path in sorted(forms_dir.glob("*/*.json")):
        text = path.read_text(encoding="utf-8")
        line_of = _line_finder(text)
        rel = _relative(path, root)

        def add(msgid: str, comment: str, needle: str, rel: str = rel, line_of: Any = line_of) -> None:
            if msgid.strip():
                found.append(Found(msgid, rel, line_of(needle), comment))

        def walk(schema: Any, where: str) -> None:
            if isinstance(schema, list):
                for item in schema:
                    walk(item, where)
                return
            if not isinstance(schema, dict):
                return
            for key, comment in (("title", "title"), ("description", "help text")):
                value = schema.get(key)
                if isinstance(value, str):
                    add(value, f"form {where}: {comment}", json.dumps(value, ensure_ascii=False))
            if isinstance(schema.get("enum"), list):
                for value in schema["enum"]:
                    if isinstance(value, str):
                        add(_humanize(value), f"form {where}: choice", json.dumps(value))
            choices = False
            for key in ("oneOf", "anyOf"):
                alternatives = schema.get(key)
                if isinstance(alternatives, list) and all(
                    isinstance(a, dict) and "const" in a for a in alternatives
                ):
                    choices = True
                    for a in alternatives:
                        title = a.get("title")
                        if isinstance(title, str):
                            add(title, f"form {where}: choice", json.dumps(title, ensure_ascii=False))
                        elif isinstance(a["const"], str):
                            add(_humanize(a["const"]), f"form {where}: choice", json.dumps(a["const"]))
            properties = schema.get("properties")
            if isinstance(properties, dict):
                for name, sub in properties.items():
                    if isinstance(sub, dict) and "title" not in sub and ("type" in sub or "format" in sub):
                        add(_humanize(name), f"form {where}: field {name}", json.dumps(name))
            for key, value in schema.items():
                if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(
                    value, dict
                ):
                    for sub in value.values():
                        walk(sub, where)
                elif key in ("oneOf", "anyOf") and choices:
                    continue
                elif isinstance(value, (dict, list)) and key not in ("enum", "const", "default", "examples"):
                    walk(value, where)

        walk(json.loads(text), rel.rsplit("/", 1)[-1])
    return found


def _literal_text(expression: str) -> str | None:
    try:
        value = ast.literal_eval(expression)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _line(element: Any) -> int:
    line = element.sourceline
    return line if isinstance(line, int) else 1


def process_strings(processes_dir: Path) -> list[Found]:
    """Process names, user task and start event names, literal `title` properties of the BPMN files."""
    found: list[Found] = []
    root = processes_dir.parent
    names = {"b": BPMN, "s": SPIFF}
    for path in sorted(processes_dir.glob("*.bpmn")):
        rel = _relative(path, root)
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        for process in tree.iterfind("b:process", names):
            if name := process.get("name"):
                found.append(Found(name, rel, _line(process), "process name"))
            for event in process.iterfind("b:startEvent", names):
                if name := event.get("name"):
                    found.append(Found(name, rel, _line(event), "start event"))
        for task in tree.iterfind(".//b:userTask", names):
            task_id = task.get("id", "")
            if name := task.get("name"):
                found.append(Found(name, rel, _line(task), f"user task {task_id}"))
            for prop in task.iterfind(".//s:property[@name='title']", names):
                literal = _literal_text(prop.get("value") or "")
                if literal:
                    found.append(Found(literal, rel, _line(prop), f"user task {task_id}: title"))
    return found


def role_strings(root: Path) -> list[Found]:
    """The titles of the roles (engine/users.py)."""
    from engine.users import ROLES

    source = root / "engine" / "users.py"
    line_of = _line_finder(source.read_text(encoding="utf-8") if source.exists() else "")
    return [
        Found(title, "engine/users.py", line_of(json.dumps(title, ensure_ascii=False)), f"role {name}")
        for name, title in ROLES.items()
    ]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backoffice-engine")
    except PackageNotFoundError:
        return "0"


# -- catalogs on disk -------------------------------------------------------------------------------------
def po_path(locale: str, translations: Path = TRANSLATIONS) -> Path:
    return translations / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(locale: str, translations: Path = TRANSLATIONS) -> Path:
    return translations / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"


def read_catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale, domain=DOMAIN)


def _po_bytes(catalog: Catalog, *, template: bool = False) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, width=100, ignore_obsolete=template, include_previous=False)
    return out.getvalue()


def _without_dates(data: bytes) -> bytes:
    return b"\n".join(line for line in data.splitlines() if not line.startswith(_DATE_HEADERS))


def _write_if_changed(path: Path, data: bytes, *, ignore_dates: bool = True) -> bool:
    """Write `data` unless the file says the same (apart from its dates); True if written."""
    if path.exists():
        old = path.read_bytes()
        if old == data or (ignore_dates and _without_dates(old) == _without_dates(data)):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def write_template(template: Catalog, pot: Path = POT) -> bool:
    """Write the .pot file; True if its messages changed."""
    return _write_if_changed(pot, _po_bytes(template, template=True))


def _new_catalog(locale: str, template: Catalog) -> Catalog:
    catalog = Catalog(
        locale=locale,
        domain=DOMAIN,
        project=PROJECT,
        version=template.version,
        charset="utf-8",
        fuzzy=False,
        creation_date=template.creation_date,
        revision_date=datetime.now(UTC),
        language_team=locale,
    )
    catalog.last_translator = "Back office team"
    return catalog


def merge(catalog: Catalog, template: Catalog) -> None:
    """`catalog` updated to `template`: new msgids are added untranslated (never guessed from
    similar ones); translations of vanished msgids are kept as obsolete, and come back if their
    msgid does. In the source language each msgid is its own translation."""
    revived = {
        key: message
        for key, message in catalog.obsolete.items()
        if message.string and template.get(message.id, message.context) is not None
    }
    for message in revived.values():
        catalog[message.id] = Message(message.id, message.string, context=message.context)
    # a deep copy: Catalog.update adds the template's own Message objects for new msgids
    catalog.update(copy.deepcopy(template), no_fuzzy_matching=True, update_creation_date=True)
    for key, message in list(catalog.obsolete.items()):
        if key in revived or not message.string or str(catalog.locale) == SOURCE_LOCALE:
            catalog.obsolete.pop(key, None)
    catalog.fuzzy = False
    if str(catalog.locale) == SOURCE_LOCALE:
        for message in catalog:
            if message.id and not _translated(message):
                message.string = message.id
                message.flags.discard("fuzzy")


def update_catalogs(
    template: Catalog, translations: Path = TRANSLATIONS, locales: Iterable[str] = LOCALES
) -> list[Path]:
    """Merge `template` into each locale's .po file (created if missing); the files written."""
    written: list[Path] = []
    for locale in locales:
        path = po_path(locale, translations)
        catalog = read_catalog(path, locale) if path.exists() else _new_catalog(locale, template)
        merge(catalog, template)
        if _write_if_changed(path, _po_bytes(catalog)):
            written.append(path)
    return written


def compile_catalogs(translations: Path = TRANSLATIONS, locales: Iterable[str] = LOCALES) -> list[Path]:
    """Build each locale's .mo file from its .po file; the files written."""
    written: list[Path] = []
    for locale in locales:
        catalog = read_catalog(po_path(locale, translations), locale)
        out = io.BytesIO()
        write_mo(out, catalog, use_fuzzy=False)
        if _write_if_changed(mo_path(locale, translations), out.getvalue(), ignore_dates=False):
            written.append(mo_path(locale, translations))
    return written


# -- checks -----------------------------------------------------------------------------------------------
def _translated(message: Message) -> bool:
    value: Any = message.string
    strings = list(value) if isinstance(value, list | tuple) else [value]
    return all(strings)


def _key(message: Message) -> tuple[str, str | None]:
    msgid = message.id if isinstance(message.id, str) else message.id[0]
    return msgid, message.context


def missing(template: Catalog, catalog: Catalog) -> list[str]:
    """The msgids of `template` that `catalog` lacks, leaves empty or marks fuzzy."""
    out = []
    for message in template:
        if not message.id:
            continue
        msgid, context = _key(message)
        have = catalog.get(msgid, context)
        if have is None or not _translated(have) or have.fuzzy:
            out.append(msgid if context is None else f"{context}|{msgid}")
    return out


def placeholders(text: str) -> list[str]:
    """The %-placeholders of `text`, sorted (named ones by name, positional ones in order)."""
    found = [
        f"%({m['name']}){m['conv']}" if m["name"] is not None else f"%{m['conv']}"
        for m in PLACEHOLDER.finditer(text)
    ]
    named = sorted(p for p in found if p.startswith("%("))
    return named + [p for p in found if not p.startswith("%(")]


def _formatted(message: Message) -> bool:
    """Whether the translation goes through `%`: it has placeholders, or it is in a template
    (Jinja's newstyle gettext formats every string, with or without variables)."""
    return bool(message.python_format) or any(path.endswith(".html") for path, _line in message.locations)


def _sample(msgid: str) -> dict[str, Any]:
    return {m["name"]: 1 if m["conv"] in "diouxX" else "x" for m in PLACEHOLDER.finditer(msgid) if m["name"]}


def placeholder_mismatches(catalog: Catalog) -> list[tuple[str, str]]:
    """(msgid, translation) pairs whose placeholders differ from the msgid's, or which `%`
    cannot format (a stray "%" in a template string)."""
    out = []
    for message in catalog:
        if not message.id or not message.string or not _formatted(message):
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        wanted = [placeholders(i) for i in ids]
        for text in strings:
            if not text:
                continue
            try:
                text % {k: v for i in ids for k, v in _sample(i).items()}
            except (TypeError, ValueError, KeyError):
                out.append((ids[0], text))
                continue
            got = placeholders(text)
            # a plural form may leave out the count (e.g. "one day")
            ok = got == wanted[0] if len(ids) == 1 else set(got) <= set(wanted[0]) | set(wanted[1])
            if not ok:
                out.append((ids[0], text))
    return out


def compiled_messages(catalog: Catalog) -> dict[tuple[Any, str | None], Any]:
    """What a .mo file built from `catalog` must hold: translated, non-fuzzy messages."""
    out: dict[tuple[Any, str | None], Any] = {}
    for message in catalog:
        if message.id and not message.fuzzy and _translated(message):
            key = message.id if isinstance(message.id, str) else tuple(message.id or ())
            value = message.string if isinstance(message.string, str) else tuple(message.string or ())
            out[(key, message.context)] = value
    return out


def stale_mo(translations: Path = TRANSLATIONS, locales: Iterable[str] = LOCALES) -> list[str]:
    """Locales whose .mo file is missing or does not hold what their .po file says."""
    stale = []
    for locale in locales:
        mo = mo_path(locale, translations)
        if not mo.exists():
            stale.append(locale)
            continue
        with mo.open("rb") as handle:
            compiled = compiled_messages(read_mo(handle))
        if compiled != compiled_messages(read_catalog(po_path(locale, translations), locale)):
            stale.append(locale)
    return stale
