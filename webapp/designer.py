"""The process designer (role `designer`): processes and their versions, the BPMN modeler, upload
and download of BPMN/DMN files, task forms (JSON Schema) and decision tables.

Every save goes through the engine exactly as `backoffice check` and `backoffice deploy` do:
`Engine.check_files` lists the problems (file, line, element, message) and nothing is deployed
while there is one; `Engine.deploy_changes` gives each changed process a new version, and
running instances keep theirs. Forms are not versioned, so a form may only grow
(`webapp/form_schema.py`). Every route is for the role `designer` (`designers_only`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user

from engine import DefinitionInfo, DeployResult, Engine, ProcessFileError, ProcessFileErrors
from engine.db import db
from engine.models import AuditEvent

from . import dmn_table, form_render, form_schema
from .auth import current_actor, login_manager
from .inbox import display_names, runtime

bp = Blueprint("designer", __name__, url_prefix="/designer")

ROLE = "designer"
PROCESS_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,150}\.(bpmn|dmn)$")
FORM_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,150}$")
MAX_RULES = 500
STATUS_LABELS = {
    "running": _l("Running"),
    "suspended": _l("Suspended"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
}
FINISHED = frozenset({"completed", "cancelled"})


@bp.before_request
def designers_only() -> Any:
    """Every route of the designer, checked on the request itself."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if ROLE not in current_user.roles:
        abort(403)
    return None


@bp.app_template_filter("designer_status")
def designer_status(value: str) -> str:
    return str(STATUS_LABELS.get(value, value))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(engine: Engine, changed: dict[str, bytes]) -> list[ProcessFileError]:
    """What the engine would refuse (hostile or malformed XML included); [] when clean."""
    try:
        return engine.check_files(changed)
    except ProcessFileErrors as exc:
        return list(exc.errors)


def _problem_json(problem: ProcessFileError) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "element_id": problem.element_id,
        "message": problem.message,
        "text": str(problem),
    }


def _deployed_message(result: DeployResult) -> str:
    if not result.created:
        return _("Nothing to deploy: exactly these files were deployed before. The live versions stay.")
    if not result.new_versions:
        return _("Deployed. No process changed: the live versions stay.")
    return _("Deployed. Now live: %(versions)s. Running instances keep their version.",
             versions=_version_list(result.new_versions))  # fmt: skip


def _version_list(new_versions: dict[str, int]) -> str:
    return ", ".join(
        _("%(process)s version %(version)d", process=p, version=v) for p, v in sorted(new_versions.items())
    )


def _modeler_message(result: DeployResult, process_id: str) -> str:
    """What the modeler says after "Version N is live."."""
    if process_id not in result.new_versions:
        return _deployed_message(result)
    others = {p: v for p, v in result.new_versions.items() if p != process_id}
    message = _("Running instances keep their version.")
    if others:
        message += " " + _("Also new: %(versions)s (calling this process).", versions=_version_list(others))
    return message


# -- what is deployed ---------------------------------------------------------------------------------
@dataclass
class ProcessEntry:
    process_id: str
    versions: list[DefinitionInfo]

    @property
    def live(self) -> DefinitionInfo:
        return self.versions[0]


@dataclass
class DecisionEntry:
    file_name: str
    decision_id: str
    name: str
    used_by: list[str] = field(default_factory=list)  # process ids
    problem: str = ""


def _processes(engine: Engine, process_id: str | None = None) -> list[ProcessEntry]:
    grouped: dict[str, list[DefinitionInfo]] = {}
    for info in engine.definitions(process_id):
        grouped.setdefault(info.process_id, []).append(info)
    return [ProcessEntry(pid, infos) for pid, infos in grouped.items()]


def _live(engine: Engine, process_id: str) -> DefinitionInfo:
    versions = engine.definitions(process_id)
    if not versions:
        abort(404)
    return versions[0]


def _users_of(decision_id: str, files: dict[str, bytes], processes: list[ProcessEntry]) -> list[str]:
    """The processes whose BPMN calls the decision (SpiffWorkflow or Camunda attribute)."""
    if not decision_id:
        return []
    called = re.compile(
        rb"calledDecisionId>\s*" + re.escape(decision_id.encode()) + rb"\s*<"
        rb"|decisionRef=\"" + re.escape(decision_id.encode()) + rb"\""
    )
    files_calling = {name for name, data in files.items() if name.endswith(".bpmn") and called.search(data)}
    return [p.process_id for p in processes if p.live.file_name in files_calling]


