"""`backoffice ...`: the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from engine.errors import ProcessFileErrors


def _create_app(*_args: object) -> object:
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """Back office: BPMN processes for leads, orders, invoices, repairs and purchases."""


def _collect(paths: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for raw in paths or (current_app.config["PROCESSES_DIR"],):
        path = Path(raw)
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            if file.suffix.lower() in (".bpmn", ".dmn") and file.is_file():
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
    runtime = current_app.extensions["engine"]
    try:
        result = runtime.deploy(_collect(paths))
    except ProcessFileErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        sys.exit(1)
    if not result.created:
        click.echo(f"unchanged: deployment {result.deployment_id} has exactly these files")
        return
    for process_id, version in sorted(result.new_versions.items()):
        click.echo(f"deployed {process_id} version {version}")
    for process_id in result.unchanged:
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
