"""`backoffice export` and `backoffice import`: the deployed processes of one database, every
version of them, carried into a fresh database through files and a manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from engine.db import db
from engine.models import Deployment, ProcessDefinition
from tests.conftest import ROOT, _prepare, make_app, read_files
from webapp.cli import main

BPMN = Path(__file__).parent / "bpmn"
PROCESSES = ROOT / "processes"


def run(app: Any, *args: str) -> Any:
    db.session.commit()
    return app.test_cli_runner().invoke(main, list(args))


def deployed_state(engine: Any) -> dict[str, Any]:
    """Every version (process, version, file and its bytes) and the latest content of every file."""
    versions = {
        (d.process_id, d.version): (d.file_name, d.latest, engine.definition_source(d.id)[1])
        for d in engine.definitions()
    }
    return {"versions": versions, "files": engine.current_files()}


def exported_files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_export_then_import_into_a_fresh_database_gives_the_same_versions_and_bytes(office, clock, tmp_path):
    app = current_app._get_current_object()
    changed = (PROCESSES / "purchase_approval.bpmn").read_bytes().replace(b">P2D<", b">P3D<", 1)
    assert changed != (PROCESSES / "purchase_approval.bpmn").read_bytes()
    office.deploy({**office.current_files(), "purchase_approval.bpmn": changed})  # version 2
    source = deployed_state(office)
    assert ("purchase_approval", 2) in source["versions"]

    out = tmp_path / "export"
    result = run(app, "export", str(out), "--all-versions")
    assert result.exit_code == 0, result.output
    assert "exported purchase_approval version 2 (purchase_approval.bpmn)" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    latest = {p["process_id"]: p["version"] for p in manifest["processes"]}
    assert latest == {d.process_id: d.version for d in office.definitions() if d.latest}
    assert latest["lead_to_invoice"] == 1 and latest["purchase_approval"] == 2
    assert (out / "purchase_approval.bpmn").read_bytes() == changed
    assert (out / "purchase_approval" / "v1" / "purchase_approval.bpmn").read_bytes() == (
        PROCESSES / "purchase_approval.bpmn"
    ).read_bytes()
    assert (out / "purchase_approval" / "v1" / "purchase_approval_level.dmn").is_file()

    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    fresh = make_app(fresh_url, clock, FORMS_DIR=str(ROOT / "forms"))
    _prepare(fresh, fresh_url)
    with fresh.app_context():
        engine = fresh.extensions["engine"]
        result = run(fresh, "import", str(out))
        assert result.exit_code == 0, result.output
        assert "deployed purchase_approval version 2" in result.output
        assert deployed_state(engine) == source

        deployments = db.session.scalar(select(func.count()).select_from(Deployment))
        again = run(fresh, "import", str(out))  # identical content: nothing new
        assert again.exit_code == 0, again.output
        assert "unchanged" in again.output and "deployed" not in again.output
        assert db.session.scalar(select(func.count()).select_from(Deployment)) == deployments

        copy = tmp_path / "copy"
        assert run(fresh, "export", str(copy), "--all-versions").exit_code == 0
        assert exported_files(copy) == exported_files(out)
    with fresh.app_context():
        db.engine.dispose()


def test_import_of_a_broken_file_names_file_line_and_element_and_deploys_nothing(app, tmp_path):
    bad = tmp_path / "loop.bpmn"
    bad.write_text((BPMN / "loop.bpmn").read_text().replace("count += 1", "import os"))
    result = run(app, "import", str(bad), str(BPMN / "three_steps.bpmn"))
    assert result.exit_code == 1
    line = next(n for n, t in enumerate(bad.read_text().splitlines(), 1) if "import os" in t)
    assert f"loop.bpmn:{line} count_up:" in result.output
    assert db.session.scalar(select(func.count()).select_from(ProcessDefinition)) == 0


def test_export_keeps_to_its_directory_and_import_refuses_altered_history(app, engine, tmp_path):
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = run(app, "export", str(busy))
    assert result.exit_code != 0 and "holds no manifest.json" in result.output
    assert (busy / "notes.txt").read_text() == "mine"

    out = tmp_path / "out"
    assert run(app, "export", str(out), "--all-versions").exit_code == 0
    assert run(app, "export", str(out)).exit_code == 0  # a previous export is replaced
    assert not (out / "three_steps").exists()
    assert run(app, "export", str(out), "--all-versions").exit_code == 0
    history = out / "three_steps" / "v1" / "three_steps.bpmn"
    history.write_bytes(history.read_bytes().replace(b"Enter request", b"Enter a request"))
    result = run(app, "import", str(out))
    assert result.exit_code != 0 and "history was altered" in result.output