def _decisions(files: dict[str, bytes], processes: list[ProcessEntry]) -> list[DecisionEntry]:
    entries = []
    for name in sorted(files):
        if not name.endswith(".dmn"):
            continue
        try:
            table = dmn_table.read_table(files[name], name)
        except ProcessFileErrors as exc:
            entries.append(DecisionEntry(name, "", name, problem=str(exc.errors[0].message)))
            continue
        used_by = _users_of(table.decision_id, files, processes)
        entries.append(DecisionEntry(name, table.decision_id, table.decision_name, used_by))
    return entries


def _forms(engine: Engine) -> dict[str, list[str]]:
    """process folder -> the task forms in it (file stems)."""
    grouped: dict[str, list[str]] = {}
    for path in sorted(engine.forms_dir.glob("*/*.json")):
        if FORM_PART.match(path.parent.name) and FORM_PART.match(path.stem):
            grouped.setdefault(path.parent.name, []).append(path.stem)
    return grouped


def _index_page(upload_problems: list[ProcessFileError] | None = None, status: int = 200) -> Any:
    engine = runtime()
    processes = _processes(engine)
    files = engine.current_files()
    names = display_names({v.deployed_by for p in processes for v in p.versions})
    return render_template(
        "designer/index.html",
        processes=processes,
        decisions=_decisions(files, processes),
        forms=_forms(engine),
        names=names,
        upload_problems=upload_problems or [],
        finished=FINISHED,
    ), status


@bp.get("/")
def index() -> Any:
    return _index_page()


# -- the modeler ----------------------------------------------------------------------------------------
@bp.get("/processes/<process_id>")
def modeler(process_id: str) -> Any:
    engine = runtime()
    entries = _processes(engine, process_id)
    if not entries:
        abort(404)
    entry = entries[0]
    names = display_names({v.deployed_by for v in entry.versions})
    return render_template("designer/modeler.html", entry=entry, names=names, finished=FINISHED)


@bp.get("/processes/<process_id>/versions")
def versions(process_id: str) -> Any:
    """The versions table of a process (an HTML fragment the modeler page reloads after a deploy)."""
    engine = runtime()
    entries = _processes(engine, process_id)
    if not entries:
        abort(404)
    names = display_names({v.deployed_by for v in entries[0].versions})
    return render_template(
        "designer/_versions_fragment.html", entry=entries[0], names=names, finished=FINISHED
    )


@bp.get("/processes/<process_id>/diagram.bpmn")
def diagram(process_id: str) -> Any:
    """The live BPMN of a process, for the modeler to open (the page has no inline data)."""
    engine = runtime()
    live = _live(engine, process_id)
    data = engine.current_files().get(live.file_name)
    if data is None:
        _name, data = engine.definition_source(live.id)
    response = Response(data, mimetype="application/xml")
    response.headers["X-File-Sha256"] = _sha(data)
    response.headers["X-File-Name"] = live.file_name
    return response


@bp.post("/processes/<process_id>/deploy")
def deploy(process_id: str) -> Any:
    """Save from the modeler: the BPMN XML in the body; check, then deploy only when clean.

    422 with every problem (file, line, element id, message) and nothing deployed; 409 when the
    file was deployed by someone else since the modeler opened it (header X-Base-Sha256)."""
    engine = runtime()
    live = _live(engine, process_id)
    xml = request.get_data(cache=False)
    current = engine.current_files().get(live.file_name, b"")
    base = request.headers.get("X-Base-Sha256")
    if base and base != _sha(current):
        return jsonify(
            deployed=False,
            message=_(
                "Someone deployed this process since you opened it. Reload the page to see their change."
            ),
        ), 409
    problems = (
        [ProcessFileError(live.file_name, None, None, _("The diagram is empty."))]
        if not xml.strip()
        else _check(engine, {live.file_name: xml})
    )
    if not problems:
        try:
            result = engine.deploy_changes({live.file_name: xml}, current_actor())
        except ProcessFileErrors as exc:
            problems = list(exc.errors)
    if problems:
        return jsonify(
            deployed=False,
            message=ngettext(
                "Nothing was deployed: %(num)d problem.",
                "Nothing was deployed: %(num)d problems.",
                len(problems),
            ),
            problems=[_problem_json(p) for p in problems],
        ), 422
    now_live = _live(engine, process_id)
    return jsonify(
        deployed=bool(result.new_versions),
        new_versions=result.new_versions,
        version=now_live.version,
        sha256=_sha(engine.current_files().get(live.file_name, b"")),
        message=_modeler_message(result, process_id),
    )


