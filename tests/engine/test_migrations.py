"""The Alembic migrations alone create exactly the schema the models describe (no drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

import engine.business.all  # noqa: F401  (every table)
from engine.db import db
from tests.conftest import Clock, make_app


def test_models_and_migrations_agree(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'fresh.db'}", Clock())
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        db.engine.dispose()
    assert diff == []
