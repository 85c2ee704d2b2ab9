"""The designer in the browser: desi changes the reminder timer of purchase_approval in the bpmn-js
modeler and deploys it (a new version is live, an instance started before keeps its version);
a broken edit (a gateway flow without its condition) is shown on that flow and deploys nothing."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import expect

from engine import Actor
from engine.models import ProcessInstance

PAUL = Actor.of("paul", "purchasing")
REMINDER = "manager_reminder_due"
NOT_AUTO = "flow_approval_needed_to_request_approved"  # leaves the gateway "Approval needed?"


def live_version(live: Any) -> int:
    return int(live.run(lambda engine: engine.definitions("purchase_approval")[0].version))


def start_request(live: Any) -> tuple[int, int]:
    """A purchase request started through the engine: (instance id, the version it runs on)."""
    data = {
        "lines": [{"product": "LAP-14", "qty": 1, "unit_price": "820.00"}],
        "suggested_vendor": "",
        "purchase_reason": "A laptop for the designer's journey",
        "needed_by": "2026-12-20",
    }

    def start(engine: Any) -> tuple[int, int]:
        instance_id = engine.start_process("purchase_approval", data, PAUL)
        return instance_id, engine.instance(instance_id).process_version

    return live.run(start)


def version_of(live: Any, instance_id: int) -> int:
    return int(live.run(lambda engine: engine.instance(instance_id).process_version))


def open_modeler(person: Any, step: str) -> list[str]:
    """Open purchase_approval in the modeler; returns the console messages and script errors of the page."""
    console: list[str] = []
    person.page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    person.page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
    person.open("/designer/processes/purchase_approval", step)
    expect(person.page.locator('#designer-canvas[data-ready="true"]')).to_have_count(1)
    expect(
        person.page.locator(f'#designer-canvas g.djs-element[data-element-id="{REMINDER}"]')
    ).to_have_count(1)
    person.snap(f"{step}-loaded")
    return console


def save(person: Any) -> None:
    person.page.get_by_role("button", name="Check and deploy").click()
    expect(person.page.get_by_role("button", name="Check and deploy")).to_be_enabled()


def test_a_changed_reminder_is_live_while_an_older_instance_keeps_its_version(people, live):
    older, older_version = start_request(live)
    before = live_version(live)
    assert older_version == before
    desi = people("desi")
    console = open_modeler(desi, "modeler")

    # a real edit through the modeler: the reminder boundary timer waits 3 days instead of 2
    desi.page.evaluate(
        """(id) => {
            const modeler = window.designerModeler;
            const timer = modeler.get("elementRegistry").get(id);
            const definition = timer.businessObject.eventDefinitions[0];
            const duration = modeler.get("moddle").create("bpmn:FormalExpression", { body: "P3D" });
            modeler.get("modeling").updateModdleProperties(timer, definition, { timeDuration: duration });
        }""",
        REMINDER,
    )
    desi.snap("reminder-changed")
    save(desi)
    status = desi.page.locator("#designer-status")
    expect(status).to_contain_text(f"Version {before + 1} is live.")
    expect(desi.page.locator("#designer-live-version")).to_have_text(f"v{before + 1}")
    desi.snap("deployed")

    assert live_version(live) == before + 1
    assert version_of(live, older) == before  # the running instance keeps its version
    _newer, newer_version = start_request(live)
    assert newer_version == before + 1
    source = live.run(lambda engine: engine.current_files()["purchase_approval.bpmn"]).decode()
    assert re.search(rf'id="{REMINDER}".*?<bpmn:timeDuration[^>]*>P3D<', source, re.S)

    desi.open("/designer/", "designer-list")
    versions = desi.main.locator('table[data-process="purchase_approval"]')
    live_row = versions.locator(f'tr[data-version="{before + 1}"]')
    expect(live_row).to_contain_text("live")
    old_row = versions.locator(f'tr[data-version="{before}"]')
    running_on_old = live.run(
        lambda engine: engine.session.query(ProcessInstance)
        .filter_by(process_id="purchase_approval", process_version=before, status="running")
        .count()
    )
    assert running_on_old >= 1
    expect(old_row).to_contain_text(f"{running_on_old} running")
    expect(old_row.locator(".designer-live")).to_have_count(0)
    assert not [m for m in console if "Content Security Policy" in m or m.startswith("uncaught")], console


def test_a_gateway_flow_without_condition_is_shown_on_the_flow_and_nothing_deploys(people, live):
    before = live_version(live)
    desi = people("desi")
    console = open_modeler(desi, "modeler")

    desi.page.evaluate(
        """(id) => {
            const modeler = window.designerModeler;
            const flow = modeler.get("elementRegistry").get(id);
            modeler.get("modeling").updateProperties(flow, { conditionExpression: undefined });
        }""",
        NOT_AUTO,
    )
    save(desi)

    problem = desi.page.locator(f'#designer-problems li[data-element-id="{NOT_AUTO}"]')
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("without a condition")
    expect(problem).to_contain_text(re.compile(r"purchase_approval\.bpmn:\d+"))
    problem.get_by_role("button").click()  # brings the flow into view and selects it
    expect(
        desi.page.locator(f'#designer-canvas g.djs-connection.selected[data-element-id="{NOT_AUTO}"]')
    ).to_have_count(1)
    marked = desi.page.locator(
        f'#designer-canvas g.djs-connection.designer-error[data-element-id="{NOT_AUTO}"]'
    )
    expect(marked).to_have_count(1)
    note = desi.page.locator(
        f'#designer-canvas .djs-overlay .designer-error-note[data-element-id="{NOT_AUTO}"]'
    )
    expect(note).to_be_visible()
    expect(note).to_contain_text("without a condition")
    expect(desi.page.locator("#designer-status")).to_contain_text("Nothing was deployed")
    desi.snap("refused")

    assert live_version(live) == before
    expect(desi.page.locator("#designer-live-version")).to_have_text(f"v{before}")
    assert not [m for m in console if "Content Security Policy" in m or m.startswith("uncaught")], console


def test_the_form_preview_follows_the_schema_as_it_is_typed(people, live):
    desi = people("desi")
    desi.open("/designer/", "designer")
    desi.click(desi.main.get_by_role("link", name="approve_manager.json"), "form-editor")
    preview = desi.page.locator("#designer-preview")
    expect(preview.get_by_label("Decision")).to_be_visible()
    editor = desi.page.locator("#schema")
    schema = json.loads(editor.input_value())
    schema["properties"]["cost_centre"] = {"type": "string", "title": "Cost centre"}

    editor.fill(json.dumps(schema, indent=2))  # typed, not saved: the live office shares forms/

    expect(preview.get_by_label("Cost centre")).to_be_visible()
    desi.snap("preview-with-new-field")
    editor.fill(json.dumps(schema)[:-1])
    expect(preview).to_contain_text("Not valid JSON")
    desi.snap("preview-of-broken-json")

    desi.open("/designer/decisions/purchase_approval_level.dmn", "decision-table")
    rule = desi.main.locator('tr[data-rule-id="purchase_approval_level_rule_2"]')
    expect(rule.get_by_role("textbox", name="Rule 2: Request amount")).to_have_value("500 <= ? < 5000")
