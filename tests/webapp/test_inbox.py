"""The inbox: tasks across roles, counts, overdue first, filters, pages, claiming."""

from __future__ import annotations

import re

from tests.webapp.conftest import entry_task, request_for_approval


def _titles(html: str) -> list[str]:
    return re.findall(r'class="task-title" href="/tasks/\d+">([^<]+)</a>', html)


def test_inbox_lists_tasks_of_all_my_roles_with_counts(app, three_steps, people, login_as):
    request_for_approval(three_steps, people["sally"], subject="Chairs")
    entry_task(three_steps, people["sally"])
    sam = login_as("sam")  # sales and manager

    html = sam.page("/inbox")
    titles = _titles(html)
    assert "Approve Chairs" in titles and "Enter request" in titles
    assert 'data-count="manager">1<' in html and 'data-count="sales">1<' in html

    counts = sam.get("/inbox/counts.json").get_json()
    assert counts == {"roles": {"manager": 1, "sales": 1}, "mine": 0, "total": 2}


def test_filters_by_role_process_and_text(app, three_steps, people, login_as):
    request_for_approval(three_steps, people["sally"], subject="Chairs")
    request_for_approval(three_steps, people["sally"], subject="Tables")
    entry_task(three_steps, people["sally"])
    sam = login_as("sam")

    assert _titles(sam.page("/inbox?role=sales")) == ["Enter request"]
    assert _titles(sam.page("/inbox?q=tabl")) == ["Approve Tables"]
    assert len(_titles(sam.page("/inbox?process=three_steps"))) == 3
    assert _titles(sam.page("/inbox?process=lead_to_invoice")) == []
    assert len(_titles(sam.page("/inbox?role=director"))) == 3  # not his role: ignored


def test_overdue_tasks_come_first_and_are_marked(app, three_steps, people, login_as, clock):
    old = entry_task(three_steps, people["sally"])  # due in one day
    clock.advance(days=2)
    entry_task(three_steps, people["sally"])
    sally = login_as("sally")

    for sort in ("due", "age", "priority"):
        html = sally.page(f"/inbox?sort={sort}")
        first = re.search(r'href="/tasks/(\d+)"', html[html.index("<h1>") :])
        assert first and int(first.group(1)) == old, sort
        assert html.count('class="tag overdue"') == 1, sort
    assert len(_titles(sally.page("/inbox?overdue=1"))) == 1


def test_keyset_pages(app, three_steps, people, login_as):
    for _ in range(27):
        entry_task(three_steps, people["sally"])
    sally = login_as("sally")

    first = sally.page("/inbox")
    assert len(_titles(first)) == 25
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = sally.page(next_url)
    assert len(_titles(second)) == 2
    assert 'rel="next"' not in second
    assert sally.get("/inbox?cursor=garbage").status_code == 400


def test_claim_and_give_back(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"], subject="Chairs")
    mona, dora = login_as("mona"), login_as("dora")

    response = mona.post(f"/tasks/{approval}/claim", {"next": "/inbox"}, form_url="/inbox")
    assert response.status_code == 302 and response.location.endswith("/inbox")
    assert three_steps.task(approval).assignee == "mona"

    html = dora.page("/inbox")
    assert "claimed by Mona Manager" in html  # the role still sees it, and who has it
    assert dora.post(f"/tasks/{approval}", {"decision": "approve"}, form_url="/inbox").status_code == 403
    assert "Mona Manager is working on this task" in dora.page(f"/tasks/{approval}")
    assert 'name="decision"' not in dora.page(f"/tasks/{approval}")
    assert mona.get("/inbox/counts.json").get_json()["mine"] == 1

    assert mona.post(f"/tasks/{approval}/unclaim", form_url="/inbox").status_code == 302
    assert three_steps.task(approval).assignee is None


def test_claim_of_another_roles_task_is_forbidden(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    alex = login_as("alex")
    assert alex.post(f"/tasks/{approval}/claim", form_url="/inbox").status_code == 403
    assert three_steps.task(approval).assignee is None


def test_an_admin_releases_someone_elses_claim(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    three_steps.claim_task(approval, people["mona"])
    ada = login_as("ada")
    assert ada.post(f"/tasks/{approval}/unclaim", form_url="/inbox").status_code == 302
    assert three_steps.task(approval).assignee is None
    dora = login_as("dora")
    three_steps.claim_task(approval, people["mona"])
    assert dora.post(f"/tasks/{approval}/unclaim", form_url="/inbox").status_code == 403


def test_counts_poll_script_is_served(app, people, login_as):
    mona = login_as("mona")
    html = mona.page("/inbox")
    assert '<script src="/static/inbox.js" defer></script>' in html
    script = mona.get("/static/inbox.js")
    try:
        assert script.status_code == 200 and b"20000" in script.data
    finally:
        script.close()
