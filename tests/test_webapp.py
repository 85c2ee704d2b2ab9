"""The health page and the front page, through the Flask test client."""

from __future__ import annotations

from tests.conftest import SALLY


def test_health_reports_database_and_timer_lag(app):
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.json["database"] == "ok"
    assert response.json["oldest_due_timer_lag_seconds"] == 0.0


def test_front_page_escapes_and_counts(app, engine):
    from pathlib import Path

    from tests.conftest import read_files

    engine.deploy(read_files(Path(__file__).parent / "engine" / "bpmn" / "three_steps.bpmn"))
    engine.start_process("three_steps", {}, SALLY)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "three_steps" in page and "sales" in page
    assert "Demo users" not in page  # passwords only in demo mode
