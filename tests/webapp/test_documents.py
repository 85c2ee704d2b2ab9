"""Document pages on the real back office: who may see which documents, lists with filters and
pages, details with lines, totals, related documents, history and process instance; an invoice's
payments and dunning level, and registering payments on it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from engine import Engine
from engine.business.common import Customer
from engine.business.purchasing import PurchaseOrder
from engine.business.sales import Invoice, Payment
from engine.db import db
from engine.users import actor_for
from tests.webapp.test_approvals import (
    complete,
    flashes,
    invoiced,
    quoted,
    requested,
    signed_in,
    staffed,
    task_of,
)

EVIL = "<script>alert('x')</script>"


@pytest.fixture
def web(office: Engine) -> Any:
    return staffed()


def repair_intake(office: Engine, clock: Any, by: str = "rita") -> int:
    return office.start_process(
        "repair_ticket",
        {
            "customer_name": "Northwind Traders",
            "contact_email": "service@northwind.example",
            "contact_phone": "+44 20 7946 0001",
            "product": "Espresso machine X2",
            "product_category": "appliance",
            "serial_number": "X2-0042",
            "fault_description": "Does not heat up",
            "purchase_date": (clock.current - timedelta(days=100)).date().isoformat(),
            "location": "in_house",
            "address": "",
        },
        actor_for(by),
    )


def invoice_row(number: str) -> Invoice:
    db.session.expire_all()
    return db.session.scalars(select(Invoice).where(Invoice.number == number)).one()


# -- who may see what ----------------------------------------------------------------------------------
def test_document_pages_refuse_roles_that_may_not_see_them(web, office, clock):
    _, invoice = invoiced(office, clock)
    own = requested(office, "sam", ("LAP-14", 1, "1150.00"))
    repair_intake(office, clock)
    customer_id = db.session.scalar(select(Customer.id).where(Customer.name == "Northwind Traders"))

    cora = signed_in(web, "cora")  # customer service: repairs, not sales
    for url in ("/documents/quotes", "/documents/quotes/Q-2026-0001", f"/documents/invoices/{invoice}"):
        assert cora.get(url).status_code == 403, url
    assert cora.get("/documents/purchase-requests/PR-2026-0001").status_code == 403
    assert "RT-" in cora.page("/documents/repair-tickets")
    assert cora.get(f"/documents/customers/{customer_id}").status_code == 200

    tom = signed_in(web, "tom")
    assert tom.get("/documents/leads").status_code == 403
    paul = signed_in(web, "paul")
    assert paul.get("/documents/repair-tickets").status_code == 403
    assert paul.get("/documents/invoices").status_code == 403
    assert "PR-2026-0001" in paul.page("/documents/purchase-requests/PR-2026-0001")

    sally = signed_in(web, "sally")  # no purchasing role: her own requests only
    assert "PR-2026-0001" not in sally.page("/documents/purchase-requests")
    assert sally.get("/documents/purchase-requests/PR-2026-0001").status_code == 403
    sam = signed_in(web, "sam")
    assert "PR-2026-0001" in sam.page("/documents/purchase-requests")  # he asked for it
    assert own and sam.get("/documents/purchase-requests/PR-2026-0001").status_code == 200

    ada = signed_in(web, "ada")  # the administrator sees every document
    for url in (
        "/documents/quotes/Q-2026-0001",
        "/documents/repair-tickets",
        f"/documents/invoices/{invoice}",
    ):
        assert ada.get(url).status_code == 200, url

    assert sally.get("/documents/no-such-kind").status_code == 404
    assert sally.get("/documents/quotes/Q-2099-9999").status_code == 404
    assert sally.get("/documents/customers/abc").status_code == 404
    assert sally.get("/documents/quote/Q-2026-0001").location.endswith("/documents/quotes/Q-2026-0001")
    anonymous = web.test_client().get("/documents/quotes")
    assert anonymous.status_code == 302 and "/login" in anonymous.location


def test_script_in_a_customer_or_lead_name_is_shown_escaped(web, office):
    instance_id = quoted(office, discount="15", company=f"{EVIL} Ltd", contact_name=EVIL, interest=EVIL)
    approval = task_of(office, "mona", "approve_discount", instance_id)
    customer_id = db.session.scalar(select(Customer.id).where(Customer.name == f"{EVIL} Ltd"))
    mona = signed_in(web, "mona")

    for url in (
        "/documents/customers",
        f"/documents/customers/{customer_id}",
        "/documents/leads",
        "/documents/leads/L-2026-0001",
        "/documents/quotes",
        "/documents/quotes/Q-2026-0001",
        "/approvals",
        f"/approvals/{approval.id}",
        "/reports/approvals",
    ):
        html = mona.page(url)
        assert EVIL not in html, url
        assert "&lt;script&gt;alert(" in html, url
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, (url, tag)
        assert " style=" not in html and "<style" not in html, url


# -- lists ---------------------------------------------------------------------------------------------
def test_lists_filter_by_status_and_text_and_come_in_pages(web, office, monkeypatch):
    for company in ("Northwind Traders", "Baltic Amber", "Vilnius Print"):
        quoted(office, discount="0", company=company)
    sally = signed_in(web, "sally")

    everything = sally.page("/documents/leads")
    assert all(f"L-2026-000{n}" in everything for n in (1, 2, 3))
    assert 'href="/start/lead_to_invoice"' in everything and "Capture a lead" in everything
    found = sally.page("/documents/leads?q=baltic")
    assert "L-2026-0002" in found and "L-2026-0001" not in found and "L-2026-0003" not in found
    assert "No document matches." in sally.page("/documents/quotes?q=nobody")
    assert "Q-2026-0001" in sally.page("/documents/quotes?status=sent")
    assert "Q-2026-0001" not in sally.page("/documents/quotes?status=accepted")

    monkeypatch.setattr("webapp.documents.PAGE_SIZE", 2)
    first = sally.page("/documents/quotes")
    assert "Q-2026-0003" in first and "Q-2026-0002" in first and "Q-2026-0001" not in first  # newest first
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older
    second = sally.page(older.group(1).replace("&amp;", "&"))
    assert "Q-2026-0001" in second and "Q-2026-0002" not in second and 'rel="next"' not in second


def test_start_links_on_the_lists_of_what_people_start(web, office):
    assert "Open a repair ticket" in signed_in(web, "rita").page("/documents/repair-tickets")
    assert "Request a purchase" in signed_in(web, "sally").page("/documents/purchase-requests")
    assert "Open a repair ticket" not in signed_in(web, "dan").page("/documents/repair-tickets")


# -- details -------------------------------------------------------------------------------------------
def test_detail_pages_link_their_documents_history_and_instance(web, office, clock):
    instance_id, invoice = invoiced(office, clock)
    order = office.instance_data(instance_id)["order"]["number"]
    customer_id = db.session.scalar(select(Customer.id).where(Customer.name == "Northwind Traders"))
    oscar = signed_in(web, "dora")  # director: sees sales documents and every instance

    lead = oscar.page("/documents/leads/L-2026-0001")
    assert "Laptops and docks for a new office" in lead and 'href="/documents/quotes/Q-2026-0001"' in lead
    quote = oscar.page("/documents/quotes/Q-2026-0001")
    assert f'href="/documents/orders/{order}"' in quote and "€15,480.00" in quote
    assert f'href="/instances/{instance_id}"' in quote
    page = oscar.page(f"/documents/orders/{order}")
    assert "PO-77" in page and "DHL" in page and f'href="/documents/invoices/{invoice}"' in page
    assert 'data-action="shipped"' in page or "Shipped" in page  # its history
    customer = oscar.page(f"/documents/customers/{customer_id}")
    for number in ("L-2026-0001", "Q-2026-0001", order, invoice):
        assert number in customer, number


def test_a_repair_ticket_page(web, office, clock):
    repair_intake(office, clock)
    html = signed_in(web, "dan").page("/documents/repair-tickets/RT-2026-0001")
    assert "Espresso machine X2" in html and "X2-0042" in html and "Does not heat up" in html
    assert "Dispatch due" in html
    assert signed_in(web, "sally").get("/documents/repair-tickets/RT-2026-0001").status_code == 403


def test_the_requester_follows_their_purchase_to_its_order(web, office, clock):
    instance_id = requested(office, "sally", ("LAP-14", 1, "1150.00"), reason="A laptop for Nora")
    complete(office, "mona", "approve_manager", instance_id, {"decision": "approve"})
    complete(
        office,
        "paul",
        "select_vendor",
        instance_id,
        {
            "rfq_summary": "Asked two vendors",
            "vendor": "Central Components GmbH",
            "vendor_email": "orders@central-components.example",
            "vendor_quote_reference": "CC-Q-7781",
            "order_lines": [{"product": "LAP-14", "qty": 1, "unit_price": "820.00", "tax_rate": "20"}],
            "expected_date": (clock.current + timedelta(days=7)).date().isoformat(),
        },
    )
    number = db.session.scalar(select(PurchaseOrder.number))
    sally = signed_in(web, "sally")
    request_page = sally.page("/documents/purchase-requests/PR-2026-0001")
    assert (
        "A laptop for Nora" in request_page and f'href="/documents/purchase-orders/{number}"' in request_page
    )
    assert 'data-decision="approve"' in request_page  # the manager's decision beside it
    order_page = sally.page(f"/documents/purchase-orders/{number}")
    assert "Central Components GmbH" in order_page and "€984.00" in order_page
    assert number in sally.page("/documents/purchase-orders")  # her own only
    assert signed_in(web, "alex").get(f"/documents/purchase-orders/{number}").status_code == 200


# -- invoices and payments -------------------------------------------------------------------------------
def overdue_to_level_2(office: Engine, clock: Any, number: str) -> None:
    due = invoice_row(number).due_date
    for days in (1, 15):
        clock.current = clock.current.replace(year=due.year, month=due.month, day=due.day) + timedelta(
            days=days
        )
        office.fire_due_timers(clock.current)


def test_the_invoice_page_shows_payments_and_the_dunning_level(web, office, clock):
    _, number = invoiced(office, clock)
    overdue_to_level_2(office, clock, number)
    alex = signed_in(web, "alex")  # signs in on the day

    html = alex.page(f"/documents/invoices/{number}")
    assert 'data-level="2"' in html and "15 days overdue" in html
    assert "€15,480.00" in html and "No payment yet." in html
    assert 'name="amount"' in html and 'name="paid_on"' in html and 'name="reference"' in html
    assert "Payment reminder" in html  # the dunning letters in its history
    listing = alex.page("/documents/invoices?status=open")
    assert number in listing and "overdue" in listing


def test_registering_a_payment_in_part_then_in_full(web, office, clock):
    _, number = invoiced(office, clock)
    url = f"/documents/invoices/{number}/payments"
    form = f"/documents/invoices/{number}"
    alex = signed_in(web, "alex")

    empty = alex.post(url, {"amount": "", "paid_on": "2026-11-20", "reference": "BANK-1"}, form_url=form)
    assert empty.status_code == 422
    assert re.search(r'id="pay-amount-error">Enter the amount received', empty.get_data(as_text=True))
    too_much = alex.post(
        url, {"amount": "20000", "paid_on": "2026-11-20", "reference": "BANK-1"}, form_url=form
    )
    assert too_much.status_code == 422
    html = too_much.get_data(as_text=True)
    assert re.search(r'id="pay-amount-error">More than the open balance of €15,480.00', html)
    assert 'value="BANK-1"' in html  # the input is kept
    no_reference = alex.post(url, {"amount": "10", "paid_on": "2026-11-20", "reference": ""}, form_url=form)
    assert no_reference.status_code == 422 and 'id="pay-reference-error"' in no_reference.get_data(
        as_text=True
    )
    assert db.session.scalar(select(Payment.id)) is None

    part = alex.post(
        url, {"amount": "5 480,00", "paid_on": "2026-11-20", "reference": "BANK-1"}, form_url=form
    )
    assert part.status_code == 302 and part.location.endswith(form)
    page = alex.page(form)
    assert f"€5,480.00 booked on {number}. Still open: €10,000.00." in flashes(page)
    assert "BANK-1" in page and invoice_row(number).status == "open"

    rest = alex.post(
        url, {"amount": "10000.00", "paid_on": "2026-11-21", "reference": "BANK-2"}, form_url=form
    )
    assert rest.status_code == 302
    page = alex.page(form)
    assert f"€10,000.00 booked on {number}. The invoice is paid in full." in flashes(page)
    assert invoice_row(number).status == "paid" and "BANK-2" in page
    assert 'name="amount"' not in page  # nothing left to pay

    again = alex.post(
        url, {"amount": "1.00", "paid_on": "2026-11-22", "reference": "BANK-3"}, form_url="/inbox"
    )
    assert again.status_code == 409
    assert "is not waiting for a payment: it is paid" in again.get_data(as_text=True)

    sally = signed_in(web, "sally")  # sees invoices, books no money
    assert 'name="amount"' not in sally.page(form)
    assert (
        sally.post(
            url, {"amount": "1", "paid_on": "2026-11-22", "reference": "X"}, form_url="/inbox"
        ).status_code
        == 403
    )
