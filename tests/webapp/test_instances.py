"""Process instances: the list and its filters, who sees which instance and its data, the
diagram's data, timers, incidents, and the operations of administrators (suspend, resume,
cancel, retry, move to the latest version) — through the real pages, CSRF on."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import Actor, Engine
from engine.db import db
from engine.models import AuditEvent, Incident, ProcessInstance
from engine.operations import operation
from tests.conftest import read_files
from tests.webapp.conftest import THREE_STEPS
from webapp import instances as instances_module

BPMN = Path(__file__).resolve().parents[1] / "engine" / "bpmn"
ROW = re.compile(r'data-instance-id="(\d+)"')
LEDGER = {"down": False}


@operation("instance_page_ledger")
def ledger(ctx, value):
    """A service task's operation that fails while the ledger is 'down'."""
    if LEDGER["down"]:
        raise RuntimeError("ledger unavailable for the instance page")
    return value * 2


@pytest.fixture
def processes(three_steps: Engine) -> Engine:
    """three_steps (sales, manager, accounting), wait_then (accounting, two timers) and a
    service task that can fail (sales)."""
    service = (BPMN / "service_calls.bpmn").read_text().replace("test_double", "instance_page_ledger")
    three_steps.deploy({**read_files(BPMN / "wait_then.bpmn"), "service_calls.bpmn": service.encode()})
    LEDGER["down"] = False
    return three_steps


def listed(browser, query: str = "") -> list[int]:
    return [int(n) for n in ROW.findall(browser.page(f"/instances/{query}"))]


def at_approval(engine: Engine, requester: Actor, subject: str = "Chairs", key: str | None = None) -> int:
    """A three_steps instance whose request is entered: it waits for a manager's approval."""
    instance_id = engine.start_process("three_steps", {}, requester, business_key=key)
    enter = next(t for t in engine.tasks_for(requester).tasks if t.instance_id == instance_id)
    engine.complete_task(enter.id, requester, {"subject": subject, "amount": 300})
    return instance_id


def waiting(
    engine: Engine, starter: Actor, due: str = "2030-01-01T00:00:00+00:00", key: str | None = None
) -> int:
    """A wait_then instance: an hour's timer, then one until `due`, then accounting books it."""
    return engine.start_process("wait_then", {"due_date": due}, starter, business_key=key)


def events_of(instance_id: int) -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(AuditEvent.event, AuditEvent.actor)
        .where(AuditEvent.instance_id == instance_id)
        .order_by(AuditEvent.id)
    )
    return [(e, a) for e, a in rows]


def status_of(instance_id: int) -> str:
    db.session.expire_all()
    return db.session.get(ProcessInstance, instance_id).status


# -- the list -------------------------------------------------------------------------------------
def test_list_filters_narrow_the_instances(app, processes, people, clock, login_as):
    first_day = clock.current.date()
    a = processes.start_process("three_steps", {}, people["sally"], business_key="PO-100")
    clock.advance(days=3)
    b = processes.start_process("three_steps", {}, people["sam"], business_key="po-200")
    c = waiting(processes, people["mona"], key="INV-7")
    d = processes.start_process("three_steps", {}, people["sally"])
    processes.suspend(d, people["ada"])
    dora = login_as("dora")  # a director sees every instance

    assert listed(dora) == [d, c, b, a]  # newest first
    assert listed(dora, "?process=wait_then") == [c]
    assert listed(dora, "?status=suspended") == [d]
    assert listed(dora, "?status=waiting") == [c]
    assert listed(dora, "?key=po-") == [b, a]  # part of the key, any case
    assert listed(dora, "?by=sally") == [d, a]
    assert listed(dora, "?by=Sam+Both") == [b]  # or the display name
    assert listed(dora, f"?to={first_day.isoformat()}") == [a]
    assert listed(dora, f"?from={(first_day + timedelta(days=1)).isoformat()}") == [d, c, b]
    assert listed(dora, "?version=1&process=three_steps") == [d, b, a]
    assert listed(dora, "?version=2") == []
    assert listed(dora, "?process=three_steps&by=sally&status=running") == [a]
    assert listed(dora, "?status=nonsense&from=not-a-date") == [d, c, b, a]  # unreadable: ignored
    assert "No instance matches." in dora.page("/instances/?key=nothing-like-this")


def test_list_pages_keep_the_filters(app, processes, people, login_as, monkeypatch):
    monkeypatch.setattr(instances_module, "PAGE_SIZE", 2)
    ids = [processes.start_process("three_steps", {}, people["sally"]) for _ in range(5)]
    waiting(processes, people["alex"])
    dora = login_as("dora")

    html = dora.page("/instances/?process=three_steps")
    assert [int(n) for n in ROW.findall(html)] == [ids[4], ids[3]]
    older = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "process=three_steps" in older and f"before={ids[3]}" in older
    html = dora.page(older)
    assert [int(n) for n in ROW.findall(html)] == [ids[2], ids[1]]
    older = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    html = dora.page(older)
    assert [int(n) for n in ROW.findall(html)] == [ids[0]]
    assert 'rel="next"' not in html and "Newest" in html


