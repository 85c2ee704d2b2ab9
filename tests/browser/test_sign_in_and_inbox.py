"""The first minutes of a new user: signing in (and failing to), the inbox counts refreshing by
themselves, a form that refuses wrong input next to the field and keeps what was typed, and
signing out for good."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .conftest import PASSWORD

LEAD = {
    "Company": "Kaunas Kava UAB",
    "Contact person": "Rūta Kavaitė",
    "E-mail": "ruta@kaunas-kava.example",
    "Phone": "+370 37 555 0199",
    "Source": "Event or trade fair",
    "Interest": "Espresso machines for three cafés",
    "Estimated value": "4800.00",
}


def test_sign_in_wrong_password_then_right_then_sign_out(people):
    sue = people("sue", sign_in=False)
    sue.open("/inbox", "inbox-signed-out")
    assert "/login" in sue.page.url
    assert "Please sign in to see this page." in sue.flashes()

    sue.page.get_by_label("Username").fill("sue")
    sue.page.get_by_label("Password").fill("not my password")
    refused = sue.click(sue.main.get_by_role("button", name="Sign in"), "wrong-password")
    assert refused.status == 401
    expect(sue.main.get_by_role("alert")).to_have_text("Unknown username or wrong password.")
    expect(sue.page.get_by_label("Username")).to_have_value("sue")  # what was typed is kept
    expect(sue.page.get_by_label("Password")).to_have_value("")  # but never the password

    sue.page.get_by_label("Password").fill(PASSWORD)
    signed_in = sue.click(sue.main.get_by_role("button", name="Sign in"), "signed-in")
    assert signed_in.status == 200 and sue.page.url.endswith("/inbox")  # back where she wanted to go
    assert "Welcome, Sue Seller." in sue.flashes()
    expect(sue.page.get_by_role("heading", level=1)).to_have_text("Inbox")

    session_cookies = sue.context.cookies()
    sue.sign_out()
    assert "/login" in sue.page.url
    assert "You are signed out." in sue.flashes()
    # the old session cookie is worth nothing: the sign-in ended on the server too
    sue.context.add_cookies(session_cookies)
    sue.open("/inbox", "old-cookie")
    assert "/login" in sue.page.url
    expect(sue.page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_inbox_counts_refresh_without_a_reload(people):
    sue = people("sue")
    page = sue.page
    page.clock.install()  # the page's timers run when the test says so, not in 20 s
    sue.open("/inbox", "inbox")
    total = page.locator('header [data-count="total"]')
    mine = page.locator('main [data-count="mine"]')
    before = int(total.inner_text() or 0)
    mine_before = int(mine.inner_text())
    page.evaluate("window.sameDocument = true")

    # meanwhile, on her phone, Sue captures a lead: its qualification task is hers
    phone = people("sue")
    phone.start("Capture a lead", "capture-lead")
    phone.fill({**LEAD, "Company": "Vilnius Vélo UAB"})
    started = phone.click(phone.main.get_by_role("button", name="Start"), "lead-started")
    assert started.status == 200

    with page.expect_response(re.compile(r"/inbox/counts\.json$")) as polled:
        page.clock.run_for(21_000)
    counts = polled.value.json()
    assert polled.value.status == 200 and (counts["total"], counts["mine"]) == (before + 1, mine_before + 1)
    expect(total).to_have_text(str(before + 1))
    expect(mine).to_have_text(str(mine_before + 1))
    assert page.evaluate("window.sameDocument") is True  # no reload happened
    sue.snap("counts-refreshed")


def test_forms_show_errors_next_to_the_fields_and_keep_the_input(people):
    sue = people("sue")
    sue.start("Capture a lead", "capture-lead")
    sue.fill({**LEAD, "E-mail": "ruta at kaunas-kava", "Estimated value": "lots"})
    refused = sue.click(sue.main.get_by_role("button", name="Start"), "lead-refused")
    assert refused.status == 422
    expect(sue.main.get_by_role("alert")).to_contain_text("Please check these fields")
    email = sue.field_box("E-mail")
    expect(email).to_have_class(re.compile(r"\bhas-error\b"))
    expect(email.locator(".error")).to_have_text("Enter an e-mail address like name@example.com.")
    expect(sue.field("E-mail")).to_have_attribute("aria-invalid", "true")
    expect(sue.field_box("Estimated value").locator(".error")).not_to_be_empty()
    for label in ("Company", "Contact person", "Interest", "E-mail", "Estimated value"):
        value = {**LEAD, "E-mail": "ruta at kaunas-kava", "Estimated value": "lots"}[label]
        expect(sue.field(label)).to_have_value(value)
    expect(sue.field("Source").locator("option:checked")).to_have_text(LEAD["Source"])
    expect(sue.field("Company")).not_to_have_attribute("aria-invalid", "true")

    sue.fill({"E-mail": LEAD["E-mail"], "Estimated value": LEAD["Estimated value"]})
    sue.click(sue.main.get_by_role("button", name="Start"), "lead-started")
    [flash] = sue.flashes()
    lead_number = re.search(r"started \((L-\d{4}-\d{4})\)", flash)
    assert lead_number, flash

    # the task page: closing a lead needs the reason
    title = f"Qualify lead {lead_number.group(1)} (Kaunas Kava UAB)"
    sue.open_task(title, "qualify-lead")
    expect(sue.page.get_by_role("heading", level=1)).to_have_text(title)
    sue.fill({"Outcome": "Not qualified: close the lead", "Contact note": "Has a supplier already"})
    refused = sue.click(sue.main.get_by_role("button", name="Complete task"), "qualify-refused")
    assert refused.status == 422
    reason = sue.field_box("Reason for closing")
    expect(reason).to_have_class(re.compile(r"\bhas-error\b"))
    expect(reason.locator(".error")).to_have_text("This field is required.")
    expect(sue.field("Contact note")).to_have_value("Has a supplier already")
    expect(sue.field("Outcome").locator("option:checked")).to_have_text("Not qualified: close the lead")

    sue.fill({"Reason for closing": "Chose a competitor"})
    sue.complete("lead-closed")
    assert f"Done: {title}." in sue.flashes()
    sue.open("/inbox", "inbox-after")
    assert title not in sue.inbox_titles()
