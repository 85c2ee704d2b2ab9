"""The README's picture of a busy inbox: the demo's data plus a week of requests and quotes
waiting for a decision, as Dora (director and manager) sees them on a Monday morning.
(The README's approval picture is taken in the lead-to-invoice journey.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from engine import Engine
from engine.business.seed import Office, seed_demo
from webapp.demo import DEMO_USERS

from .conftest import SHOTS, LiveOffice, Person, Shots, serve_office

# (days ago, product, qty, estimated unit price, reason)
REQUESTS = [
    (6, "MON-27", "12", "210.00", "Monitors for the call centre"),
    (4, "PRN-L", "2", "330.00", "Printers for the second floor"),
    (3, "LAP-14", "8", "820.00", "Laptops for the new engineers"),
    (1, "CBL-HDMI", "200", "3.20", "Cables for the meeting rooms"),
]
# (days ago, company, contact, e-mail, product, qty, price, discount %)
QUOTES = [
    (
        5,
        "Baltic Amber Sp. z o.o.",
        "Piotr Zieliński",
        "piotr@baltic-amber.example",
        "MON-27",
        20,
        "320.00",
        "18",
    ),
    (2, "Vilnius Print UAB", "Ona Jonaitė", "ona@vilnius-print.example", "PRN-L", 6, "480.00", "12"),
]


def busy_week(engine: Engine) -> None:
    seed_demo(engine)
    office = Office(engine)
    now = engine.now()
    for days, product, qty, price, reason in REQUESTS:
        with engine.at(now - timedelta(days=days, hours=2)):
            engine.start_process(
                "purchase_approval",
                {
                    "lines": [{"product": product, "qty": int(qty), "unit_price": price}],
                    "suggested_vendor": "Office Supply Hub",
                    "purchase_reason": reason,
                    "needed_by": (now + timedelta(days=10)).date().isoformat(),
                },
                office.actor("paul"),
            )
    for days, company, contact, email, product, qty, price, discount in QUOTES:
        with engine.at(now - timedelta(days=days, hours=5)):
            lead = {
                "company": company,
                "contact_name": contact,
                "email": email,
                "phone": "",
                "source": "referral",
                "interest": "Office equipment",
                "estimated_value": None,
            }
            iid = engine.start_process("lead_to_invoice", lead, office.actor("sally"))
            office.complete(
                iid, "qualify_lead", "sally", {"qualification": "qualified", "contact_note": "Wants a quote"}
            )
            line = {"product": product, "qty": qty, "unit_price": price, "discount_percent": discount}
            office.complete(
                iid,
                "prepare_quote",
                "sally",
                {
                    "lines": [{**line, "tax_rate": "20"}],
                    "validity_days": 30,
                    "payment_terms_days": 30,
                    "currency": "EUR",
                    "quote_notes": "",
                },
            )


@pytest.fixture(scope="module")
def demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveOffice]:
    with serve_office(tmp_path_factory.mktemp("browser-demo"), DEMO_USERS, busy_week) as office:
        yield office


def test_readme_busy_inbox(browser, demo, shots: Shots):
    dora = Person(browser, demo, shots, "dora")
    try:
        dora.sign_in()
        dora.open("/inbox", "inbox")
        rows = dora.main.locator("table.tasks tbody tr")
        assert rows.count() >= 8, dora.inbox_titles()
        expect(dora.main.locator(".tag.overdue").first).to_be_visible()
        dora.page.screenshot(path=str(SHOTS / "readme-inbox.png"), full_page=True)
    finally:
        dora.close(failed=False)
