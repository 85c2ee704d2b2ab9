"""The designer through the web app, on the real processes: versions and their instances, a save
from the modeler that deploys version 2 while a running instance stays on version 1, a broken
save that deploys nothing and names the element and line, uploads (modeler exports, hostile XML,
too large), downloads, forms with their compatibility rule and live preview, and a decision table
edited in the page."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine import Actor, Engine
from engine.business.common import Product
from engine.db import db
from engine.models import AuditEvent, ProcessInstance
from engine.users import add_user
from tests.conftest import Clock, _prepare, make_app
from tests.webapp.conftest import CSRF, PASSWORD_HASH, Browser

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "tests" / "engine" / "files"
PROCESS_FILES = {
    p.name: p.read_bytes() for p in sorted((ROOT / "processes").iterdir()) if p.suffix in (".bpmn", ".dmn")
}
STAFF = [
    ("desi", ["designer"], "Desi Designer"),
    ("sally", ["sales"], "Sally Sales"),
    ("paul", ["purchasing"], "Paul"),
]
PAUL = Actor.of("paul", "purchasing")
REMINDER = '<bpmn:timeDuration xsi:type="bpmn:tFormalExpression">P2D</bpmn:timeDuration>'
# checks that do not depend on the database run on SQLite only (the deploy of the real processes
# costs a second per test); what stores or counts runs on PostgreSQL too
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NOT_AUTO = re.compile(
    r'(<bpmn:sequenceFlow id="flow_approval_needed_to_request_approved"[^>]*>)\s*'
    r"<bpmn:conditionExpression[^<]*</bpmn:conditionExpression>\s*(</bpmn:sequenceFlow>)"
)


@pytest.fixture
def studio(database_url: str, clock: Clock, tmp_path: Path) -> Iterator[Any]:
    """The real processes deployed, with a copy of forms/ the tests may change, and three people."""
    forms = tmp_path / "forms"
    shutil.copytree(ROOT / "forms", forms)
    app = make_app(database_url, clock, FORMS_DIR=str(forms))
    _prepare(app, database_url)
    with app.app_context():
        engine: Engine = app.extensions["engine"]
        engine.deploy(PROCESS_FILES)
        for username, roles, name in STAFF:
            add_user(
                username, roles, display_name=name, email=f"{username}@example.com"
            ).password_hash = PASSWORD_HASH
        db.session.add(
            Product(code="LAP-14", name="Laptop", unit_price=Decimal("1150"), purchase_price=Decimal("820"))
        )
        db.session.commit()
        yield app
        db.session.remove()
    with app.app_context():
        db.engine.dispose()


def signed_in(app: Any, username: str) -> Browser:
    browser = Browser(app)
    assert browser.login(username).status_code == 302
    return browser


def engine_of(app: Any) -> Engine:
    engine: Engine = app.extensions["engine"]
    return engine


def request_purchase(app: Any, amount: str = "1150.00") -> int:
    data = {
        "lines": [{"product": "LAP-14", "qty": 1, "unit_price": amount}],
        "suggested_vendor": "",
        "purchase_reason": "A laptop for the new colleague",
        "needed_by": "2026-11-20",
    }
    return engine_of(app).start_process("purchase_approval", data, PAUL)


def token_of(browser: Browser, url: str) -> str:
    match = CSRF.search(browser.page(url))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def post_raw(browser: Browser, url: str, body: bytes, token: str | None, **headers: str) -> Any:
    """A POST as the modeler's script sends it: the XML as the body, the CSRF token in a header."""
    db.session.commit()
    sent = {"Content-Type": "application/xml", "Accept": "application/json", **headers}
    if token is not None:
        sent["X-CSRFToken"] = token
    with browser.app.app_context():
        return browser.client.post(url, data=body, headers=sent)


def save_from_modeler(browser: Browser, xml: bytes, process_id: str = "purchase_approval") -> Any:
    token = token_of(browser, f"/designer/processes/{process_id}")
    return post_raw(browser, f"/designer/processes/{process_id}/deploy", xml, token)


def versions(app: Any, process_id: str = "purchase_approval") -> list[int]:
    db.session.commit()
    return [d.version for d in engine_of(app).definitions(process_id)]


