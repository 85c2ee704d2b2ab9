"""Approvals in the web app on the real back office (processes/ and forms/ deployed): the queue of
documents awaiting a manager's or director's decision, the document beside the decision,
rejection with a mandatory reason, four-eyes, and bulk approval with a result per document.

The helpers here drive the real processes the way tests/business does; the document and report
tests use them too."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from engine import Engine
from engine.business.common import Product, history
from engine.business.sales import Invoice, Quote
from engine.db import db
from engine.users import actor_for, add_user
from tests.webapp.conftest import PASSWORD_HASH, PEOPLE, Browser

# the personas of tests/webapp/conftest.py, and the people who take a sale to its invoice
STAFF = [
    *PEOPLE,
    ("olga", ["order_entry"], "Olga Orders"),
    ("ivan", ["inventory"], "Ivan Inventory"),
    ("cora", ["customer_service"], "Cora Service"),
    ("tom", ["technician"], "Tom Technician"),
    ("dan", ["dispatcher"], "Dan Dispatch"),
    ("rita", ["receptionist"], "Rita Reception"),
    ("paul", ["purchasing"], "Paul Purchasing"),
]
LEAD = {
    "company": "Northwind Traders",
    "contact_name": "Nora North",
    "email": "nora@northwind.example",
    "phone": "+44 20 7946 0001",
    "source": "web_form",
    "interest": "Laptops and docks for a new office",
    "estimated_value": "12000.00",
}
ORDER = {
    "customer_reference": "PO-77",
    "requested_delivery_date": "2026-11-10",
    "delivery_address": "1 Harbour Road, London",
    "order_notes": "",
}


@pytest.fixture
def web(office: Engine) -> Any:
    return staffed()


def staffed() -> Any:
    """The app of the `office` fixture with its staff (signing in with PASSWORD) and a catalogue."""
    for username, roles, name in STAFF:
        user = add_user(username, roles, display_name=name, email=f"{username}@example.com")
        user.password_hash = PASSWORD_HASH
    db.session.add_all(
        [
            Product(
                code="LAP-14", name='Laptop 14"', unit_price=Decimal("1150"), purchase_price=Decimal("820")
            ),
            Product(
                code="DOCK-1", name="USB-C dock", unit_price=Decimal("140"), purchase_price=Decimal("85")
            ),
            Product(
                code="FAN-80", name="Cooling fan", unit_price=Decimal("18"), purchase_price=Decimal("7.5")
            ),
        ]
    )
    db.session.commit()
    return current_app._get_current_object()  # type: ignore[attr-defined]


def signed_in(app: Any, username: str) -> Browser:
    browser = Browser(app)
    response = browser.login(username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return browser


# -- driving the processes -----------------------------------------------------------------------------
def task_of(office: Engine, username: str, spec_id: str, instance_id: int) -> Any:
    found = [
        t
        for t in office.tasks_for(actor_for(username), limit=500).tasks
        if t.spec_id == spec_id and t.instance_id == instance_id
    ]
    assert len(found) == 1, (username, spec_id, [t.spec_id for t in found])
    return found[0]


def complete(office: Engine, username: str, spec_id: str, instance_id: int, data: dict[str, Any]) -> Any:
    task = task_of(office, username, spec_id, instance_id)
    office.complete_task(task.id, actor_for(username), data)
    return task


def quote_lines(discount: str = "0") -> list[dict[str, Any]]:
    return [
        {
            "product": "LAP-14",
            "qty": 10,
            "unit_price": "1150.00",
            "discount_percent": discount,
            "tax_rate": "20",
        },
        {"product": "DOCK-1", "qty": 10, "unit_price": "140.00", "discount_percent": "0", "tax_rate": "20"},
    ]


def quoted(office: Engine, seller: str = "sally", discount: str = "15", **lead: Any) -> int:
    """A lead captured and qualified by `seller`, quoted with `discount` %; returns the instance."""
    instance_id = office.start_process("lead_to_invoice", {**LEAD, **lead}, actor_for(seller))
    complete(
        office, seller, "qualify_lead", instance_id, {"qualification": "qualified", "contact_note": "Call"}
    )
    complete(
        office,
        seller,
        "prepare_quote",
        instance_id,
        {
            "lines": quote_lines(discount),
            "validity_days": 30,
            "payment_terms_days": 14,
            "currency": "EUR",
            "quote_notes": "Delivery within two weeks.",
        },
    )
    return instance_id


def invoiced(office: Engine, clock: Any, **lead: Any) -> tuple[int, str]:
    """A sale without discount taken to its invoice; returns (instance, invoice number)."""
    instance_id = quoted(office, discount="0", **lead)
    complete(office, "sally", "record_customer_decision", instance_id, {"customer_decision": "accepted"})
    complete(office, "olga", "create_sales_order", instance_id, ORDER)
    complete(
        office,
        "ivan",
        "ship_order",
        instance_id,
        {
            "shipped_lines": [{"product": "LAP-14", "qty": 10}, {"product": "DOCK-1", "qty": 10}],
            "carrier": "DHL",
            "tracking_number": "JD0001",
            "shipped_on": clock.current.date().isoformat(),
        },
    )
    return instance_id, office.instance_data(instance_id)["invoice_number"]


def requested(
    office: Engine, requester: str, *lines: tuple[str, int, str], reason: str = "Spare parts"
) -> int:
    return office.start_process(
        "purchase_approval",
        {
            "lines": [{"product": p, "qty": q, "unit_price": price} for p, q, price in lines],
            "suggested_vendor": "",
            "purchase_reason": reason,
            "needed_by": "2026-11-20",
        },
        actor_for(requester),
    )


def the_quote(instance_id: int) -> Quote:
    db.session.expire_all()
    return db.session.scalars(select(Quote).where(Quote.instance_id == instance_id)).one()


def row_of(html: str, task_id: int) -> str:
    match = re.search(rf'<tr data-task-id="{task_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row for task {task_id}"
    return match.group(1)


def flashes(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", m) for m in re.findall(r'<li class="flash flash-\w+">([^<]*)</li>', html)]


# -- the queue -----------------------------------------------------------------------------------------
def test_queue_shows_a_quote_awaiting_discount_approval(web, office):
    instance_id = quoted(office, discount="15")
    approval = task_of(office, "mona", "approve_discount", instance_id)
    mona = signed_in(web, "mona")

    html = mona.page("/approvals")
    row = row_of(html, approval.id)
    assert f'<a href="/approvals/{approval.id}" class="task-title">Q-2026-0001</a>' in row
    assert f'<input type="checkbox" name="task_ids" value="{approval.id}">' in row
    assert "€13,410.00" in row  # 10 x 1150 x 0.85 + 10 x 140 = 11,175.00 net, 20 % tax
    assert "Sally Sales" in row and "Northwind Traders" in row
    assert '<button name="bulk" value="approve">' in html
    assert 'href="/approvals"' in mona.page("/inbox")  # in the menu

    assert signed_in(web, "sally").get("/approvals").status_code == 403
    assert signed_in(web, "alex").get(f"/approvals/{approval.id}").status_code == 403


def test_the_approval_page_shows_the_document_and_approves(web, office):
    instance_id = quoted(office, discount="15")
    approval = task_of(office, "mona", "approve_discount", instance_id)
    mona = signed_in(web, "mona")

    html = mona.page(f"/approvals/{approval.id}")
    assert "LAP-14" in html and "DOCK-1" in html  # the lines
    assert "15 %" in html  # the discount
    assert "Sally Sales" in html  # the author
    assert '<textarea name="reason"' in html
    assert '<button name="decision" value="approve">' in html
    assert '<button name="decision" value="reject">' in html

    response = mona.post(f"/approvals/{approval.id}", {"decision": "approve", "reason": "Key account"})
    assert response.status_code == 302 and response.location.endswith("/approvals")
    assert office.task(approval.id).status == "completed"
    assert the_quote(instance_id).status == "sent"
    assert "Q-2026-0001: approved." in flashes(mona.page("/approvals"))
    again = mona.post(f"/approvals/{approval.id}", {"decision": "approve"})
    assert again.status_code == 409 and "already decided by Mona Manager" in again.get_data(as_text=True)


def test_rejecting_without_a_reason_is_refused_beside_the_field(web, office):
    instance_id = quoted(office, discount="15")
    approval = task_of(office, "mona", "approve_discount", instance_id)
    mona = signed_in(web, "mona")

    response = mona.post(f"/approvals/{approval.id}", {"decision": "reject", "reason": "  "})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'<p class="error" id="reason-error">Give the reason for the rejection', html)
    assert 'aria-invalid="true"' in html and '<button name="decision" value="reject">' in html
    assert office.task(approval.id).status == "open"

    too_short = mona.post(f"/approvals/{approval.id}", {"decision": "reject", "reason": "no"})
    assert too_short.status_code == 422  # the form's own rule (at least 3 characters), from the engine
    assert "at least 3 characters" in too_short.get_data(as_text=True)
    assert office.task(approval.id).status == "open"


def test_rejecting_with_a_reason_sends_the_quote_back_to_sales(web, office):
    instance_id = quoted(office, discount="15")
    approval = task_of(office, "mona", "approve_discount", instance_id)
    mona = signed_in(web, "mona")

    response = mona.post(
        f"/approvals/{approval.id}", {"decision": "reject", "reason": "Max 10 % this quarter"}
    )
    assert response.status_code == 302
    assert "Q-2026-0001: rejected and sent back with your reason." in flashes(mona.page("/approvals"))
    revise = task_of(office, "sally", "prepare_quote", instance_id)  # back to sales
    assert revise.status in ("open", "claimed")

    # the reason is beside the quote at once (from the decision), and sales sees it there
    sally = signed_in(web, "sally")
    page = sally.page("/documents/quotes/Q-2026-0001")
    assert "Max 10 % this quarter" in page and 'data-decision="reject"' in page

    # revised: the rejection with its reason is in the quote's own history
    complete(
        office,
        "sally",
        "prepare_quote",
        instance_id,
        {
            "lines": quote_lines("10"),
            "validity_days": 30,
            "payment_terms_days": 14,
            "currency": "EUR",
            "quote_notes": "Revised",
        },
    )
    quote = the_quote(instance_id)
    rejected = [e for e in history("quote", quote.id) if e.action == "discount_rejected"]
    assert [(e.actor, e.detail["reason"]) for e in rejected] == [("mona", "Max 10 % this quarter")]
    page = sally.page("/documents/quotes/Q-2026-0001")
    assert "Discount rejected" in page and "Revision 1" in page  # earlier lines kept


def test_a_rejected_purchase_request_goes_back_to_its_requester(web, office):
    instance_id = requested(office, "sally", ("LAP-14", 1, "1150.00"))
    approval = task_of(office, "mona", "approve_manager", instance_id)
    mona = signed_in(web, "mona")
    assert (
        signed_in(web, "alex").post(f"/approvals/{approval.id}", {"decision": "approve"}).status_code == 403
    )

    response = mona.post(f"/approvals/{approval.id}", {"decision": "reject", "reason": "Use the spare one"})
    assert response.status_code == 302
    assert task_of(office, "sally", "revise_request", instance_id).status in ("open", "claimed")
    page = signed_in(web, "sally").page("/documents/purchase-requests/PR-2026-0001")
    assert "Use the spare one" in page and 'data-action="rejected"' in page  # in its history at once


# -- four-eyes -----------------------------------------------------------------------------------------
def test_the_requester_cannot_approve_their_own_purchase_request(web, office):
    instance_id = requested(office, "sam", ("LAP-14", 1, "1150.00"), reason="A laptop for the new colleague")
    approval = task_of(office, "mona", "approve_manager", instance_id)
    sam = signed_in(web, "sam")  # sales and manager: he asked, so he may not decide

    assert f'data-task-id="{approval.id}"' not in sam.page("/approvals")
    html = sam.page(f"/approvals/{approval.id}")
    assert "A laptop for the new colleague" in html  # he sees his document
    assert 'name="decision"' not in html and "four-eyes" in html
    response = sam.post(f"/approvals/{approval.id}", {"decision": "approve"}, form_url="/approvals")
    assert response.status_code == 403
    assert office.task(approval.id).status == "open"

    mona = signed_in(web, "mona")
    assert mona.post(f"/approvals/{approval.id}", {"decision": "approve"}).status_code == 302
    assert office.task(approval.id).status == "completed"


def test_bulk_approval_reports_each_document(web, office):
    own = requested(office, "sam", ("LAP-14", 1, "1150.00"))
    refused = task_of(office, "mona", "approve_manager", own)
    quote = quoted(office, discount="15")
    approved = task_of(office, "mona", "approve_discount", quote)
    sam = signed_in(web, "sam")

    queue = sam.page("/approvals")
    assert f'value="{approved.id}"' in queue and f'value="{refused.id}"' not in queue
    response = sam.post(
        "/approvals",
        {"bulk": "approve", "task_ids": [str(refused.id), str(approved.id)]},
        form_url="/approvals",
    )
    assert response.status_code == 302
    messages = flashes(sam.page("/approvals"))
    assert "Q-2026-0001: approved." in messages
    assert any(m.startswith("PR-2026-0001: not approved — the four-eyes rule excludes you") for m in messages)
    assert office.task(approved.id).status == "completed"
    assert office.task(refused.id).status == "open"

    nothing = sam.post("/approvals", {"bulk": "approve"})
    assert nothing.status_code == 302
    assert sam.post("/approvals", {"bulk": "approve", "task_ids": "x"}).status_code == 400


def test_a_purchase_above_5000_goes_to_the_director_after_the_manager(web, office):
    instance_id = requested(office, "sally", ("LAP-14", 5, "1150.00"))
    first = task_of(office, "mona", "approve_manager", instance_id)
    mona = signed_in(web, "mona")
    assert (
        mona.post(f"/approvals/{first.id}", {"decision": "approve", "reason": "Budgeted"}).status_code == 302
    )

    second = task_of(office, "dora", "approve_director", instance_id)
    assert f'data-task-id="{second.id}"' not in mona.page("/approvals")  # the director's decision
    assert mona.get(f"/approvals/{second.id}").status_code == 404
    html = signed_in(web, "dora").page(f"/approvals/{second.id}")
    assert "Budgeted" in html and "Mona Manager" in html  # the earlier decision and its comment
    assert "€5,750.00" in html


def test_an_overdue_invoice_escalation_is_decided_on_its_task_page(web, office, clock):
    _, number = invoiced(office, clock)
    due = db.session.scalar(select(Invoice.due_date).where(Invoice.number == number))
    for days in (1, 15):
        clock.current = clock.current.replace(year=due.year, month=due.month, day=due.day) + timedelta(
            days=days
        )
        office.fire_due_timers(clock.current)
    call = next(t for t in office.tasks_for(actor_for("alex")).tasks if t.spec_id == "call_customer")
    office.complete_task(
        call.id, actor_for("alex"), {"call_outcome": "unreachable", "call_note": "Voicemail"}
    )
    clock.current += timedelta(days=15)
    office.fire_due_timers(clock.current)
    escalation = next(
        t for t in office.tasks_for(actor_for("mona")).tasks if t.spec_id == "escalate_overdue_invoice"
    )

    mona = signed_in(web, "mona")
    row = row_of(mona.page("/approvals"), escalation.id)
    assert f'href="/approvals/{escalation.id}" class="task-title">{number}</a>' in row
    assert f'href="/tasks/{escalation.id}"' in row and 'name="task_ids"' not in row
    html = mona.page(f"/approvals/{escalation.id}")
    assert f'href="/tasks/{escalation.id}"' in html and 'name="decision"' not in html
    assert "Dunning level" in html
    assert mona.post(f"/approvals/{escalation.id}", {"decision": "approve"}).status_code == 404


def test_the_inbox_row_says_whom_and_how_much(web, office):
    instance_id = quoted(office, discount="15")
    approval = task_of(office, "mona", "approve_discount", instance_id)
    html = signed_in(web, "mona").page("/inbox")
    row = html[html.index(f"/tasks/{approval.id}") :]
    row = row[: row.index("</tr>")]
    assert "Northwind Traders" in row and "€13,410.00" in row
