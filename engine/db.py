"""The one SQLAlchemy handle, and the SQLite settings every connection gets."""

from __future__ import annotations

from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


@event.listens_for(SAEngine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL, a busy timeout and foreign keys on every SQLite connection."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # pysqlite's own transaction handling starts transactions lazily (and not for SAVEPOINT);
    # SQLAlchemy's "begin" event below starts them instead, as BEGIN IMMEDIATE
    dbapi_connection.isolation_level = None


@event.listens_for(SAEngine, "begin")
def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts. A deferred transaction that reads
    first and writes later fails at once with "database is locked" when another writer
    committed meanwhile; an immediate one waits (busy timeout) and then sees the new data."""
    autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if connection.dialect.name == "sqlite" and not autocommit:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"
