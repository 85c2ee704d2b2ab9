"""`backoffice ...`: the command line."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select

from engine import logs
from engine.errors import ProcessFileErrors


def _create_app(*_args: object) -> object:
    from . import create_app

    return create_app()


# the log format a command writes when BACKOFFICE_LOG_FORMAT does not say (engine/logs.py)
LOG_FORMAT_OF_COMMAND = {"scheduler": "json", "demo": "text"}


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Back office: BPMN processes for leads, orders, invoices, repairs and purchases."""
    logs.configure(LOG_FORMAT_OF_COMMAND.get(ctx.invoked_subcommand or ""))


def _is_process_file(path: Path) -> bool:
    return path.suffix.lower() in (".bpmn", ".dmn") and path.is_file()


def _collect(paths: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for raw in paths or (current_app.config["PROCESSES_DIR"],):
        path = Path(raw)
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            if _is_process_file(file):
                files[file.name] = file.read_bytes()
    if not files:
        raise click.ClickException("no .bpmn or .dmn files found in " + ", ".join(paths or ("processes/",)))
    return files


@main.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from flask_migrate import upgrade

    upgrade()
    from engine.db import db
    from engine.users import ensure_roles

    ensure_roles()
    db.session.commit()
    click.echo(f"database ready: {current_app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}")


@main.command("deploy")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@with_appcontext
def deploy(paths: tuple[str, ...]) -> None:
    """Validate and deploy BPMN/DMN files (default: processes/)."""
    _deploy_and_report(_collect(paths))


def _deploy_and_report(files: dict[str, bytes], history: bool = False) -> None:
    """Deploy `files`; print the new versions (for a replayed history deployment nothing else),
    or every problem as `file:line element: message` and exit 1."""
    runtime = current_app.extensions["engine"]
    try:
        result = runtime.deploy(files)
    except ProcessFileErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        sys.exit(1)
    if not result.created:
        if not history:
            click.echo(f"unchanged: deployment {result.deployment_id} has exactly these files")
        return
    for process_id, version in sorted(result.new_versions.items()):
        click.echo(f"deployed {process_id} version {version}")
    for process_id in [] if history else result.unchanged:
        click.echo(f"unchanged {process_id}")


@main.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@with_appcontext
def check(paths: tuple[str, ...]) -> None:
    """Lint BPMN/DMN files without deploying; exits 1 on errors."""
    from engine.specs import check_paths

    targets = [Path(p) for p in paths] or [Path(current_app.config["PROCESSES_DIR"])]
    problems = check_paths(targets, Path(current_app.config["FORMS_DIR"]))
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("no problems found")


# -- export and import ---------------------------------------------------------------------------------
MANIFEST = "manifest.json"
EXPORT_FORMAT = "backoffice-export/1"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _safe_name(name: str) -> str:
    """A file or process name usable as one path component, or ClickException."""
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise click.ClickException(f"refusing the name {name!r} as a file or directory name")
    return name


def _inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing anything that would land outside `root`."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise click.ClickException(f"{relative!r} points outside {root}")
    return target


def _clear_previous_export(directory: Path) -> None:
    """Make `directory` ready: absent or empty, or a previous export whose files are removed."""
    if not directory.exists():
        directory.mkdir(parents=True)
        return
    if not any(directory.iterdir()):
        return
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise click.ClickException(
            f"{directory} is not empty and holds no {MANIFEST}: choose an empty directory"
        )
    old = json.loads(manifest_path.read_text())
    for entry in old.get("files", []):
        _inside(directory, entry["name"]).unlink(missing_ok=True)
    for version in old.get("versions", []):
        folder = _inside(directory, version["path"])
        for entry in version.get("files", []):
            _inside(folder, entry["name"]).unlink(missing_ok=True)
        for empty in (folder, folder.parent):
            if empty.is_dir() and not any(empty.iterdir()) and empty != directory.resolve():
                empty.rmdir()
    manifest_path.unlink()


def _deployment_files(deployment_id: int) -> dict[str, bytes]:
    from engine.db import db
    from engine.models import DeploymentFile

    rows = db.session.execute(
        select(DeploymentFile.name, DeploymentFile.content)
        .where(DeploymentFile.deployment_id == deployment_id)
        .order_by(DeploymentFile.name)
    )
    return {name: bytes(content) for name, content in rows}


def _write_files(folder: Path, files: dict[str, bytes]) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / _safe_name(name)).write_bytes(content)
    return [{"name": name, "sha256": _sha256(content)} for name, content in sorted(files.items())]


