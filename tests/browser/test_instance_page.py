"""The instance page in a real browser: bpmn-js draws the diagram of the instance's own version,
the task waiting for a person is marked active (with the colours of instances.css, despite the
shapes' own inline colours), what is done is marked completed, the boundary timers waiting, and
nothing is blocked by the Content-Security-Policy; the administrator suspends and resumes the
instance from the same page."""

from __future__ import annotations

from playwright.sync_api import expect

from engine import Actor

REQUEST = {
    "lines": [{"product": "LAP-14", "qty": 9, "unit_price": "820.00"}],
    "suggested_vendor": "Central Components GmbH",
    "purchase_reason": "Laptops for the instance page",
    "needed_by": "2026-12-20",
}
PAUL = Actor.of("paul", "purchasing")
ACTIVE_BLUE = "rgb(47, 93, 158)"  # instances.css: .state-active


def shape(person, element_id: str, marker: str):
    """The diagram's shape of a BPMN element carrying a state marker (a class on its <g>)."""
    return person.page.locator(f'#instance-diagram g.djs-element[data-element-id="{element_id}"].{marker}')


def test_the_instance_page_highlights_the_current_task(people, live):
    instance_id = live.run(lambda e: e.start_process("purchase_approval", REQUEST, PAUL))
    assert live.run(lambda e: e.element_states(instance_id))["approve_manager"] == "active"

    dora = people("dora")  # a director sees every instance
    refused: list[str] = []  # what the Content-Security-Policy blocked, as the console reports it
    dora.page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    dora.click(dora.page.locator("header").get_by_role("link", name="Instances", exact=True), "instances")
    row = dora.main.locator(f'tr[data-instance-id="{instance_id}"]')
    expect(row).to_contain_text("Approve purchase request")
    dora.click(row.get_by_role("link", name=str(instance_id), exact=True), "instance")
    expect(dora.page.locator("#instance-diagram")).to_have_attribute("data-state", "ready")
    expect(dora.page.locator("#instance-diagram svg").first).to_be_visible()
    current = shape(dora, "approve_manager", "state-active")
    expect(current).to_have_count(1)
    expect(dora.page.locator("#instance-diagram g.djs-element.state-active")).to_have_count(1)
    expect(shape(dora, "request_purchase", "state-completed")).to_have_count(1)
    expect(shape(dora, "manager_reminder_due", "state-waiting")).to_have_count(1)
    outline = current.locator(".djs-visual > :first-child").evaluate("e => getComputedStyle(e).stroke")
    assert outline == ACTIVE_BLUE
    expect(dora.main.locator(".timers")).to_contain_text("2 days without decision")
    assert "/suspend" not in dora.page.content()  # operations are for administrators
    dora.snap("diagram")
    assert refused == []

    ada = people("ada")
    ada.open(f"/instances/{instance_id}", "instance")
    ada.click(ada.main.get_by_role("button", name="Suspend"), "suspended")
    assert any("is suspended" in f for f in ada.flashes()), ada.flashes()
    expect(ada.main.locator("[data-status]")).to_have_text("Suspended")
    expect(ada.page.locator("#instance-diagram")).to_have_attribute("data-state", "ready")
    ada.click(ada.main.get_by_role("button", name="Resume"), "resumed")
    expect(ada.main.locator("[data-status]")).to_have_text("Running")
    expect(shape(ada, "approve_manager", "state-active")).to_have_count(1)
    ada.snap("diagram-after-resume")