def test_a_person_sees_only_the_instances_they_take_part_in(app, processes, people, login_as):
    sallys = at_approval(processes, people["sally"], subject="Secret merger")
    monas = waiting(processes, people["mona"])

    sally, alex, mona = login_as("sally"), login_as("alex"), login_as("mona")
    assert listed(sally) == [sallys]
    assert listed(mona) == [monas, sallys]  # she started one; she holds the role of the approval
    assert listed(alex) == []  # accounting: nothing of these is theirs yet
    for url in (f"/instances/{monas}", f"/instances/{monas}/diagram.json"):
        response = sally.get(url)
        assert response.status_code == 404, url
    response = alex.get(f"/instances/{sallys}")
    assert response.status_code == 404 and "Secret merger" not in response.get_data(as_text=True)
    assert alex.get(f"/instances/{sallys}/diagram.json").get_json()["error"] == "Not found"
    assert login_as("ada").get(f"/instances/{sallys}").status_code == 200  # administrators see all


def test_the_data_is_for_those_who_work_on_the_instance(app, processes, people, login_as):
    instance_id = waiting(processes, people["mona"], "2031-07-09T00:00:00+00:00")

    own = login_as("mona").page(f"/instances/{instance_id}")  # she started it; no task is hers
    assert "Wait, then book no." in own and "One hour later" in own
    assert "The data of this instance is shown to those who work on its tasks." in own
    assert "<dt>Due date</dt>" not in own
    assert "<dt>Due date</dt>" in login_as("dora").page(f"/instances/{instance_id}")  # a director does


# -- one instance ---------------------------------------------------------------------------------
def test_diagram_json_is_the_instances_own_version_with_states(app, processes, people, login_as):
    instance_id = at_approval(processes, people["sally"])
    mona = login_as("mona")

    body = mona.get(f"/instances/{instance_id}/diagram.json").get_json()
    assert body["xml"] == THREE_STEPS.read_text()
    assert body["version"] == 1
    assert body["states"]["start"] == "completed"
    assert body["states"]["enter_request"] == "completed"
    assert body["states"]["approve"] == "active"
    assert "book" not in body["states"]

    html = mona.page(f"/instances/{instance_id}")
    assert f'data-diagram-url="/instances/{instance_id}/diagram.json"' in html
    assert "/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in html
    assert '<li data-element-id="approve" data-state="active"><strong>Approve request</strong>' in html
    assert "style=" not in html  # the Content-Security-Policy forbids inline styles

    # a new version does not change the diagram of an instance still on the old one
    processes.deploy({"three_steps.bpmn": THREE_STEPS.read_bytes().replace(b"Book it", b"Book the request")})
    newer = mona.get(f"/instances/{instance_id}/diagram.json").get_json()
    assert newer["version"] == 1 and "Book the request" not in newer["xml"]


def test_timers_are_listed_with_their_due_time(app, processes, people, clock, login_as):
    instance_id = waiting(processes, people["alex"], "2031-07-09T00:00:00+00:00")
    alex = login_as("alex")

    html = alex.page(f"/instances/{instance_id}")
    assert re.search(r"One hour later</td>\s*<td>After a duration</td>", html)
    assert '<time datetime="2026-11-02T10:00:00+00:00">' in html  # started 09:00, PT1H
    assert '<li data-element-id="one_hour" data-state="waiting">' in html

    processes.fire_due_timers(clock.advance(hours=1, seconds=1))
    html = alex.page(f"/instances/{instance_id}")
    assert "One hour later</td>" not in html
    assert re.search(r"Until the due date</td>\s*<td>At a date</td>", html)
    assert '<time datetime="2031-07-09T00:00:00+00:00">' in html


# -- operations -------------------------------------------------------------------------------------
def test_admin_suspends_resumes_and_cancels_and_each_is_audited(app, processes, people, login_as):
    instance_id = at_approval(processes, people["sally"])
    ada = login_as("ada")
    page = f"/instances/{instance_id}"
    assert f'action="/instances/{instance_id}/suspend"' in ada.page(page)

    response = ada.post(f"{page}/suspend", form_url=page)
    assert response.status_code == 302 and response.location.endswith(page)
    assert status_of(instance_id) == "suspended"
    html = ada.page(page)
    assert "is suspended" in html and f'action="/instances/{instance_id}/resume"' in html
    assert ada.post(f"{page}/suspend", form_url=page).status_code == 409  # already suspended

    assert ada.post(f"{page}/resume", form_url=page).status_code == 302
    assert status_of(instance_id) == "running"

    assert "1 open task will be withdrawn." in ada.page(f"{page}/cancel")
    refused = ada.post(f"{page}/cancel")  # the box not ticked
    assert refused.status_code == 422 and "Tick the box" in refused.get_data(as_text=True)
    assert status_of(instance_id) == "running"
    assert ada.post(f"{page}/cancel", {"confirm": "yes"}).status_code == 302
    assert status_of(instance_id) == "cancelled"
    assert "is cancelled" in ada.page(page)
    assert ada.post(f"{page}/cancel", {"confirm": "yes"}).status_code == 409

    operations = [e for e in events_of(instance_id) if e[0] in ("suspended", "resumed", "cancelled")]
    assert operations == [("suspended", "ada"), ("resumed", "ada"), ("cancelled", "ada")]