@main.command("export")
@click.argument("directory", default="export", type=click.Path(file_okay=False, path_type=Path))
@click.option("--all-versions", is_flag=True, help="also every version, in DIRECTORY/<process>/v<n>/")
@with_appcontext
def export(directory: Path, all_versions: bool) -> None:
    """Write the deployed BPMN/DMN files and a manifest.json (process ids, versions, sha256) to
    DIRECTORY (default: export/). `backoffice import DIRECTORY` deploys them again."""
    runtime = current_app.extensions["engine"]
    files = runtime.current_files()
    if not files:
        raise click.ClickException("nothing is deployed yet")
    _clear_previous_export(directory)
    definitions = runtime.definitions()
    file_of = {d.process_id: d.file_name for d in definitions if d.latest}
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": runtime.now().isoformat(),
        "files": _write_files(directory, files),
        "processes": [
            {
                "process_id": d.process_id,
                "version": d.version,
                "name": d.name,
                "file": file_of[d.process_id],
                "sha256": _sha256(files[file_of[d.process_id]]) if file_of[d.process_id] in files else None,
            }
            for d in definitions
            if d.latest
        ],
    }
    if all_versions:
        # each v<n> holds every file of the deployment that made that version: it deploys on its
        # own, and deploying them in deployment order gives every process the same versions again
        manifest["versions"] = []
        cache: dict[int, dict[str, bytes]] = {}
        for d in sorted(definitions, key=lambda d: (d.deployment_id, d.process_id)):
            deployed = cache.setdefault(d.deployment_id, _deployment_files(d.deployment_id))
            path = f"{_safe_name(d.process_id)}/v{d.version}"
            manifest["versions"].append(
                {
                    "process_id": d.process_id,
                    "version": d.version,
                    "file": d.file_name,
                    "deployment": d.deployment_id,
                    "deployed_at": d.deployed_at.isoformat(),
                    "deployed_by": d.deployed_by,
                    "path": path,
                    "files": _write_files(directory / path, deployed),
                }
            )
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    for entry in manifest["processes"]:
        click.echo(f"exported {entry['process_id']} version {entry['version']} ({entry['file']})")
    extra = f", {len(manifest['versions'])} versions" if all_versions else ""
    click.echo(f"wrote {len(files)} files{extra} and {MANIFEST} to {directory}")


@dataclass
class ImportPlan:
    """What `backoffice import` deploys: history deployments in their order, then the latest."""

    latest: dict[str, bytes] = field(default_factory=dict)
    history: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)
    # (process id, version) -> sha256 of the file that version was deployed from
    versions: dict[tuple[str, int], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_listed(
    folder: Path, entries: list[dict[str, str]], strict: bool, plan: ImportPlan
) -> dict[str, bytes]:
    """The files a manifest lists, checked against their sha256: a changed history file is an
    error, a changed latest file a note (it was edited since the export; it is validated anyway)."""
    files: dict[str, bytes] = {}
    for entry in entries:
        path = _inside(folder, _safe_name(entry["name"]))
        if not path.is_file():
            raise click.ClickException(f"{path} is listed in {MANIFEST} but missing")
        content = path.read_bytes()
        if _sha256(content) != entry.get("sha256"):
            if strict:
                raise click.ClickException(
                    f"{path} differs from the sha256 in {MANIFEST}: history was altered"
                )
            plan.notes.append(f"{path.name} changed since the export")
        files[path.name] = content
    return files


def _plan_directory(directory: Path) -> ImportPlan:
    plan = ImportPlan()
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        plan.latest = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if _is_process_file(p)}
        return plan
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != EXPORT_FORMAT:
        raise click.ClickException(f"{manifest_path} is not a {EXPORT_FORMAT} manifest")
    plan.latest = _read_listed(directory, manifest.get("files", []), strict=False, plan=plan)
    seen: set[int] = set()
    for version in sorted(manifest.get("versions", []), key=lambda v: (v["deployment"], v["process_id"])):
        shas = {entry["name"]: entry["sha256"] for entry in version["files"]}
        plan.versions[(version["process_id"], version["version"])] = shas.get(version["file"], "")
        if version["deployment"] in seen:  # one deployment made several versions: deployed once
            continue
        seen.add(version["deployment"])
        folder = _inside(directory, version["path"])
        plan.history.append((version["path"], _read_listed(folder, version["files"], strict=True, plan=plan)))
    return plan


def _plan_paths(paths: tuple[Path, ...]) -> ImportPlan:
    if len(paths) == 1 and paths[0].is_dir():
        return _plan_directory(paths[0])
    plan = ImportPlan()
    for path in paths:
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in candidates:
            if _is_process_file(file):
                plan.latest[file.name] = file.read_bytes()
    return plan


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@with_appcontext
def import_definitions(paths: tuple[Path, ...]) -> None:
    """Deploy BPMN/DMN files exported by `backoffice export` (a directory with manifest.json) or
    given one by one, validated as `deploy` validates them; identical content changes nothing.
    An export made with --all-versions replays every version into a database that has none."""
    plan = _plan_paths(paths)
    if not plan.latest:
        raise click.ClickException("no .bpmn or .dmn files found in " + ", ".join(map(str, paths)))
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if plan.history:
        _replay_history(plan)
    _deploy_and_report(plan.latest)