# -- upload and download ----------------------------------------------------------------------------
@bp.post("/upload")
def upload() -> Any:
    """BPMN/DMN files from any modeler: checked as `backoffice check` does, deployed when clean."""
    engine = runtime()
    changed: dict[str, bytes] = {}
    refused: list[ProcessFileError] = []
    for upload_file in request.files.getlist("files"):
        name = Path(upload_file.filename or "").name
        if not name:
            continue
        if not PROCESS_FILE.match(name):
            refused.append(
                ProcessFileError(
                    name,
                    None,
                    None,
                    _("Only .bpmn and .dmn files named with letters, digits, _ . - are accepted."),
                )
            )
            continue
        changed[name] = upload_file.read()
    if not changed and not refused:
        flash(_("Choose one or more .bpmn or .dmn files."), "error")
        return redirect(url_for(".index"))
    problems = refused + (_check(engine, changed) if changed else [])
    if problems:
        return _index_page(problems, 422)
    files = ", ".join(sorted(changed))
    if request.form.get("action") == "check":
        flash(_("No problems found in %(files)s. Nothing was deployed.", files=files), "success")
        return redirect(url_for(".index"))
    try:
        result = engine.deploy_changes(changed, current_actor())
    except ProcessFileErrors as exc:
        return _index_page(list(exc.errors), 422)
    flash(_deployed_message(result), "success")
    return redirect(url_for(".index"))


def _attachment(name: str, data: bytes) -> Any:
    return send_file(io.BytesIO(data), mimetype="application/xml", as_attachment=True, download_name=name)


@bp.get("/files/<file_name>")
def download_file(file_name: str) -> Any:
    """The live content of a deployed BPMN or DMN file."""
    data = runtime().current_files().get(file_name)
    if data is None:
        abort(404)
    return _attachment(file_name, data)


@bp.get("/versions/<int:definition_id>/file")
def download_version(definition_id: int) -> Any:
    """The BPMN file one process version was deployed from, under its own name (to upload again)."""
    name, data = runtime().definition_source(definition_id)
    return _attachment(name, data)


# -- forms ------------------------------------------------------------------------------------------------
def _form_path(engine: Engine, process: str, task: str) -> Path:
    if not (FORM_PART.match(process) and FORM_PART.match(task)):
        abort(404)
    path = engine.forms_dir / process / f"{task}.json"
    if not path.is_file():
        abort(404)
    return path


def _rendered(schema: dict[str, Any]) -> tuple[form_render.RenderedForm | None, list[str]]:
    """The form as a task page shows it, or why it cannot be shown."""
    try:
        return form_render.build(schema), []
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        return None, [_("The form cannot be shown: %(error)s", error=error)]


def _checked_form(text: str) -> tuple[dict[str, Any] | None, form_render.RenderedForm | None, list[str]]:
    schema, problems = form_schema.parse_form(text)
    if schema is None:
        return None, None, problems
    rendered, problems = _rendered(schema)
    return (schema if not problems else None), rendered, problems


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _record_form_saved(engine: Engine, form: str) -> None:
    actor = current_actor().username
    db.session.add(
        AuditEvent(
            at=engine.now(),
            actor=actor,
            event="form_saved",
            instance_id=None,
            task_id=None,
            detail={"form": form, "by": actor},
        )
    )
    db.session.commit()


def _form_page(ref: str, text: str, base: str, status: int = 200, **found: Any) -> Any:
    process, _sep, task = ref.removesuffix(".json").partition("/")
    values = {"rendered": None, "problems": [], "conflicts": [], "stale": False, **found}
    return render_template(
        "designer/form.html", ref=ref, process=process, task=task, text=text, base=base, **values
    ), status


