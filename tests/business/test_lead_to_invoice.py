"""The `lead_to_invoice` process driven as people use it: start forms, inbox tasks completed
with form data, timers fired by a fast-forwarded clock and messages from outside, on SQLite
and PostgreSQL, checking the documents it leaves behind."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from engine import Actor, Forbidden, InvalidData, NotWaiting
from engine.business.common import Customer, Product, history
from engine.business.mail import OutboxMail
from engine.business.sales import (
    Delivery,
    Invoice,
    Lead,
    LeadContactLog,
    Payment,
    Quote,
    SalesOrder,
    aging_report,
    open_quotes_awaiting_discount_approval,
    sales_funnel,
)
from engine.db import db
from engine.models import ProcessInstance
from engine.users import add_user

SALLY = Actor.of("sally", "sales")
SAM = Actor.of("sam", "sales")
MAX = Actor.of("max", "sales", "manager")  # sells and approves: never his own quotes
MARK = Actor.of("mark", "marketing")
MONA = Actor.of("mona", "manager")
DIANA = Actor.of("diana", "director", "manager")
OLGA = Actor.of("olga", "order_entry")
IVAN = Actor.of("ivan", "inventory")
CARA = Actor.of("cara", "customer_service")
ALEX = Actor.of("alex", "accounting")
STAFF = [SALLY, SAM, MAX, MARK, MONA, DIANA, OLGA, IVAN, CARA, ALEX]

LEAD_FORM = {
    "company": "Northwind Traders",
    "contact_name": "Nora North",
    "email": "nora@northwind.example",
    "phone": "+44 20 7946 0001",
    "source": "web_form",
    "interest": "Laptops and docks for a new office",
    "estimated_value": "12000.00",
}


@pytest.fixture(autouse=True)
def staff_and_catalogue(office):
    for actor in STAFF:
        add_user(actor.username, sorted(actor.roles), email=f"{actor.username}@office.example")
    db.session.add_all(
        [
            Product(
                code="LAP-14", name='Laptop 14"', unit_price=Decimal("1150.00"), purchase_price=Decimal("820")
            ),
            Product(
                code="DOCK-1", name="USB-C dock", unit_price=Decimal("140.00"), purchase_price=Decimal("85")
            ),
        ]
    )
    db.session.commit()


# -- how people work ---------------------------------------------------------------------------
def open_tasks(office, actor):
    return sorted(t.spec_id for t in office.tasks_for(actor).tasks)


def find_task(office, actor, spec_id):
    found = [t for t in office.tasks_for(actor).tasks if t.spec_id == spec_id]
    assert found, f"{actor.username} has no {spec_id} task; inbox: {open_tasks(office, actor)}"
    return found[0]


def complete(office, actor, spec_id, data):
    task = find_task(office, actor, spec_id)
    office.complete_task(task.id, actor, data)
    return task


def status_of(instance_id):
    db.session.expire_all()
    return db.session.get(ProcessInstance, instance_id).status


def quote_lines(discount="0", qty_laptops=10):
    return [
        {
            "product": "LAP-14",
            "qty": qty_laptops,
            "unit_price": "1150.00",
            "discount_percent": discount,
            "tax_rate": "20",
        },
        {"product": "DOCK-1", "qty": 10, "unit_price": "140.00", "discount_percent": "0", "tax_rate": "20"},
    ]


ORDER_FORM = {
    "customer_reference": "PO-77",
    "requested_delivery_date": "2026-11-10",
    "delivery_address": "1 Harbour Road, London",
    "order_notes": "",
}


def prepare_quote(office, actor, lines, **overrides):
    data = {
        "lines": lines,
        "validity_days": 30,
        "payment_terms_days": 14,
        "currency": "EUR",
        "quote_notes": "Delivery within two weeks.",
        **overrides,
    }
    complete(office, actor, "prepare_quote", data)


def the(model, **filters):
    db.session.expire_all()
    return db.session.scalars(select(model).filter_by(**filters)).one()


def mails(kind):
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMail).where(OutboxMail.kind == kind).order_by(OutboxMail.id)))


def qualified_lead(office, seller=SALLY):
    instance_id = office.start_process("lead_to_invoice", LEAD_FORM, seller)
    complete(
        office, seller, "qualify_lead", {"qualification": "qualified", "contact_note": "Wants 10 laptops"}
    )
    return instance_id


def sent_quote(office, seller=SALLY, **quote):
    instance_id = qualified_lead(office, seller)
    prepare_quote(office, seller, quote_lines(), **quote)
    return instance_id


def invoiced_order(office, clock, **quote):
    """Quote accepted, order shipped in full, invoice issued; returns (instance, invoice number)."""
    instance_id = sent_quote(office, **quote)
    complete(office, SALLY, "record_customer_decision", {"customer_decision": "accepted"})
    complete(office, OLGA, "create_sales_order", ORDER_FORM)
    complete(
        office,
        IVAN,
        "ship_order",
        {
            "shipped_lines": [{"product": "LAP-14", "qty": 10}, {"product": "DOCK-1", "qty": 10}],
            "carrier": "DHL",
            "tracking_number": "JD0001",
            "shipped_on": clock.current.date().isoformat(),
        },
    )
    return instance_id, office.instance_data(instance_id)["invoice_number"]


def pay(office, invoice_number, amount, reference):
    return office.correlate_message(
        "payment_received",
        {"invoice_number": invoice_number},
        {"invoice_number": invoice_number, "amount": amount, "paid_on": "2026-11-20", "reference": reference},
    )


def fire_at(office, clock, when):
    clock.current = when
    return office.fire_due_timers(clock.current)


def midnight(day: date, clock):
    return clock.current.replace(year=day.year, month=day.month, day=day.day, hour=0, minute=0, second=1)


# -- the happy path ----------------------------------------------------------------------------
def test_lead_to_paid_invoice_reloading_every_step(office, clock):
    """Every step reloads the instance from the database (cache cleared): nothing lives only in
    memory between steps."""

    def step():
        office._cache.clear()
        db.session.expire_all()

    instance_id = office.start_process("lead_to_invoice", LEAD_FORM, SALLY)
    step()
    lead = the(Lead, instance_id=instance_id)
    assert (lead.status, lead.owner, lead.customer.name) == ("open", "sally", "Northwind Traders")
    assert lead.number == "L-2026-0001"
    task = find_task(office, SALLY, "qualify_lead")
    assert task.assignee == "sally" and task.title == "Qualify lead L-2026-0001 (Northwind Traders)"

    office.complete_task(task.id, SALLY, {"qualification": "qualified", "contact_note": "Wants 10 laptops"})
    step()
    prepare_quote(office, SALLY, quote_lines())
    step()
    quote = the(Quote, instance_id=instance_id)
    # 10 x 1150 + 10 x 140 = 12,900.00 net, 20 % tax
    assert (quote.number, quote.status, quote.revision) == ("Q-2026-0001", "sent", 1)
    assert (quote.total_net, quote.total_tax, quote.total_gross) == (
        Decimal("12900.00"),
        Decimal("2580.00"),
        Decimal("15480.00"),
    )
    assert quote.author == "sally" and quote.valid_until == date(2026, 12, 2)
    [quote_mail] = mails("quote")
    assert quote_mail.to_address == "nora@northwind.example" and "Q-2026-0001" in quote_mail.body
    assert the(Lead, instance_id=instance_id).status == "qualified"

    complete(
        office,
        SALLY,
        "record_customer_decision",
        {"customer_decision": "accepted", "customer_reference": "PO-77"},
    )
    step()
    assert open_tasks(office, SALLY) == []
    complete(
        office,
        OLGA,
        "create_sales_order",
        {
            "customer_reference": "PO-77",
            "requested_delivery_date": "2026-11-10",
            "delivery_address": "1 Harbour Road, London",
            "order_notes": "Ring the bell twice",
        },
    )
    step()
    order = the(SalesOrder, instance_id=instance_id)
    assert (order.number, order.status, order.total_gross, order.payment_terms_days) == (
        "SO-2026-0001",
        "open",
        Decimal("15480.00"),
        14,
    )
    assert the(Quote, instance_id=instance_id).status == "accepted"
    assert the(Lead, instance_id=instance_id).status == "converted"

    # first the laptops only: a partial delivery, the ship task comes back
    ship = {"carrier": "DHL", "tracking_number": "JD0001", "shipped_on": "2026-11-03"}
    complete(office, IVAN, "ship_order", {"shipped_lines": [{"product": "LAP-14", "qty": 10}], **ship})
    step()
    assert the(SalesOrder, instance_id=instance_id).status == "partially_delivered"
    assert office.instance_data(instance_id)["delivery"]["complete"] is False
    with pytest.raises(InvalidData, match="qty"):  # the form refuses a negative quantity
        complete(office, IVAN, "ship_order", {"shipped_lines": [{"product": "DOCK-1", "qty": -1}], **ship})
    complete(office, IVAN, "ship_order", {"shipped_lines": [{"product": "DOCK-1", "qty": 10}], **ship})
    step()
    assert db.session.scalar(select(func.count(Delivery.id))) == 2

    invoice = the(Invoice, instance_id=instance_id)
    assert (invoice.number, invoice.status, invoice.kind) == ("INV-2026-0001", "open", "goods")
    assert invoice.issue_date == date(2026, 11, 2) and invoice.due_date == date(2026, 11, 16)  # net 14
    assert (invoice.total, invoice.balance) == (Decimal("15480.00"), Decimal("15480.00"))
    assert [(line.product, line.qty) for line in invoice.lines] == [
        ("LAP-14", Decimal("10.000")),
        ("DOCK-1", Decimal("10.000")),
    ]
    assert the(SalesOrder, instance_id=instance_id).status == "invoiced"
    [invoice_mail] = mails("invoice")
    assert invoice_mail.to_address == "nora@northwind.example"

    # satisfaction call 3 days after the delivery
    assert "satisfaction_call" not in open_tasks(office, CARA)
    office.fire_due_timers(clock.advance(days=3, minutes=1))
    step()
    complete(office, CARA, "satisfaction_call", {"reached": True, "satisfaction": 5})
    step()

    assert pay(office, "INV-2026-0001", "15480.00", "BANK-1") == [instance_id]
    step()
    invoice = the(Invoice, instance_id=instance_id)
    assert (invoice.status, invoice.balance, invoice.paid_on) == ("paid", Decimal("0.00"), date(2026, 11, 20))
    assert the(Payment, invoice_id=invoice.id).amount == Decimal("15480.00")
    assert status_of(instance_id) == "completed"
    assert office.incidents(instance_id) == []
    assert mails("dunning") == []

    actions = [e.action for e in history("invoice", invoice.id)]
    assert actions == ["issued", "paid"]
    assert [e.action for e in history("quote", the(Quote, instance_id=instance_id).id)] == [
        "created",
        "sent",
        "accepted",
    ]
    assert sales_funnel() == {"leads": 1, "quoted": 1, "ordered": 1, "invoiced": 1, "paid": 1}


# -- discounts and four-eyes --------------------------------------------------------------------
def test_discount_needs_a_manager_who_is_not_the_author(office):
    """MAX sells and manages: he prepared the quote, so he may not approve its discount."""
    instance_id = qualified_lead(office, MAX)
    prepare_quote(office, MAX, quote_lines(discount="15"))
    quote = the(Quote, instance_id=instance_id)
    assert (quote.status, quote.author, quote.max_discount_percent) == ("draft", "max", Decimal("15.000"))
    assert "approve_discount" not in open_tasks(office, MAX)
    approval = find_task(office, MONA, "approve_discount")
    assert (
        approval.excluded_users == ("max",)
        and approval.title == "Approve discount on quote Q-2026-0001 (15%)"
    )
    with pytest.raises(Forbidden, match="four-eyes"):
        office.complete_task(approval.id, MAX, {"decision": "approve"})
    [waiting] = open_quotes_awaiting_discount_approval()
    assert (waiting["number"], waiting["author"], waiting["approver_role"]) == (
        "Q-2026-0001",
        "max",
        "manager",
    )

    office.complete_task(approval.id, MONA, {"decision": "approve", "reason": "Key account"})
    quote = the(Quote, instance_id=instance_id)
    assert quote.status == "sent"
    assert open_quotes_awaiting_discount_approval() == []
    approved = [e for e in history("quote", quote.id) if e.action == "discount_approved"]
    assert [(e.actor, e.detail["level"], e.detail["reason"]) for e in approved] == [
        ("mona", "manager", "Key account")
    ]


def test_rejected_discount_goes_back_to_sales_with_the_reason(office):
    instance_id = qualified_lead(office)
    prepare_quote(office, SALLY, quote_lines(discount="15"))
    with pytest.raises(InvalidData, match="reason"):  # rejecting needs a reason
        complete(office, MONA, "approve_discount", {"decision": "reject"})
    complete(office, MONA, "approve_discount", {"decision": "reject", "reason": "Max 10 % this quarter"})
    assert open_tasks(office, MONA) == []
    assert office.instance_data(instance_id)["reason"] == "Max 10 % this quarter"

    prepare_quote(office, SALLY, quote_lines(discount="10"))  # revise and resubmit: within the limit
    quote = the(Quote, instance_id=instance_id)
    assert (quote.number, quote.revision, quote.status) == ("Q-2026-0001", 2, "sent")
    assert [line.discount_percent for line in quote.lines] == [Decimal("10.000"), Decimal("0.000")]
    # 10 x 1150 x 0.9 + 1400 = 11,750.00
    assert quote.total_net == Decimal("11750.00")
    assert len(quote.all_lines) == 4  # the rejected revision's lines are kept
    events = [(e.action, e.actor, e.detail.get("reason")) for e in history("quote", quote.id)]
    assert events[:3] == [
        ("created", "sally", None),
        ("discount_rejected", "mona", "Max 10 % this quarter"),
        ("revised", "sally", None),
    ]
    assert [action for action, _, _ in events[3:]] == ["sent"]
    assert db.session.scalar(select(func.count(Quote.id))) == 1


def test_large_discount_needs_the_director_too(office):
    instance_id = qualified_lead(office)
    prepare_quote(office, SALLY, quote_lines(discount="25"))
    complete(office, MONA, "approve_discount", {"decision": "approve"})
    assert the(Quote, instance_id=instance_id).status == "draft"
    [waiting] = open_quotes_awaiting_discount_approval()
    assert waiting["approver_role"] == "director"
    assert "approve_discount_director" not in open_tasks(office, MONA)
    complete(office, DIANA, "approve_discount_director", {"decision": "approve", "reason": "Strategic"})
    quote = the(Quote, instance_id=instance_id)
    assert quote.status == "sent"
    approvals = [
        (e.actor, e.detail["level"]) for e in history("quote", quote.id) if e.action == "discount_approved"
    ]
    assert approvals == [("mona", "manager"), ("diana", "director")]


def test_the_director_level_needs_a_second_person(office):
    qualified_lead(office)
    prepare_quote(office, SALLY, quote_lines(discount="25"))
    complete(office, DIANA, "approve_discount", {"decision": "approve"})  # director and manager
    assert "approve_discount_director" not in open_tasks(office, DIANA)


# -- the customer's answer ----------------------------------------------------------------------
def test_quote_accepted_message_creates_the_order_task(office):
    instance_id = sent_quote(office)
    assert office.correlate_message(
        "quote_accepted",
        {"quote_number": "Q-2026-0001"},
        {"quote_number": "Q-2026-0001", "accepted_by": "Nora North", "customer_reference": "PO-9"},
    ) == [instance_id]
    assert open_tasks(office, SALLY) == []  # the decision task is gone
    assert office.instance_data(instance_id)["acceptance"]["accepted_by"] == "Nora North"
    complete(
        office,
        OLGA,
        "create_sales_order",
        {
            "customer_reference": "PO-9",
            "requested_delivery_date": "2026-11-20",
            "delivery_address": "1 Harbour Road, London",
            "order_notes": "",
        },
    )
    quote = the(Quote, instance_id=instance_id)
    assert quote.status == "accepted"
    [accepted] = [e for e in history("quote", quote.id) if e.action == "accepted"]
    assert (accepted.detail["via"], accepted.detail["accepted_by"]) == ("customer portal", "Nora North")
    assert "ship_order" in open_tasks(office, IVAN)
    with pytest.raises(NotWaiting):  # the boundary event is gone with its task
        office.correlate_message("quote_accepted", {"quote_number": "Q-2026-0001"}, {"accepted_by": "again"})


def test_customer_rejects_quote(office):
    instance_id = sent_quote(office)
    complete(
        office, SALLY, "record_customer_decision", {"customer_decision": "rejected", "lost_reason": "price"}
    )
    quote = the(Quote, instance_id=instance_id)
    assert (quote.status, quote.status_reason) == ("lost", "price")
    assert status_of(instance_id) == "completed"


def test_history_names_who_made_the_step(office):
    instance_id = sent_quote(office)
    quote = the(Quote, instance_id=instance_id)
    assert [(e.action, e.actor) for e in history("quote", quote.id)] == [
        ("created", "sally"),
        ("sent", "sally"),
    ]


# -- leads that go nowhere ----------------------------------------------------------------------
def test_unqualified_lead_is_closed_with_the_reason(office):
    instance_id = office.start_process("lead_to_invoice", LEAD_FORM, SALLY)
    complete(
        office,
        SALLY,
        "qualify_lead",
        {"qualification": "unqualified", "contact_note": "Only browsing", "disqualify_reason": "no_need"},
    )
    lead = the(Lead, instance_id=instance_id)
    assert (lead.status, lead.status_reason) == ("unqualified", "no_need")
    assert status_of(instance_id) == "completed"
    [change] = [e for e in history("lead", lead.id) if e.action == "status_changed"]
    assert change.detail == {"previous": "open", "status": "unqualified", "reason": "no_need"}


def test_lead_from_marketing_goes_to_the_least_busy_seller(office):
    office.start_process("lead_to_invoice", LEAD_FORM, SALLY)
    office.start_process("lead_to_invoice", {**LEAD_FORM, "company": "Baltic Amber"}, MAX)
    instance_id = office.start_process("lead_to_invoice", {**LEAD_FORM, "company": "Kama Logistics"}, MARK)
    assert the(Lead, instance_id=instance_id).owner == "sam"  # sally and max have one open lead each
    assert find_task(office, SAM, "qualify_lead").assignee == "sam"
    assert "qualify_lead" not in open_tasks(office, MARK)


def test_lead_follow_up_every_3_days_then_cold_after_30(office, clock):
    instance_id = office.start_process("lead_to_invoice", LEAD_FORM, SALLY)
    started = clock.current
    assert office.fire_due_timers(clock.advance(days=2, hours=23)) == 0
    office.fire_due_timers(clock.advance(hours=1, minutes=1))
    # the qualify task turns into a follow-up reminder (same outcomes to choose from)
    assert open_tasks(office, SALLY) == ["follow_up_lead"]
    follow_up = find_task(office, SALLY, "follow_up_lead")
    assert follow_up.title == "Follow up lead L-2026-0001 (Northwind Traders): no contact for 3 days"

    # contact logged, still qualifying: the lead is back to qualification, with the note kept
    office.complete_task(
        follow_up.id, SALLY, {"qualification": "keep_working", "contact_note": "Call back Monday"}
    )
    lead = the(Lead, instance_id=instance_id)
    [entry] = db.session.scalars(select(LeadContactLog).where(LeadContactLog.lead_id == lead.id)).all()
    assert (entry.actor, entry.note) == ("sally", "Call back Monday")
    assert lead.last_contact_at is not None

    assert open_tasks(office, SALLY) == ["qualify_lead"]
    # nobody does anything: a fresh reminder every 3 days, never a pile of them
    reminders = set()
    for _ in range(3):
        office.fire_due_timers(clock.advance(days=3, minutes=1))
        assert open_tasks(office, SALLY) == ["follow_up_lead"]
        reminders.add(find_task(office, SALLY, "follow_up_lead").id)
    assert len(reminders) == 3
    assert the(Lead, instance_id=instance_id).status == "open"

    fire_at(office, clock, started + timedelta(days=30, minutes=-1))
    assert the(Lead, instance_id=instance_id).status == "open"
    fire_at(office, clock, started + timedelta(days=30, seconds=1))  # 30 days after it was captured
    lead = the(Lead, instance_id=instance_id)
    assert (lead.status, lead.status_reason) == ("cold", "no progress for 30 days")
    assert open_tasks(office, SALLY) == []
    assert status_of(instance_id) == "completed"


def test_quote_follow_up_after_7_days_then_expiry(office, clock):
    instance_id = sent_quote(office, validity_days=20)
    office.fire_due_timers(clock.advance(days=7, minutes=1))
    assert open_tasks(office, SALLY) == ["follow_up_quote", "record_customer_decision"]
    complete(
        office, SALLY, "follow_up_quote", {"contact_note": "Still comparing offers", "next_contact_on": None}
    )
    assert open_tasks(office, SALLY) == ["record_customer_decision"]

    quote = the(Quote, instance_id=instance_id)
    assert quote.valid_until == date(2026, 11, 22)
    fire_at(office, clock, midnight(date(2026, 11, 22), clock))
    assert the(Quote, instance_id=instance_id).status == "sent"  # valid through the 22nd
    fire_at(office, clock, midnight(date(2026, 11, 23), clock))
    quote = the(Quote, instance_id=instance_id)
    assert (quote.status, quote.status_reason) == ("expired", "validity ended without an answer")
    assert open_tasks(office, SALLY) == []
    assert status_of(instance_id) == "completed"


# -- collecting the money -----------------------------------------------------------------------
def test_dunning_levels_until_full_payment(office, clock):
    instance_id, number = invoiced_order(office, clock)
    invoice = the(Invoice, number=number)
    due = invoice.due_date
    assert due == date(2026, 11, 16)

    fire_at(office, clock, midnight(due, clock))
    assert mails("dunning") == []  # not overdue on the due date
    fire_at(office, clock, midnight(due + timedelta(days=1), clock))
    [first] = mails("dunning")
    assert first.to_address == "nora@northwind.example"
    assert first.subject == "Payment reminder: invoice INV-2026-0001" and "15480.00 EUR" in first.body
    assert the(Invoice, number=number).dunning_level == 1
    assert office.fire_due_timers(clock.advance(days=13)) == 0  # next check: 15 days after due
    assert len(mails("dunning")) == 1  # exactly once

    # a partial payment lowers the balance but does not stop the dunning
    pay(office, number, "5480.00", "BANK-1")
    invoice = the(Invoice, number=number)
    assert (invoice.status, invoice.balance) == ("open", Decimal("10000.00"))
    assert status_of(instance_id) != "completed"

    fire_at(office, clock, midnight(due + timedelta(days=15), clock))
    second = mails("dunning")[-1]
    assert (
        second.subject == "Second payment reminder: invoice INV-2026-0001" and "10000.00 EUR" in second.body
    )
    call = find_task(office, ALEX, "call_customer")
    assert call.title == "Call customer: invoice INV-2026-0001 is 15 days overdue"
    office.complete_task(
        call.id,
        ALEX,
        {
            "call_outcome": "promised_to_pay",
            "promised_payment_date": "2026-12-10",
            "call_note": "Pays next week",
        },
    )
    assert the(Invoice, number=number).dunning_level == 2

    fire_at(office, clock, midnight(due + timedelta(days=30), clock))
    escalation = find_task(office, MONA, "escalate_overdue_invoice")
    assert escalation.title == "Invoice INV-2026-0001 is 30 days overdue"
    assert len(mails("dunning")) == 2
    assert [row["number"] for row in aging_report(due + timedelta(days=30))["1-30"]] == [number]

    # the rest arrives: dunning ends at once, the manager's task goes away
    pay(office, number, "10000.00", "BANK-2")
    assert "escalate_overdue_invoice" not in open_tasks(office, MONA)
    assert the(Invoice, number=number).status == "paid"
    assert aging_report(due + timedelta(days=30))["1-30"] == []
    office.fire_due_timers(clock.advance(days=60))
    assert len(mails("dunning")) == 2
    complete(office, CARA, "satisfaction_call", {"reached": False})
    assert status_of(instance_id) == "completed"


def test_stop_deliveries_puts_the_customer_on_credit_hold(office, clock):
    _, number = invoiced_order(office, clock)
    due = the(Invoice, number=number).due_date
    for days in (1, 15):
        fire_at(office, clock, midnight(due + timedelta(days=days), clock))
    complete(office, ALEX, "call_customer", {"call_outcome": "unreachable", "call_note": "Voicemail only"})
    fire_at(office, clock, midnight(due + timedelta(days=30), clock))
    complete(
        office,
        MONA,
        "escalate_overdue_invoice",
        {"collection_action": "stop_deliveries", "collection_note": "Until they pay"},
    )
    assert the(Customer, name="Northwind Traders").credit_hold is True
    assert the(Invoice, number=number).dunning_level == 3

    # the same customer accepts a new quote: the order is refused, nothing is written
    second = sent_quote(office)
    complete(office, SALLY, "record_customer_decision", {"customer_decision": "accepted"})
    with pytest.raises(InvalidData, match="customer: Northwind Traders is on credit hold") as refused:
        complete(office, OLGA, "create_sales_order", ORDER_FORM)
    assert [e.field for e in refused.value.errors] == ["customer"]
    assert "create_sales_order" in open_tasks(office, OLGA)  # still to do once the hold is lifted
    assert status_of(second) == "running"
    assert db.session.scalar(select(func.count(SalesOrder.id))) == 1


# An operation that refuses its input (InvalidData) during a user's step or a message goes back
# to that caller with the field named, and nothing is booked; only steps nobody waits for
# (timers) turn a refusal into an incident (engine/engine.py, Engine._run).


def test_written_off_invoice_ends_the_collection(office, clock):
    instance_id, number = invoiced_order(office, clock)
    due = the(Invoice, number=number).due_date
    for days in (1, 15):
        fire_at(office, clock, midnight(due + timedelta(days=days), clock))
    complete(
        office, ALEX, "call_customer", {"call_outcome": "disputed", "call_note": "Says docks were broken"}
    )
    fire_at(office, clock, midnight(due + timedelta(days=30), clock))
    complete(
        office,
        MONA,
        "escalate_overdue_invoice",
        {"collection_action": "write_off", "collection_note": "Insolvent"},
    )
    invoice = the(Invoice, number=number)
    assert (invoice.status, invoice.balance, invoice.written_off) == ("written_off", 0, Decimal("15480.00"))
    with pytest.raises(NotWaiting):
        pay(office, number, "100.00", "LATE-1")
    complete(
        office, CARA, "satisfaction_call", {"reached": True, "satisfaction": 1, "comment": "Broken docks"}
    )
    assert status_of(instance_id) == "completed"


def test_overpayment_is_refused_and_nothing_is_booked(office, clock):
    instance_id, number = invoiced_order(office, clock)
    with pytest.raises(InvalidData) as refused:
        pay(office, number, "20000.00", "BANK-9")
    [error] = refused.value.errors
    assert error.field == "amount"
    assert error.message == "20000.00 EUR is more than the open balance of INV-2026-0001 (15480.00 EUR)"
    assert db.session.scalar(select(func.count(Payment.id))) == 0
    assert the(Invoice, number=number).balance == Decimal("15480.00")
    assert pay(office, number, "15480.00", "BANK-10") == [instance_id]  # still waiting for the money
    assert the(Invoice, number=number).status == "paid"


def test_payment_for_a_paid_invoice_finds_nobody_waiting(office, clock):
    _, number = invoiced_order(office, clock)
    pay(office, number, "15480.00", "BANK-1")
    assert the(Invoice, number=number).status == "paid"
    with pytest.raises(NotWaiting):
        pay(office, number, "1.00", "BANK-2")
    assert db.session.scalar(select(func.count(Payment.id))) == 1