def _replay_history(plan: ImportPlan) -> None:
    """Deploy every exported version in its order into a database without versions; where the
    versions are there already nothing is done, and over other versions nothing is replayed
    (old versions deployed over newer ones would get new numbers)."""
    runtime = current_app.extensions["engine"]
    present = {
        (d.process_id, d.version): _sha256(runtime.definition_source(d.id)[1]) for d in runtime.definitions()
    }
    if not present:
        for path, files in plan.history:
            click.echo(f"replaying {path}")
            _deploy_and_report(files, history=True)
    elif any(present.get(key) != sha for key, sha in plan.versions.items()):
        click.echo("history not replayed: this database has other versions of these processes", err=True)


@main.command("scheduler")
@click.option("--tick", type=float, default=None, help="seconds between ticks (default 0.5)")
@with_appcontext
def scheduler(tick: float | None) -> None:
    """Run the timer scheduler as its own process."""
    from engine.scheduler import run_forever

    run_forever(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        tick or current_app.config["SCHEDULER_TICK_SECONDS"],
    )


@main.group("users")
def users() -> None:
    """Manage users."""


@users.command("add")
@click.argument("name")
@click.option("--roles", default="", help="comma-separated roles, e.g. sales,order_entry")
@click.option("--password", default=None)
@click.option("--email", default="")
@with_appcontext
def users_add(name: str, roles: str, password: str | None, email: str) -> None:
    """Create a user (or update their roles)."""
    from engine.users import ROLES, add_user

    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise click.ClickException(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(ROLES)}")
    user = add_user(name, wanted, password=password, email=email)
    click.echo(json.dumps({"user": user.username, "roles": sorted(user.roles)}))


from .demo import demo  # noqa: E402

main.add_command(demo)


@main.command("bench")
@click.option("--scale", type=click.Choice(["small", "full"]), default="small")
@click.option("--only", multiple=True, help="throughput, inbox, history, timers, web")
def bench(scale: str, only: tuple[str, ...]) -> None:
    """Measure the engine against bare SpiffWorkflow; prints one JSON object per line."""
    from engine.bench import run_benchmarks

    run_benchmarks(scale, set(only))


from babel.messages.catalog import Catalog  # noqa: E402


@main.group("i18n")
def i18n() -> None:
    """Translation catalogs: extract, update, compile (webapp/translations/)."""


@i18n.command("extract")
def i18n_extract() -> None:
    """Collect every translatable string (code, templates, forms, processes) into messages.pot."""
    from . import catalogs

    template = catalogs.extract()
    changed = catalogs.write_template(template)
    state = "written" if changed else "unchanged"
    click.echo(f"{catalogs.POT.relative_to(catalogs.ROOT)}: {len(template)} messages, {state}")


@i18n.command("update")
def i18n_update() -> None:
    """Merge messages.pot into the catalog of each language; list what is left to translate."""
    from . import catalogs

    template = catalogs.read_catalog(catalogs.POT)
    for path in catalogs.update_catalogs(template):
        click.echo(f"updated {path.relative_to(catalogs.ROOT)}")
    _report_missing(template)


@i18n.command("compile")
def i18n_compile() -> None:
    """Build the .mo file of each language from its .po file."""
    from . import catalogs

    written = catalogs.compile_catalogs()
    for path in written:
        click.echo(f"compiled {path.relative_to(catalogs.ROOT)}")
    if not written:
        click.echo("all .mo files up to date")


@i18n.command("check")
def i18n_check() -> None:
    """Exit 1 if a catalog misses a string of the current sources, or a .mo file is stale."""
    from . import catalogs

    problems = _report_missing(catalogs.extract())
    for locale in catalogs.stale_mo():
        click.echo(f"{locale}: .mo file out of date; run `backoffice i18n compile`", err=True)
        problems += 1
    if problems:
        sys.exit(1)
    click.echo("all catalogs complete")


def _report_missing(template: Catalog) -> int:
    """List per language what is untranslated or has wrong placeholders; the number of problems."""
    from . import catalogs

    problems = 0
    for locale in catalogs.LOCALES:
        path = catalogs.po_path(locale)
        if not path.exists():
            click.echo(f"{locale}: no catalog at {path}; run `backoffice i18n update`", err=True)
            problems += 1
            continue
        catalog = catalogs.read_catalog(path, locale)
        gaps = catalogs.missing(template, catalog)
        bad = catalogs.placeholder_mismatches(catalog)
        for msgid in gaps:
            click.echo(f"{locale}: untranslated: {msgid!r}", err=True)
        for msgid, text in bad:
            click.echo(f"{locale}: placeholders differ: {msgid!r} -> {text!r}", err=True)
        problems += len(gaps) + len(bad)
    return problems