@bp.route("/forms/<process>/<task>", methods=["GET", "POST"])
def form(process: str, task: str) -> Any:
    """Edit a task form. Saved only when it is a form and keeps what running instances read."""
    engine = runtime()
    path = _form_path(engine, process, task)
    ref = f"{process}/{task}.json"
    current_text = path.read_text(encoding="utf-8")
    base = _sha(current_text.encode())
    if request.method == "GET":
        _schema, rendered, problems = _checked_form(current_text)
        return _form_page(ref, current_text, base, rendered=rendered, problems=problems)
    text = request.form.get("schema", "")
    schema, rendered, problems = _checked_form(text)
    if request.form.get("base") != base:
        # saved by someone else meanwhile: show theirs is there; a second save replaces it knowingly
        return _form_page(ref, text, base, 409, rendered=rendered, problems=problems, stale=True)
    conflicts: list[tuple[str, str]] = []
    if schema is not None:
        try:
            current = json.loads(current_text)
        except json.JSONDecodeError:
            current = {}
        conflicts = form_schema.incompatibilities(current if isinstance(current, dict) else {}, schema)
    if schema is None or conflicts:
        return _form_page(ref, text, base, 422, rendered=rendered, problems=problems, conflicts=conflicts)
    _write_atomically(path, text)
    _record_form_saved(engine, ref)
    engine.forms._validator.cache_clear()  # the engine validates with the new form from now on
    flash(_("Saved %(form)s. Waiting and new tasks use it now.", form=ref), "success")
    return redirect(url_for(".form", process=process, task=task))


@bp.post("/forms/preview")
def preview_form() -> Any:
    """The form in the textarea as a task page would show it (an HTML fragment for the page's script)."""
    _schema, rendered, problems = _checked_form(request.form.get("schema", ""))
    return render_template("designer/_preview.html", rendered=rendered, problems=problems), (
        422 if problems else 200
    )


# -- decision tables -----------------------------------------------------------------------------------
def _rows_from_form(table: dmn_table.DecisionTable) -> tuple[list[dmn_table.Row], set[int]]:
    """The rows the page sent, and the positions of those marked for deletion."""
    try:
        count = min(int(request.form.get("rows", "0")), MAX_RULES)
    except ValueError:
        abort(400)
    rows, deleted = [], set()
    for n in range(count):
        rows.append(
            dmn_table.Row(
                rule_id=request.form.get(f"rule-{n}", "").strip(),
                inputs=[request.form.get(f"in-{n}-{c}", "") for c in range(len(table.inputs))],
                outputs=[request.form.get(f"out-{n}-{c}", "") for c in range(len(table.outputs))],
                annotation=request.form.get(f"note-{n}", ""),
            )
        )
        if request.form.get(f"delete-{n}"):
            deleted.add(n)
    return rows, deleted


def _blank_row(table: dmn_table.DecisionTable) -> dmn_table.Row:
    return dmn_table.Row("", [""] * len(table.inputs), [""] * len(table.outputs))


def _decision_page(
    table: dmn_table.DecisionTable, base: str, used_by: list[str], status: int = 200, **extra: Any
) -> Any:
    return render_template("designer/decision.html", table=table, base=base, used_by=used_by, **extra), status


@bp.route("/decisions/<file_name>", methods=["GET", "POST"])
def decision(file_name: str) -> Any:
    engine = runtime()
    files = engine.current_files()
    if not file_name.endswith(".dmn") or file_name not in files:
        abort(404)
    data = files[file_name]
    table = dmn_table.read_table(data, file_name)
    used_by = _users_of(table.decision_id, files, _processes(engine))
    if request.method == "GET":
        table.rows.append(_blank_row(table))
        return _decision_page(table, _sha(data), used_by)
    if request.form.get("base") != _sha(data):
        flash(_("Someone saved this decision table since you opened it. Here it is as it is now."), "error")
        return redirect(url_for(".decision", file_name=file_name))
    rows, deleted = _rows_from_form(table)
    if request.form.get("add_row"):
        table.rows = [*rows, _blank_row(table)]
        return _decision_page(table, _sha(data), used_by, deleted=deleted)
    table.rows = [row for n, row in enumerate(rows) if n not in deleted and not row.is_blank()]
    xml = dmn_table.write_table(data, file_name, table.rows)
    problems = _check(engine, {file_name: xml})
    if not problems:
        try:
            result = engine.deploy_changes({file_name: xml}, current_actor())
        except ProcessFileErrors as exc:
            problems = list(exc.errors)
    if problems:
        dmn_table.place_errors(table, xml, problems)
        table.rows.append(_blank_row(table))
        return _decision_page(table, _sha(data), used_by, 422)
    flash(_deployed_message(result), "success")
    return redirect(url_for(".decision", file_name=file_name))