def test_only_administrators_operate(app, processes, people, login_as):
    instance_id = at_approval(processes, people["sally"])
    LEDGER["down"] = True
    failed = processes.start_process("service_calls", {"amount": 4}, people["sally"])
    [incident] = processes.incidents(failed)
    dora = login_as("dora")  # sees every instance, but is no administrator
    page = f"/instances/{instance_id}"

    html = dora.page(page)
    assert "/suspend" not in html and "/cancel" not in html and "/migrate" not in html
    assert "/retry" not in dora.page(f"/instances/{failed}")
    for action, data in (("suspend", {}), ("resume", {}), ("cancel", {"confirm": "yes"}), ("migrate", {})):
        assert dora.post(f"{page}/{action}", data, form_url=page).status_code == 403, action
    retry = f"/instances/{failed}/incidents/{incident.id}/retry"
    assert dora.post(retry, form_url=page).status_code == 403
    assert dora.get(f"{page}/cancel").status_code == 403 and dora.get(f"{page}/migrate").status_code == 403
    assert status_of(instance_id) == "running" and status_of(failed) == "error"
    assert login_as("sally").post(f"{page}/suspend", form_url=page).status_code == 403


def test_operations_need_the_csrf_token(app, processes, people, login_as):
    instance_id = at_approval(processes, people["sally"])
    ada = login_as("ada")
    for action in ("suspend", "cancel"):
        response = ada.post_without_token(f"/instances/{instance_id}/{action}", {"confirm": "yes"})
        assert response.status_code == 400, action
    assert status_of(instance_id) == "running"


def test_admin_retries_an_incident(app, processes, people, login_as):
    LEDGER["down"] = True
    instance_id = processes.start_process("service_calls", {"amount": 4}, people["sally"])
    [incident] = processes.incidents(instance_id)
    ada, dora = login_as("ada"), login_as("dora")
    page = f"/instances/{instance_id}"

    html = ada.page(page)
    assert "ledger unavailable for the instance page" in html
    assert "Traceback (most recent call last)" in html  # for administrators
    assert '<li data-element-id="double_it" data-state="failed"><strong>Double the amount</strong>' in html
    assert ada.get(f"{page}/diagram.json").get_json()["states"]["double_it"] == "failed"
    seen_by_director = dora.page(page)
    assert "ledger unavailable" in seen_by_director and "Traceback" not in seen_by_director
    elsewhere = f"/instances/{instance_id + 1}/incidents/{incident.id}/retry"  # not this one's incident
    assert ada.post(elsewhere, form_url=page).status_code == 404

    LEDGER["down"] = False
    response = ada.post(f"{page}/incidents/{incident.id}/retry", form_url=page)
    assert response.status_code == 302
    assert status_of(instance_id) == "running"
    resolved = db.session.get(Incident, incident.id)
    assert resolved.resolved_by == "ada"
    html = ada.page(page)
    assert "was tried again" in html and "resolved" in html and "Ada Admin" in html
    assert ("retried", "ada") in events_of(instance_id)
    assert ada.post(f"{page}/incidents/{incident.id}/retry", form_url=page).status_code == 409


def test_admin_moves_an_instance_to_the_latest_version(app, processes, people, login_as):
    instance_id = at_approval(processes, people["sally"])
    changed = THREE_STEPS.read_bytes().replace(b'name="Book it"', b'name="Book the request"')
    processes.deploy({"three_steps.bpmn": changed})
    ada = login_as("ada")
    page = f"/instances/{instance_id}"

    assert f'href="/instances/{instance_id}/migrate"' in ada.page(page)
    preview = ada.page(f"{page}/migrate")
    assert "From version 1 to version 2" in preview
    assert '<ul class="migration-changed"><li>book (Book it)</li></ul>' in preview
    assert "cannot move" not in preview

    response = ada.post(f"{page}/migrate", form_url=f"{page}/migrate")
    assert response.status_code == 302 and response.location.endswith(page)
    db.session.expire_all()
    assert db.session.get(ProcessInstance, instance_id).process_version == 2
    html = ada.page(page)
    assert "now runs on version 2" in html and "version 2" in html
    assert ("migrated", "ada") in events_of(instance_id)
    assert b"Book the request" in ada.get(f"{page}/diagram.json").get_data()

    # on the latest version already: the preview says why not, and the POST is refused
    assert "cannot move" in ada.page(f"{page}/migrate")
    assert ada.post(f"{page}/migrate", form_url=page).status_code == 409
