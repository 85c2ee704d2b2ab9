"""The Flask app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate

from engine import Engine
from engine.db import db

ROOT = Path(__file__).resolve().parent.parent
migrate = Migrate()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    default_db = "sqlite:///" + str(Path(app.instance_path) / "backoffice.db")
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-change-me"),
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
    )
    if test_config is not None:
        app.config.update(test_config)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    engine = Engine(Path(app.config["FORMS_DIR"]), clock=app.config.get("CLOCK"))
    from engine.business import all as business

    business.install(engine)
    app.extensions["engine"] = engine

    from . import health, home

    app.register_blueprint(health.bp)
    app.register_blueprint(home.bp)
    return app


def _database_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
