"""The Flask app factory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask_babel import Babel
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from engine import Engine
from engine.db import db

from . import security, tokens  # noqa: F401  (tokens: the api_token table)

ROOT = Path(__file__).resolve().parent.parent
migrate = Migrate()
csrf = CSRFProtect()
babel = Babel()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    default_db = "sqlite:///" + str(Path(app.instance_path) / "backoffice.db")
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY") or _instance_secret(Path(app.instance_path)),
        SQLALCHEMY_DATABASE_URI=_database_url(os.environ.get("DATABASE_URL", default_db)),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        FORMS_DIR=os.environ.get("BACKOFFICE_FORMS_DIR", str(ROOT / "forms")),
        PROCESSES_DIR=os.environ.get("BACKOFFICE_PROCESSES_DIR", str(ROOT / "processes")),
        SCHEDULER_TICK_SECONDS=0.5,
        MAIL_SERVER=os.environ.get("MAIL_SERVER"),
        MAIL_PORT=os.environ.get("MAIL_PORT"),
        MAIL_USE_TLS=os.environ.get("MAIL_USE_TLS"),
        MAIL_USE_SSL=os.environ.get("MAIL_USE_SSL"),
        MAIL_USERNAME=os.environ.get("MAIL_USERNAME"),
        MAIL_PASSWORD=os.environ.get("MAIL_PASSWORD"),
        MAIL_DEFAULT_SENDER=os.environ.get("MAIL_DEFAULT_SENDER"),
        # behind TLS set PREFERRED_URL_SCHEME=https: cookies become Secure (webapp/security.py)
        PREFERRED_URL_SCHEME=os.environ.get("PREFERRED_URL_SCHEME", "http"),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        BABEL_DEFAULT_LOCALE="en",
        BABEL_DEFAULT_TIMEZONE=os.environ.get("BACKOFFICE_TIMEZONE", "UTC"),
        BABEL_TRANSLATION_DIRECTORIES=str(ROOT / "webapp" / "translations"),
        **security.CONFIG_DEFAULTS,
    )
    if test_config is not None:
        app.config.update(test_config)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    engine = Engine(Path(app.config["FORMS_DIR"]), clock=app.config.get("CLOCK"))
    from engine.business import all as business

    business.install(engine)
    app.extensions["engine"] = engine

    from . import (
        admin,
        api,
        approvals,
        auth,
        designer,
        documents,
        errors,
        health,
        home,
        inbox,
        instances,
        ops,
        reports,
        tasks,
        vendor,
    )

    ops.init_app(app)  # first: its request hooks time and log everything after them
    security.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=auth.select_locale)
    auth.login_manager.init_app(app)
    for blueprint in (
        health.bp,
        home.bp,
        auth.bp,
        inbox.bp,
        tasks.bp,
        approvals.bp,
        documents.bp,
        reports.bp,
        admin.bp,
        instances.bp,
        designer.bp,
        api.bp,
        ops.bp,
        vendor.bp,
        errors.bp,
    ):
        app.register_blueprint(blueprint)
    return app


def _database_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _instance_secret(instance_path: Path) -> str:
    """Without SECRET_KEY in the environment: a random key kept in instance/secret_key (0600),
    so sessions survive restarts and no two installations share a key."""
    path = instance_path / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
