"""From a lead to a paid invoice, clicked through by the people who do it: sales captures and
qualifies a lead and quotes it with a 20 % discount; the manager finds the quote under
approvals and approves it; order entry, inventory and accounting take it to an invoice; a month
passes (the clock is moved, the timers fire) and the invoice reaches dunning level 2 with a
"call customer" task for accounting; a payment registered on the invoice page closes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from playwright.sync_api import expect

from .conftest import SHOTS

COMPANY = "Harbour Lights Ltd"
LEAD = {
    "Company": COMPANY,
    "Contact person": "Hanna Harbour",
    "E-mail": "hanna@harbour-lights.example",
    "Phone": "+44 117 496 0123",
    "Source": "Web form",
    "Interest": "Ten laptops with docks for the new Bristol office",
    "Estimated value": "12000.00",
}
# 10 x 1,150.00 less 20 % + 10 x 140.00 = 10,600.00 net (manager's approval: 10-20 % below 20,000),
# 12,720.00 with 20 % tax
QUOTE_LINES = {
    "lines[0][product]": "LAP-14",
    "lines[0][qty]": "10",
    "lines[0][unit_price]": "1150.00",
    "lines[0][discount_percent]": "20",
    "lines[0][tax_rate]": "20",
    "lines[1][product]": "DOCK-1",
    "lines[1][qty]": "10",
    "lines[1][unit_price]": "140.00",
    "lines[1][discount_percent]": "0",
    "lines[1][tax_rate]": "20",
}
GROSS = "12,720.00"


def detail(person, label: str, within: str = "dl.facts") -> str:
    """The value a page shows next to `label` (`Quote number` -> `Q-2026-0001`)."""
    return str(person.main.locator(f'{within} > dt:text-is("{label}") + dd').first.inner_text()).strip()


def test_lead_to_paid_invoice(people, live):
    # -- sales: capture, qualify, quote -------------------------------------------------------------
    sally = people("sally")
    sally.start("Capture a lead", "capture-lead")
    expect(sally.page.get_by_role("heading", level=1)).to_have_text("Capture a lead")
    sally.fill(LEAD)
    sally.click(sally.main.get_by_role("button", name="Start"), "lead-started")
    [flash] = sally.flashes()
    started = re.search(r"no\. (\d+) started \((L-\d{4}-\d{4})\)", flash)
    assert started, flash
    instance_id, lead_number = int(started.group(1)), started.group(2)

    qualify = f"Qualify lead {lead_number} ({COMPANY})"
    sally.open_task(qualify, "qualify-lead")
    expect(sally.main).to_contain_text("Hanna Harbour")  # the lead beside the form
    sally.fill({"Outcome": "Qualified: prepare a quote", "Contact note": "Wants ten laptops by December"})
    sally.complete("qualified")
    # completing leads straight to her next task: the quote
    expect(sally.page.get_by_role("heading", level=1)).to_have_text(f"Prepare quote for {COMPANY}")
    sally.fill_named(QUOTE_LINES)
    expect(sally.field("Valid for (days)")).to_have_value("30")  # the defaults are filled in
    expect(sally.field("Payment terms").locator("option:checked")).to_have_text("Net 14 days")
    sally.fill({"Notes for the customer": "Delivery within two weeks of the order."})
    sally.complete("quote-prepared")
    assert f"Done: Prepare quote for {COMPANY}." in sally.flashes()

    sally.open(f"/instances/{instance_id}", "instance-awaiting-approval")
    quote_number = detail(sally, "Quote number")
    assert re.fullmatch(r"Q-\d{4}-\d{4}", quote_number), quote_number
    expect(sally.main).to_contain_text(f"Approve discount on quote {quote_number}")

    # -- the manager approves the discount ----------------------------------------------------------
    mona = people("mona")
    mona.click(mona.page.locator("header").get_by_role("link", name="Approvals"), "approvals")
    row = mona.main.locator("tr[data-task-id]").filter(
        has=mona.page.get_by_role("link", name=quote_number, exact=True)
    )
    expect(row).to_have_count(1)
    expect(row).to_contain_text(re.compile("sally", re.IGNORECASE))  # the requester
    expect(row).to_contain_text(re.compile(r"10,600\.00|12,720\.00"))  # the amount
    task_id = row.get_attribute("data-task-id")
    mona.click(row.get_by_role("link", name=quote_number, exact=True), "approval-detail")
    assert mona.page.url.endswith(f"/approvals/{task_id}")
    expect(mona.main).to_contain_text(quote_number)
    expect(mona.main).to_contain_text(re.compile(r"LAP-14|Laptop 14"))  # the lines
    expect(mona.main).to_contain_text(re.compile(r"\b20(\.0+)?\s?%"))  # the discount
    expect(mona.main).to_contain_text(GROSS)  # the totals
    expect(mona.main.locator('textarea[name="reason"]')).to_have_count(1)
    mona.page.screenshot(path=str(SHOTS / "readme-approval.png"), full_page=True)
    approved = mona.click(mona.main.locator('button[name="decision"][value="approve"]'), "approved")
    assert approved.status == 200, mona.text()
    mona.open("/approvals", "approvals-after")
    expect(mona.main.get_by_role("link", name=quote_number, exact=True)).to_have_count(0)

    # -- the customer accepts; order entry, inventory --------------------------------------------------
    sally.open_task(f"Customer decision on quote {quote_number}", "customer-decision")
    sally.fill({"Customer decision": "Accepted", "Customer reference": "HL-PO-4711"})
    sally.complete("quote-accepted")

    olga = people("olga")
    olga.open_task(f"Sales order from quote {quote_number}", "sales-order")
    olga.fill(
        {
            "Customer reference": "HL-PO-4711",
            "Requested delivery": "2026-11-12",
            "Delivery address": "7 Quay Street, Bristol BS1 4DB",
            "Notes": "Deliveries at the back door",
        }
    )
    olga.complete("order-created")

    ivan = people("ivan")
    ivan.open("/inbox", "inbox")
    [ship] = [t for t in ivan.inbox_titles() if t.startswith("Ship order SO-")]
    ivan.open_task(ship, "ship-order")
    ivan.fill_named(
        {
            "shipped_lines[0][product]": "LAP-14",
            "shipped_lines[0][qty]": "10",
            "shipped_lines[1][product]": "DOCK-1",
            "shipped_lines[1][qty]": "10",
        }
    )
    today = live.clock.current
    ivan.fill({"Carrier": "DHL", "Tracking number": "JD014600004711", "Shipped on": today.date().isoformat()})
    ivan.complete("shipped")

    # the invoice is issued by itself, due in 14 days
    sally.open(f"/instances/{instance_id}", "instance-invoiced")
    invoice_number = detail(sally, "Invoice number")
    assert re.fullmatch(r"INV-\d{4}-\d{4}", invoice_number), invoice_number

    # -- a month passes without payment ---------------------------------------------------------------
    due = datetime.combine(today.date() + timedelta(days=14), time(9), tzinfo=UTC)
    assert live.travel_to(due + timedelta(days=1)) >= 1  # the first reminder
    assert live.travel_to(due + timedelta(days=15)) >= 1  # 15 days overdue: level 2

    alex = people("alex")  # a new day: everyone signs in again
    call = f"Call customer: invoice {invoice_number} is 15 days overdue"
    assert call in alex.inbox_titles(), alex.inbox_titles()
    alex.menu("Documents", "Invoices", "invoices")
    alex.click(alex.main.get_by_role("link", name=invoice_number, exact=True), "invoice-overdue")
    expect(alex.page.get_by_role("heading", level=1)).to_contain_text(invoice_number)
    assert re.match(r"2\b", detail(alex, "Dunning level")), detail(alex, "Dunning level")
    assert detail(alex, "Balance", "dl.totals") == f"€{GROSS}", detail(alex, "Balance", "dl.totals")

    # -- the money arrives: registered on the invoice page ------------------------------------------------
    payment = alex.main.locator("form").filter(has=alex.page.locator('[name="amount"]'))
    payment.locator('[name="amount"]').fill("12720.00")
    payment.locator('[name="paid_on"]').fill(live.clock.current.date().isoformat())
    payment.locator('[name="reference"]').fill("BANK-2026-12-01-17")
    paid = alex.click(payment.locator("button:not([type=button])").last, "payment-registered")
    assert paid.status == 200, alex.text()
    expect(alex.main.locator("#payments")).to_contain_text("BANK-2026-12-01-17")  # the payment is listed
    expect(alex.main.locator("p.meta")).to_contain_text(re.compile(r"\bpaid\b", re.IGNORECASE))
    assert detail(alex, "Balance", "dl.totals") == "€0.00"
    alex.open("/inbox", "inbox-after-payment")
    assert call not in alex.inbox_titles()  # dunning ended at once

    # -- customer service's last call; the process is done ---------------------------------------------
    cora = people("cora")
    [satisfaction] = [t for t in cora.inbox_titles() if t.startswith("Satisfaction call for order SO-")]
    cora.open_task(satisfaction, "satisfaction-call")
    cora.fill({"Comment": "Left a voicemail"})
    cora.complete("satisfaction-done")

    sally = people("sally")
    sally.open(f"/instances/{instance_id}", "instance-completed")
    expect(sally.main.locator("p.meta span").first).to_have_text("Completed")
