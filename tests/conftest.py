"""Shared fixtures: an app on a real database (SQLite file, and PostgreSQL when reachable),
the engine with a clock the test controls, and personas."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine import Actor, Engine
from engine.db import db
from webapp import create_app

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def _postgres_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means: no server for us
        return f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}: {exc})"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = _postgres_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    import psycopg

    name = f"backoffice_test_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_migrated: dict[str, Any] = {}


def make_app(url: str, clock: Clock, **config: Any) -> Any:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "TESTING": True,
            "CLOCK": clock,
            "FORMS_DIR": str(ROOT / "tests" / "engine" / "forms"),
            "MAIL_SERVER": None,  # tests never send real mail; mail tests start their own server
            **config,
        }
    )
    return app


def _prepare(app: Any, url: str) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        if url not in _migrated:
            upgrade()
            import engine.business.all  # noqa: F401  (every business table; the drift test guards migrations)

            db.create_all()
            _migrated[url] = True
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if db.engine.dialect.name == "postgresql":
            db.session.execute(
                text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            )
        else:
            for table in tables:
                db.session.execute(text(f'DELETE FROM "{table}"'))
        db.session.commit()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    path = tmp_path_factory.getbasetemp() / "engine.db"
    return f"sqlite:///{path}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(database_url: str, clock: Clock) -> Iterator[Any]:
    app = make_app(database_url, clock)
    _prepare(app, database_url)
    with app.app_context():
        yield app
        db.session.remove()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def engine(app: Any) -> Engine:
    return app.extensions["engine"]  # type: ignore[no-any-return]


@pytest.fixture
def office(database_url: str, clock: Clock) -> Iterator[Engine]:
    """The real back office: processes/ deployed with forms/, on a fresh database."""
    app = make_app(database_url, clock, FORMS_DIR=str(ROOT / "forms"))
    _prepare(app, database_url)
    with app.app_context():
        engine: Engine = app.extensions["engine"]
        files = {
            p.name: p.read_bytes()
            for p in sorted((ROOT / "processes").iterdir())
            if p.suffix in (".bpmn", ".dmn")
        }
        engine.deploy(files)
        yield engine
        db.session.remove()
    with app.app_context():
        db.engine.dispose()


def read_files(*paths: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths}


# Personas: who works here.
SALLY = Actor.of("sally", "sales")
MONA = Actor.of("mona", "manager")
DIANA = Actor.of("diana", "director", "manager")
ALEX = Actor.of("alex", "accounting")
PAUL = Actor.of("paul", "purchasing")
OSCAR = Actor.of("oscar", "sales", "order_entry", "accounting")
