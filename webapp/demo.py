"""`backoffice demo`: a database, a user for every role, the processes deployed, master data,
instances at interesting stages, then the web app and the scheduler on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select
from werkzeug.serving import run_simple

DEMO_PASSWORD = "demo"

# username, roles, display name
DEMO_USERS: list[tuple[str, list[str], str]] = [
    ("dora", ["director", "manager"], "Dora Director"),
    ("mona", ["manager"], "Mona Manager"),
    ("sally", ["sales"], "Sally Sales"),
    ("sam", ["sales", "order_entry"], "Sam Sales"),
    ("mark", ["marketing"], "Mark Marketing"),
    ("rita", ["receptionist"], "Rita Reception"),
    ("cora", ["customer_service"], "Cora Service"),
    ("dan", ["dispatcher"], "Dan Dispatch"),
    ("tom", ["technician"], "Tom Technician"),
    ("tina", ["technician"], "Tina Technician"),
    ("olga", ["order_entry"], "Olga Orders"),
    ("ivan", ["inventory"], "Ivan Inventory"),
    ("paul", ["purchasing"], "Paul Purchasing"),
    ("alex", ["accounting"], "Alex Accounting"),
    ("desi", ["designer"], "Desi Designer"),
    ("ada", ["admin"], "Ada Admin"),
]


def seed_users() -> None:
    from engine.users import add_user

    for username, roles, name in DEMO_USERS:
        add_user(username, roles, password=DEMO_PASSWORD, display_name=name, email=f"{username}@example.com")


def deploy_processes() -> list[str]:
    runtime = current_app.extensions["engine"]
    folder = Path(current_app.config["PROCESSES_DIR"])
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".bpmn", ".dmn")}
    result = runtime.deploy(files)
    return sorted(result.new_versions)


def seed_business_data() -> int:
    """Master data and instances at every interesting stage (only into an empty database)."""
    from engine.db import db
    from engine.models import ProcessInstance

    if db.session.scalar(select(func.count()).select_from(ProcessInstance)):
        return 0
    from engine.business import seed

    return int(seed.seed_demo(current_app.extensions["engine"]))


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="prepare the database and exit")
@with_appcontext
def demo(host: str, port: int, no_serve: bool) -> None:
    """Run the demo: database, users for every role, processes, data, web app and scheduler."""
    from flask_migrate import upgrade

    from engine.scheduler import start_background

    upgrade()
    seed_users()
    deployed = deploy_processes()
    click.echo("processes deployed: " + (", ".join(deployed) or "already up to date"))
    started = seed_business_data()
    if started:
        click.echo(f"demo data: {started} process instances at interesting stages")
    click.echo(f"users (password '{DEMO_PASSWORD}'): " + ", ".join(u for u, _, _ in DEMO_USERS))
    if no_serve:
        return
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    app.config["DEMO_MODE"] = True
    start_background(app, app.config["SCHEDULER_TICK_SECONDS"])
    tick = app.config["SCHEDULER_TICK_SECONDS"]
    click.echo(f"web app on http://{host}:{port}/  (scheduler ticking every {tick} s)")
    # app.run() is a no-op under the flask CLI; serve with werkzeug directly (one process, threads)
    run_simple(host, port, app, use_reloader=False, threaded=True)