def upload(browser: Browser, files: dict[str, bytes], action: str = "deploy") -> Any:
    data = {
        "csrf_token": token_of(browser, "/designer/"),
        "action": action,
        "files": [(io.BytesIO(content), name) for name, content in files.items()],
    }
    db.session.commit()
    with browser.app.app_context():
        return browser.client.post("/designer/upload", data=data, content_type="multipart/form-data")


# -- who may design --------------------------------------------------------------------------------------
@SQLITE_ONLY
def test_only_designers_may_use_the_designer(studio):
    sally = signed_in(studio, "sally")
    for url in (
        "/designer/",
        "/designer/processes/purchase_approval",
        "/designer/processes/purchase_approval/diagram.bpmn",
        "/designer/files/purchase_approval.bpmn",
        "/designer/forms/purchase_approval/approve_manager",
        "/designer/decisions/purchase_approval_level.dmn",
    ):
        assert sally.get(url).status_code == 403, url
    token = token_of(sally, "/inbox")
    refused = post_raw(
        sally, "/designer/processes/purchase_approval/deploy", PROCESS_FILES["purchase_approval.bpmn"], token
    )
    assert refused.status_code == 403
    assert "Designer" not in sally.page("/inbox").split("<main", 1)[0]  # no menu entry either

    anonymous = Browser(studio)
    response = anonymous.get("/designer/")
    assert response.status_code == 302 and "/login" in response.location

    desi = signed_in(studio, "desi")
    assert 'href="/designer/"' in desi.page("/inbox")
    assert desi.get("/designer/").status_code == 200


