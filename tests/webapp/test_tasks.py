"""The task page: form, document, history; completing; starting a process; an instance's page."""

from __future__ import annotations

from tests.webapp.conftest import entry_task, request_for_approval


def test_task_page_shows_form_document_and_history(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"], subject="Chairs", amount=1200)
    html = login_as("mona").page(f"/tasks/{approval}")

    assert "<h1>Approve Chairs</h1>" in html
    assert '<select id="f-decision" name="decision" aria-required="true">' in html
    assert '<option value="approve">Approve</option>' in html
    assert 'name="reason"' in html
    assert "Request Chairs" in html  # the document type and key
    assert "Sally Sales" in html  # history: who entered the request
    assert "Amount" in html and "1200" in html  # the instance data
    assert "high priority" in html  # 80 above 1000


def test_completing_goes_to_my_next_task(app, three_steps, people, login_as):
    first = entry_task(three_steps, people["sally"])
    second = entry_task(three_steps, people["sally"])
    sally = login_as("sally")

    response = sally.post(f"/tasks/{first}", {"subject": "Chairs", "amount": "12"})
    assert response.status_code == 302
    assert response.location.endswith(f"/tasks/{second}")
    assert "Done: Enter request." in sally.page(f"/tasks/{second}")
    assert three_steps.task(first).status == "completed"

    response = sally.post(f"/tasks/{second}", {"subject": "Tables", "amount": "7", "email": ""})
    assert response.status_code == 302 and response.location.endswith("/inbox")
    data = three_steps.instance_data(three_steps.task(second).instance_id)
    assert data["subject"] == "Tables" and data["amount"] == 7 and "email" not in data


def test_a_completed_task_shows_who_completed_it(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    three_steps.complete_task(approval, people["dora"], {"decision": "approve"})
    html = login_as("mona").page(f"/tasks/{approval}")
    assert "Completed by Dora Director" in html
    assert 'name="decision"' not in html


def test_start_a_process(app, three_steps, people, login_as):
    app.config["START_ROLES"] = {"three_steps": frozenset({"sales"})}
    sally = login_as("sally")

    assert "This process needs nothing to start." in sally.page("/start/three_steps")
    response = sally.post("/start/three_steps")
    assert response.status_code == 302 and response.location.endswith("/inbox")
    assert "Three steps no. 1 started." in sally.page("/inbox")
    assert three_steps.instance(1).started_by == "sally"

    assert login_as("mona").get("/start/three_steps").status_code == 403
    assert sally.get("/start/no_such_process").status_code == 404


def test_start_menu_lists_what_i_may_start(app, people, login_as):
    html = login_as("sally").page("/inbox")
    assert "/start/lead_to_invoice" in html and "/start/purchase_approval" in html
    assert "/start/repair_ticket" not in html


def test_instance_page(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"], subject="Chairs")
    instance_id = three_steps.task(approval).instance_id
    html = login_as("dora").page(f"/instances/{instance_id}")
    assert f"Three steps no. {instance_id}" in html
    assert "Approve Chairs" in html and "Enter request" in html
    assert login_as("alex").get(f"/instances/{instance_id + 100}").status_code == 404


def test_more_lines_keeps_the_input(app, three_steps, people, login_as):
    task_id = entry_task(three_steps, people["sally"])
    sally = login_as("sally")
    response = sally.post(f"/tasks/{task_id}", {"subject": "Chairs", "_add_rows": "nothing"})
    assert response.status_code == 200
    assert 'value="Chairs"' in response.get_data(as_text=True)
    assert three_steps.task(task_id).status == "open"
