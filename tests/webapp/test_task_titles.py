"""Task titles in the user's language: the BPMN name from the catalogue, with its document."""

from __future__ import annotations

from flask_babel import force_locale

from engine import TaskView
from webapp.tasks import task_title


def _task(**kw: object) -> TaskView:
    base = dict(
        id=1,
        instance_id=1,
        process_id="lead_to_invoice",
        spec_id="qualify_lead",
        title="Qualify lead L-2026-0001 (Acme)",
        role="sales",
        assignee=None,
        status="open",
        priority=50,
        due_at=None,
        created_at=None,
        form_ref=None,
        document_type="lead",
        document_key="L-2026-0001",
        business_key=None,
        excluded_users=(),
        name="Qualify lead",
    )
    base.update(kw)
    return TaskView(**base)  # type: ignore[arg-type]


def test_english_keeps_the_computed_title(app):
    with app.test_request_context(), force_locale("en"):
        assert task_title(_task()) == "Qualify lead L-2026-0001 (Acme)"


def test_other_languages_show_the_translated_name_and_document(app):
    with app.test_request_context(), force_locale("pl"):
        title = task_title(_task())
    assert title.endswith(" · L-2026-0001")
    assert not title.startswith("Qualify lead")


def test_untranslated_name_falls_back_to_the_title(app):
    with app.test_request_context(), force_locale("pl"):
        assert task_title(_task(name="Something nobody translated")) == "Qualify lead L-2026-0001 (Acme)"