def test_the_list_shows_versions_instances_decisions_and_forms(studio):
    request_purchase(studio)
    request_purchase(studio)
    page = signed_in(studio, "desi").page("/designer/")

    block = page.split('data-process="purchase_approval"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'data-version="1" data-running="2" data-live="true"', block)
    assert "2 running" in block
    for process_id in ("lead_to_invoice", "repair_ticket"):
        assert f'data-process="{process_id}"' in page
    assert 'href="/designer/processes/purchase_approval"' in page
    decision = page.split('data-file="purchase_approval_level.dmn"', 1)[1].split("</tr>", 1)[0]
    assert (
        "purchase_approval" in decision
        and 'href="/designer/decisions/purchase_approval_level.dmn"' in decision
    )
    assert 'href="/designer/forms/purchase_approval/approve_manager"' in page


# -- the modeler -----------------------------------------------------------------------------------------
@SQLITE_ONLY
def test_the_modeler_page_loads_the_live_bpmn_without_inline_script(studio):
    desi = signed_in(studio, "desi")
    page = desi.page("/designer/processes/purchase_approval")
    assert "/vendor/bpmn-js/bpmn-modeler.production.min.js" in page
    assert "/vendor/bpmn-js/assets/diagram-js.css" in page and "bpmn-font/css/bpmn.css" in page
    assert 'data-source-url="/designer/processes/purchase_approval/diagram.bpmn"' in page
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None  # no inline script
    assert " style=" not in page

    diagram = desi.get("/designer/processes/purchase_approval/diagram.bpmn")
    assert diagram.status_code == 200 and diagram.mimetype == "application/xml"
    assert diagram.data == PROCESS_FILES["purchase_approval.bpmn"]
    assert desi.get("/designer/processes/no_such_process").status_code == 404


def test_a_changed_reminder_becomes_version_2_while_a_running_instance_keeps_version_1(studio):
    before = request_purchase(studio)
    desi = signed_in(studio, "desi")
    changed = PROCESS_FILES["purchase_approval.bpmn"].replace(
        REMINDER.encode(), REMINDER.replace("P2D", "P3D").encode(), 1
    )
    assert changed != PROCESS_FILES["purchase_approval.bpmn"]

    response = save_from_modeler(desi, changed)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["deployed"] is True and body["version"] == 2
    # repair_ticket calls purchase_approval (parts to order): it carries the new version with it
    assert body["new_versions"] == {"purchase_approval": 2, "repair_ticket": 2}
    assert versions(studio) == [2, 1]
    assert versions(studio, "lead_to_invoice") == [1]  # the process that does not use it did not change
    assert db.session.get(ProcessInstance, before).process_version == 1
    after = request_purchase(studio)
    assert db.session.get(ProcessInstance, after).process_version == 2
    assert desi.get("/designer/files/purchase_approval.bpmn").data == changed
    deployed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "deployed")).all()
    assert deployed[-1].actor == "desi" and deployed[-1].detail["new_versions"]["purchase_approval"] == 2

    page = desi.page("/designer/")
    block = page.split('data-process="purchase_approval"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'data-version="2" data-running="1" data-live="true"', block)
    assert re.search(r'data-version="1" data-running="1">', block)

    # saving the same diagram again changes nothing
    again = save_from_modeler(desi, changed)
    assert again.status_code == 200 and again.get_json()["deployed"] is False
    assert versions(studio) == [2, 1]


@SQLITE_ONLY
def test_a_gateway_flow_without_condition_is_refused_with_its_element_and_line(studio):
    desi = signed_in(studio, "desi")
    original = PROCESS_FILES["purchase_approval.bpmn"].decode()
    broken = NOT_AUTO.sub(r"\1\2", original)
    assert broken != original
    line = next(
        n
        for n, text in enumerate(broken.splitlines(), 1)
        if 'id="flow_approval_needed_to_request_approved"' in text
    )

    response = save_from_modeler(desi, broken.encode())

    assert response.status_code == 422
    problems = response.get_json()["problems"]
    assert {
        "file": "purchase_approval.bpmn",
        "line": line,
        "element_id": "flow_approval_needed_to_request_approved",
    }.items() <= problems[0].items()
    assert "without a condition" in problems[0]["message"]
    assert versions(studio) == [1]
    assert desi.get("/designer/files/purchase_approval.bpmn").data == PROCESS_FILES["purchase_approval.bpmn"]


@SQLITE_ONLY
def test_a_save_without_the_csrf_token_is_refused(studio):
    desi = signed_in(studio, "desi")
    changed = PROCESS_FILES["purchase_approval.bpmn"].replace(b"P2D", b"P4D", 1)
    response = post_raw(desi, "/designer/processes/purchase_approval/deploy", changed, token=None)
    assert response.status_code == 400
    assert versions(studio) == [1]


def test_a_save_over_a_newer_deployment_is_refused(studio):
    desi = signed_in(studio, "desi")
    opened = desi.get("/designer/processes/purchase_approval/diagram.bpmn").headers["X-File-Sha256"]
    first = PROCESS_FILES["purchase_approval.bpmn"].replace(b"P2D", b"P3D", 1)
    assert save_from_modeler(desi, first).status_code == 200  # someone else's save meanwhile
    token = token_of(desi, "/designer/processes/purchase_approval")
    stale = PROCESS_FILES["purchase_approval.bpmn"].replace(b"P2D", b"P4D", 1)
    response = post_raw(
        desi, "/designer/processes/purchase_approval/deploy", stale, token, **{"X-Base-Sha256": opened}
    )
    assert response.status_code == 409
    assert versions(studio) == [2, 1]


# -- upload and download ----------------------------------------------------------------------------------
@SQLITE_ONLY
def test_uploads_of_modeler_exports_name_every_obstacle(studio):
    desi = signed_in(studio, "desi")
    response = upload(desi, {"modeler_export.bpmn": (FILES / "modeler_export.bpmn").read_bytes()})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for element, words in (
        ("DataStore_crm", "data stores are not supported"),
        ("modeler_export", "is not executable"),
        ("qualify", "2 outgoing sequence flows"),
        ("wait_unset", "timer"),
    ):
        item = re.search(rf'<li data-element-id="{element}">(.*?)</li>', page, re.S)
        assert item and words in item.group(1), (element, page)
        assert re.search(r"<code>modeler_export\.bpmn:\d+</code>", item.group(1))
    decision = upload(desi, {"decision_missing.bpmn": (FILES / "decision_missing.bpmn").read_bytes()})
    assert decision.status_code == 422 and "decision" in decision.get_data(as_text=True)
    assert [d.process_id for d in engine_of(studio).definitions() if d.process_id == "modeler_export"] == []


CAMUNDA_EXPORT = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
  xmlns:modeler="http://camunda.org/schema/modeler/1.0" id="Definitions_0x1" targetNamespace="http://bpmn.io/schema/bpmn"
  exporter="Camunda Modeler" exporterVersion="5.31.0" modeler:executionPlatform="Camunda Platform">
  <bpmn:process id="follow_up_call" name="Follow-up call" isExecutable="true" camunda:historyTimeToLive="180">
    <bpmn:startEvent id="StartEvent_1" name="Order shipped">
      <bpmn:outgoing>Flow_0a</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="Event_wait" name="Three days later">
      <bpmn:incoming>Flow_0a</bpmn:incoming>
      <bpmn:outgoing>Flow_0b</bpmn:outgoing>
      <bpmn:timerEventDefinition id="TimerEventDefinition_0w">
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">P3D</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="Event_done" name="Done"><bpmn:incoming>Flow_0b</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="Flow_0a" sourceRef="StartEvent_1" targetRef="Event_wait" />
    <bpmn:sequenceFlow id="Flow_0b" sourceRef="Event_wait" targetRef="Event_done" />
  </bpmn:process>
</bpmn:definitions>
"""


@SQLITE_ONLY
def test_an_executable_camunda_modeler_export_is_accepted(studio):
    desi = signed_in(studio, "desi")
    response = upload(desi, {"follow_up_call.bpmn": CAMUNDA_EXPORT})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert versions(studio, "follow_up_call") == [1]
    page = desi.page("/designer/")
    assert "follow_up_call version 1" in page and 'data-process="follow_up_call"' in page


@SQLITE_ONLY
def test_hostile_xml_is_refused(studio):
    desi = signed_in(studio, "desi")
    for name in ("xxe.bpmn", "billion_laughs.bpmn"):
        response = upload(desi, {name: (FILES / name).read_bytes()})
        page = response.get_data(as_text=True)
        assert response.status_code == 422, name
        assert "DOCTYPE declarations are not allowed" in page
        assert "root:" not in page
    hostile = (FILES / "xxe.bpmn").read_bytes()
    assert save_from_modeler(desi, hostile).status_code == 422
    assert len(engine_of(studio).definitions()) == 3


def test_a_clean_upload_is_checked_then_deployed(studio):
    desi = signed_in(studio, "desi")
    changed = {"purchase_approval.bpmn": PROCESS_FILES["purchase_approval.bpmn"].replace(b"P2D", b"P3D", 1)}

    checked = upload(desi, changed, action="check")
    assert checked.status_code == 302
    assert "No problems found in purchase_approval.bpmn" in desi.page("/designer/")
    assert versions(studio) == [1]

    deployed = upload(desi, changed)
    assert deployed.status_code == 302
    assert "purchase_approval version 2" in desi.page("/designer/")
    assert versions(studio) == [2, 1]

    refused = upload(desi, {"notes.txt": b"hello"})
    assert refused.status_code == 422 and "Only .bpmn and .dmn files" in refused.get_data(as_text=True)


@SQLITE_ONLY
def test_a_too_large_upload_answers_413(studio):
    desi = signed_in(studio, "desi")
    token = token_of(desi, "/designer/")
    boundary = "designer-test-boundary"
    too_large = b"<x/>" + b" " * studio.config["MAX_CONTENT_LENGTH"]
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; "
            'name="files"; filename="purchase_approval.bpmn"\r\n'
            "Content-Type: application/xml\r\n\r\n"
        ).encode()
        + too_large
        + f"\r\n--{boundary}--\r\n".encode()
    )
    db.session.commit()
    with studio.app_context():  # the body as bytes: the test client would spool a large one to a file
        response = desi.client.post(
            "/designer/upload", data=body, content_type=f"multipart/form-data; boundary={boundary}"
        )
    assert response.status_code == 413
    assert "Too large" in response.get_data(as_text=True)
    assert versions(studio) == [1]


def test_downloads_are_the_deployed_bytes(studio):
    desi = signed_in(studio, "desi")
    changed = PROCESS_FILES["purchase_approval.bpmn"].replace(b"P2D", b"P3D", 1)
    assert save_from_modeler(desi, changed).status_code == 200
    v2, v1 = engine_of(studio).definitions("purchase_approval")

    for url, content, name in (
        ("/designer/files/purchase_approval.bpmn", changed, "purchase_approval.bpmn"),
        (f"/designer/versions/{v2.id}/file", changed, "purchase_approval.bpmn"),
        (
            f"/designer/versions/{v1.id}/file",
            PROCESS_FILES["purchase_approval.bpmn"],
            "purchase_approval.bpmn",
        ),
        (
            "/designer/files/purchase_approval_level.dmn",
            PROCESS_FILES["purchase_approval_level.dmn"],
            "purchase_approval_level.dmn",
        ),
    ):
        response = desi.get(url)
        assert response.status_code == 200, url
        assert response.data == content, url
        assert response.headers["Content-Disposition"] == f"attachment; filename={name}", url
    assert desi.get("/designer/files/nothing.bpmn").status_code == 404
    assert desi.get("/designer/versions/9999/file").status_code == 404


# -- forms --------------------------------------------------------------------------------------------------
def form_text(app: Any, ref: str) -> str:
    return (engine_of(app).forms_dir / ref).read_text(encoding="utf-8")


def save_form(browser: Browser, url: str, text: str) -> Any:
    """Save the form editor at `url` with `text`, as the page opened now would."""
    base = re.search(r'name="base" value="([0-9a-f]{64})"', browser.page(url))
    assert base, url
    return browser.post(url, {"schema": text, "base": base.group(1)})


def test_a_compatible_form_change_is_saved_audited_and_used(studio):
    desi = signed_in(studio, "desi")
    url = "/designer/forms/purchase_approval/approve_manager"
    assert "Approve purchase request" in desi.page(url)
    schema = json.loads(form_text(studio, "purchase_approval/approve_manager.json"))
    schema["properties"]["decision"]["oneOf"].append({"const": "ask", "title": "Ask the requester"})
    schema["properties"]["cost_centre"] = {"type": "string", "title": "Cost centre", "maxLength": 20}
    schema["properties"]["reason"]["title"] = "Your reason"
    engine = engine_of(studio)
    engine.forms.validate("purchase_approval/approve_manager.json", {"decision": "approve"})  # cached now

    response = save_form(desi, url, json.dumps(schema, indent=2))

    assert response.status_code == 302, response.get_data(as_text=True)
    assert json.loads(form_text(studio, "purchase_approval/approve_manager.json")) == schema
    assert (
        not (ROOT / "forms" / "purchase_approval" / "approve_manager.json").read_text().count("cost_centre")
    )
    assert list(engine.forms_dir.glob("purchase_approval/.*")) == []  # no temporary file left
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "form_saved")).one()
    assert event.instance_id is None and event.actor == "desi"
    assert event.detail == {"form": "purchase_approval/approve_manager.json", "by": "desi"}
    # the engine validates with the new form at once (its cache was cleared)
    engine.forms.validate(
        "purchase_approval/approve_manager.json", {"decision": "ask", "cost_centre": "CC-7"}
    )
    assert "Cost centre" in desi.page(url)

    # a save from a page opened before that save is not taken silently
    opened = re.search(r'name="base" value="([0-9a-f]{64})"', desi.page(url)).group(1)
    assert save_form(desi, url, json.dumps({**schema, "title": "Mine"})).status_code == 302
    stale = desi.post(url, {"schema": json.dumps({**schema, "title": "Stale"}), "base": opened})
    assert stale.status_code == 409 and 'id="form-stale"' in stale.get_data(as_text=True)
    assert json.loads(form_text(studio, "purchase_approval/approve_manager.json"))["title"] == "Mine"


@SQLITE_ONLY
def test_a_form_change_that_breaks_running_instances_is_refused(studio):
    desi = signed_in(studio, "desi")
    url = "/designer/forms/purchase_approval/approve_manager"
    before = form_text(studio, "purchase_approval/approve_manager.json")
    current = json.loads(before)

    removed = json.loads(before)
    del removed["properties"]["reason"]
    retyped = json.loads(before)
    retyped["properties"]["reason"]["type"] = "integer"
    fewer_choices = json.loads(before)
    fewer_choices["properties"]["decision"]["oneOf"] = [{"const": "approve", "title": "Approve"}]
    for changed, field, words in (
        (removed, "reason", "removed"),
        (retyped, "reason", "from string to integer"),
        (fewer_choices, "decision", "&#34;reject&#34;"),
    ):
        response = save_form(desi, url, json.dumps(changed))
        page = response.get_data(as_text=True)
        assert response.status_code == 422
        item = re.search(rf'<li data-field="{field}">(.*?)</li>', page, re.S)
        assert item and words in item.group(1), page
    for text, words in (
        ("{not json", "Not valid JSON"),
        ('{"type": "object", "properties": 3}', "not a valid JSON Schema"),
    ):
        response = save_form(desi, url, text)
        assert response.status_code == 422 and words.lower() in response.get_data(as_text=True).lower()
    assert form_text(studio, "purchase_approval/approve_manager.json") == before
    assert json.loads(before) == current
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "form_saved")).all() == []
    assert desi.get("/designer/forms/purchase_approval/nothing").status_code == 404
    assert desi.get("/designer/forms/..%2Fsecrets/x").status_code == 404


@SQLITE_ONLY
def test_the_preview_renders_the_form_as_a_task_page_would(studio):
    desi = signed_in(studio, "desi")
    url = "/designer/forms/purchase_approval/request_purchase"
    token = token_of(desi, url)
    schema = json.loads(form_text(studio, "purchase_approval/request_purchase.json"))
    schema["properties"]["urgent"] = {"type": "boolean", "title": "Urgent <b>now</b>"}

    db.session.commit()
    with studio.app_context():
        response = desi.client.post(
            "/designer/forms/preview", data={"schema": json.dumps(schema)}, headers={"X-CSRFToken": token}
        )
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="lines[0][product]"' in fragment and 'type="checkbox"' in fragment
    assert "Urgent &lt;b&gt;now&lt;/b&gt;" in fragment and "<b>now" not in fragment
    assert "<html" not in fragment

    with studio.app_context():
        refused = desi.client.post(
            "/designer/forms/preview", data={"schema": "[1, 2"}, headers={"X-CSRFToken": token}
        )
    assert refused.status_code == 422 and "Not valid JSON" in refused.get_data(as_text=True)
    with studio.app_context():
        no_token = desi.client.post("/designer/forms/preview", data={"schema": json.dumps(schema)})
    assert no_token.status_code == 400


# -- decision tables ------------------------------------------------------------------------------------
def table_form(page: str) -> dict[str, str]:
    """The fields of the decision table editor as the page fills them in."""
    fields = dict(re.findall(r'<input(?: type="hidden")? name="([^"]+)" value="([^"]*)"', page))
    return {k: v.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", '"') for k, v in fields.items()}


def test_a_decision_table_edit_gives_the_process_using_it_a_new_version(studio):
    running = request_purchase(studio)
    desi = signed_in(studio, "desi")
    url = "/designer/decisions/purchase_approval_level.dmn"
    page = desi.page(url)
    assert "Request amount" in page and "Approval level" in page and "purchase_approval" in page
    fields = table_form(page)
    assert fields["rows"] == "4"  # three rules and an empty row to add one
    assert fields["in-0-0"] == "< 500" and fields["out-1-0"] == '"manager"'
    fields.update({"in-0-0": "< 600", "in-1-0": "600 <= ? < 5000"})
    fields.update({"in-3-0": ">= 100000", "out-3-0": '"board"', "note-3": "Very large: the board"})

    response = desi.post(url, fields)

    assert response.status_code == 302, response.get_data(as_text=True)
    assert versions(studio) == [2, 1]
    assert db.session.get(ProcessInstance, running).process_version == 1
    saved = desi.get("/designer/files/purchase_approval_level.dmn").data.decode()
    assert "&lt; 600" in saved and "purchase_approval_level_rule_1" in saved  # ids kept
    assert saved.count("<rule ") == 4 and '"board"' in saved
    assert db.session.get(ProcessInstance, request_purchase(studio)).process_version == 2

    # deleting a row
    fields = table_form(desi.page(url))
    fields["delete-3"] = "1"
    assert desi.post(url, fields).status_code == 302
    assert desi.get("/designer/files/purchase_approval_level.dmn").data.decode().count("<rule ") == 3
    assert versions(studio) == [3, 2, 1]


@SQLITE_ONLY
def test_a_broken_decision_table_is_shown_with_its_cell_and_nothing_deploys(studio):
    desi = signed_in(studio, "desi")
    url = "/designer/decisions/purchase_approval_level.dmn"
    fields = table_form(desi.page(url))
    fields["in-1-0"] = "500 <= ? <"  # not a condition

    response = desi.post(url, fields)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    row = page.split('data-rule-id="purchase_approval_level_rule_2"', 1)[1].split("</tr>", 1)[0]
    assert 'aria-invalid="true"' in row and re.search(r'class="error">line \d+: input entry', row)
    assert 'value="500 &lt;= ? &lt;"' in row  # what the designer typed stays
    assert versions(studio) == [1]
    assert (
        desi.get("/designer/files/purchase_approval_level.dmn").data
        == PROCESS_FILES["purchase_approval_level.dmn"]
    )

    added = desi.post(url, {**table_form(desi.page(url)), "add_row": "1"})
    assert added.status_code == 200 and table_form(added.get_data(as_text=True))["rows"] == "5"
    assert versions(studio) == [1]
