"""The `backoffice` command line, run as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, text

from webapp.cli import main

BPMN = Path(__file__).parent / "bpmn"
FORMS = Path(__file__).parent / "forms"


def invoke(tmp_path: Path, *args: str):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_init_db_deploy_users_and_check(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKOFFICE_FORMS_DIR", str(FORMS))
    result = invoke(tmp_path, "init-db")
    assert result.exit_code == 0, result.output
    assert "database ready" in result.output
    result = invoke(tmp_path, "deploy", str(BPMN / "three_steps.bpmn"))
    assert result.exit_code == 0, result.output
    assert "deployed three_steps version 1" in result.output
    result = invoke(tmp_path, "deploy", str(BPMN / "three_steps.bpmn"))
    assert "unchanged" in result.output
    result = invoke(tmp_path, "users", "add", "mona", "--roles", "manager,director")
    assert result.exit_code == 0 and '"roles": ["director", "manager"]' in result.output
    result = invoke(tmp_path, "users", "add", "bob", "--roles", "wizard")
    assert result.exit_code != 0 and "unknown role(s): wizard" in result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    engine.dispose()


def test_check_reports_file_line_element_and_exits_nonzero(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKOFFICE_FORMS_DIR", str(FORMS))
    bad = tmp_path / "loop.bpmn"
    bad.write_text((BPMN / "loop.bpmn").read_text().replace("count += 1", "import os"))
    result = invoke(tmp_path, "check", str(bad))
    assert result.exit_code == 1
    line = next(n for n, t in enumerate(bad.read_text().splitlines(), 1) if "import os" in t)
    assert f"loop.bpmn:{line} count_up:" in result.output
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(BPMN / "three_steps.bpmn", clean)
    result = invoke(tmp_path, "check", str(clean))
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output
