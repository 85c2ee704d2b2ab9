"""Sales documents on their own: totals and rounding, gapless numbering (also under
concurrency), refusals that name the field and write nothing, payments, dunning, collection
and the reports. Operations are called directly, as a service task calls them."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from engine import InvalidData
from engine.business import sales
from engine.business.common import Customer, DocumentSequence, Product, history, line_amounts
from engine.business.mail import OutboxMail
from engine.business.sales import (
    Delivery,
    Invoice,
    Lead,
    Payment,
    Quote,
    SalesOrder,
    aging_report,
    apply_collection_action,
    convert_quote_to_order,
    create_invoice,
    create_lead,
    get_invoice_status,
    log_lead_contact,
    record_delivery,
    register_payment,
    sales_funnel,
    save_quote,
    send_dunning_letter,
    send_quote,
    set_status,
)
from engine.db import db
from engine.operations import OperationContext
from engine.users import add_user


@pytest.fixture(autouse=True)
def catalogue(app):
    add_user("sally", ["sales"])
    add_user("sam", ["sales"])
    db.session.add_all(
        [
            Product(
                code="LAP-14", name='Laptop 14"', unit_price=Decimal("1150.00"), purchase_price=Decimal("820")
            ),
            Product(
                code="DOCK-1", name="USB-C dock", unit_price=Decimal("140.00"), purchase_price=Decimal("85")
            ),
            Product(
                code="CBL-HDMI",
                name="HDMI cable 2 m",
                unit_price=Decimal("12.00"),
                purchase_price=Decimal("3"),
            ),
        ]
    )
    db.session.commit()


def context(clock, actor="sally", task_id=""):
    return OperationContext(
        instance_id=0,
        process_id="lead_to_invoice",
        task_spec_id="direct",
        now=clock.current,
        data={},
        actor=actor,
        task_id=task_id,
    )


def call(operation, clock, actor="sally", task_id="", **params):
    """Run one operation as the engine does: in a savepoint, then commit."""
    try:
        with db.session.begin_nested():
            result = operation(context(clock, actor, task_id), **params)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return result


def refused(operation, clock, **params):
    """The field errors of a refused call."""
    with pytest.raises(InvalidData) as caught:
        call(operation, clock, **params)
    return {e.field: e.message for e in caught.value.errors}


def line(product="LAP-14", qty=1, unit_price="1150.00", discount="0", tax="20"):
    return {
        "product": product,
        "qty": qty,
        "unit_price": unit_price,
        "discount_percent": discount,
        "tax_rate": tax,
    }


def new_lead(clock, company="Northwind Traders", email="nora@northwind.example"):
    return call(
        create_lead,
        clock,
        company=company,
        contact_name="Nora North",
        email=email,
        phone="",
        source="event",
        interest="Laptops",
        estimated_value="5000.00",
        captured_by="sally",
    )["number"]


def new_quote(clock, lines=None, terms=14, company="Northwind Traders"):
    return call(
        save_quote,
        clock,
        lead_number=new_lead(clock, company),
        lines=lines or [line(qty=4), line("DOCK-1", qty=4, unit_price="140.00")],
        validity_days=30,
        payment_terms_days=terms,
        currency="EUR",
        notes="",
    )


def new_order(clock, **quote):
    number = new_quote(clock, **quote)["number"]
    call(send_quote, clock, quote_number=number)
    return call(
        convert_quote_to_order,
        clock,
        quote_number=number,
        customer_reference="PO-1",
        requested_delivery_date="2026-11-20",
        delivery_address="1 Harbour Road",
        notes="",
    )["number"]


def ship(clock, order, *lines, task_id=""):
    return call(
        record_delivery,
        clock,
        task_id=task_id,
        order_number=order,
        lines=[{"product": p, "qty": q} for p, q in lines],
        carrier="DHL",
        tracking_number="",
        shipped_on="2026-11-03",
    )


def new_invoice(clock, **quote):
    """An invoice over 4 laptops and 4 docks: 5,160.00 net, 6,192.00 with 20 % tax."""
    order = new_order(clock, **quote)
    ship(clock, order, ("LAP-14", 4), ("DOCK-1", 4))
    return call(create_invoice, clock, source_type="sales_order", source_number=order, kind="goods")["number"]


def invoice(number):
    db.session.expire_all()
    return db.session.scalars(select(Invoice).where(Invoice.number == number)).one()


def pay(clock, number, amount, reference):
    return call(
        register_payment,
        clock,
        invoice_number=number,
        amount=amount,
        paid_on="2026-11-20",
        reference=reference,
    )


# -- totals and rounding ------------------------------------------------------------------------
def test_line_amounts_round_each_line_half_up():
    amounts = line_amounts(Decimal("3"), Decimal("19.99"), Decimal("12.5"), Decimal("23"))
    assert (amounts.net, amounts.tax, amounts.gross) == (Decimal("52.47"), Decimal("12.07"), Decimal("64.54"))
    assert line_amounts(Decimal("2.5"), Decimal("10.01"), tax_rate=Decimal("8")).net == Decimal("25.03")


def test_quote_totals_are_the_sum_of_rounded_lines(clock):
    quote = new_quote(
        clock,
        lines=[line("LAP-14", 3, "19.99", "12.5", "23"), line("CBL-HDMI", 2.5, "10.01", "0", "8")],
    )
    # 52.47 + 25.03 net; 12.07 + 2.00 tax
    assert (quote["total_net"], quote["total_tax"], quote["total_gross"]) == ("77.50", "14.07", "91.57")
    assert quote["max_discount_percent"] == "12.5"
    assert quote["valid_until"] == "2026-12-02"
    stored = db.session.scalars(select(Quote)).one()
    assert [(q.net, q.tax) for q in stored.lines] == [
        (Decimal("52.47"), Decimal("12.07")),
        (Decimal("25.03"), Decimal("2.00")),
    ]
    assert stored.author == "sally" and stored.currency == "EUR" and stored.lead.status == "qualified"


def test_quote_refusals_name_the_field_and_write_nothing(clock):
    lead = new_lead(clock)
    base = {
        "lead_number": lead,
        "validity_days": 30,
        "payment_terms_days": 14,
        "currency": "EUR",
        "notes": "",
    }
    assert "lines/0/qty" in refused(save_quote, clock, **base, lines=[line(qty=-2)])
    assert "lines/1/discount_percent" in refused(
        save_quote, clock, **base, lines=[line(), line("DOCK-1", discount="100.5")]
    )
    assert refused(save_quote, clock, **base, lines=[line("NOPE-1")]) == {
        "lines/0/product": "unknown product 'NOPE-1'"
    }
    assert "lines/0/unit_price" in refused(save_quote, clock, **base, lines=[line(unit_price="-1.00")])
    assert "lines" in refused(save_quote, clock, **base, lines=[])
    assert "lead_number" in refused(
        save_quote, clock, **{**base, "lead_number": "L-2026-0999"}, lines=[line()]
    )
    assert "payment_terms_days" in refused(
        save_quote, clock, **{**base, "payment_terms_days": 21}, lines=[line()]
    )
    assert "currency" in refused(save_quote, clock, **{**base, "currency": "CHF"}, lines=[line()])
    assert db.session.scalar(select(func.count(Quote.id))) == 0
    # nothing was half-written and no number was used up
    assert call(save_quote, clock, **base, lines=[line()])["number"] == "Q-2026-0001"


def test_create_lead_refusals(clock):
    params = {
        "company": "Acme",
        "contact_name": "Ann",
        "email": None,
        "phone": "",
        "source": "fax",
        "interest": "x",
        "estimated_value": None,
        "captured_by": "sally",
    }
    assert "source" in refused(create_lead, clock, **params)
    assert "company" in refused(create_lead, clock, **{**params, "source": "other", "company": "  "})
    assert "estimated_value" in refused(
        create_lead, clock, **{**params, "source": "other", "estimated_value": "-5"}
    )
    assert db.session.scalar(select(func.count(Lead.id))) == 0
    assert db.session.scalar(select(func.count(Customer.id))) == 0


# -- numbering ----------------------------------------------------------------------------------
def test_numbers_are_per_kind_and_year(clock):
    assert new_lead(clock) == "L-2026-0001"
    assert new_lead(clock, "Baltic Amber") == "L-2026-0002"
    assert new_quote(clock)["number"] == "Q-2026-0001"
    clock.current = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
    assert new_lead(clock, "Kama Logistics") == "L-2027-0001"
    assert new_quote(clock, company="Kama Logistics")["number"] == "Q-2027-0001"


def test_a_number_already_taken_is_refused(clock):
    """Imported data carries Q-2026-0001 while the sequence does not know it."""
    lead = new_lead(clock)
    imported = db.session.scalars(select(Lead)).one()
    db.session.add(
        Quote(
            number="Q-2026-0001",
            status="sent",
            customer=imported.customer,
            author="import",
            currency="EUR",
            payment_terms_days=30,
            validity_days=30,
            valid_until=date(2026, 12, 1),
            created_at=clock.current,
            updated_at=clock.current,
        )
    )
    db.session.commit()
    errors = refused(
        save_quote,
        clock,
        lead_number=lead,
        lines=[line()],
        validity_days=30,
        payment_terms_days=30,
        currency="EUR",
        notes="",
    )
    assert errors == {"number": "Q-2026-0001 already exists: the Q numbering is out of step with the data"}


def concurrent_quotes(app, clock, threads_count, *, savepoint):
    """Save `threads_count` quotes at the same moment, each in its own app context and
    transaction; returns (numbers, failures)."""
    leads = [new_lead(clock, f"Customer {i}") for i in range(threads_count)]
    numbers: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def save(lead_number):
        with app.app_context():
            try:
                start.wait()
                if savepoint:  # as the engine runs operations: inside a savepoint
                    db.session.begin_nested()
                result = save_quote(
                    context(clock),
                    lead_number=lead_number,
                    lines=[line()],
                    validity_days=30,
                    payment_terms_days=14,
                    currency="EUR",
                    notes="",
                )
                db.session.commit()
                numbers.append(result["number"])
            except BaseException as exc:  # reported by the caller
                db.session.rollback()
                failures.append(exc)

    threads = [threading.Thread(target=save, args=(lead,)) for lead in leads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return numbers, failures


def test_concurrent_quotes_get_gapless_numbers(app, clock):
    """Eight sales people save a quote at the same moment: the numbers are 0001..0008, no gaps,
    no duplicates (SQLite and PostgreSQL)."""
    numbers, failures = concurrent_quotes(app, clock, 8, savepoint=False)
    assert failures == []
    assert sorted(numbers) == [f"Q-2026-{i:04d}" for i in range(1, 9)]
    db.session.expire_all()
    assert db.session.get(DocumentSequence, ("Q", 2026)).last_value == 8
    assert db.session.scalar(select(func.count(func.distinct(Quote.number)))) == 8


def test_concurrent_quotes_inside_savepoints(app, clock):
    """The same inside a savepoint, as `Engine._call_service` runs operations. On SQLite this
    needs transactions that take the write lock when they begin (engine/db.py: BEGIN IMMEDIATE);
    a deferred one fails at once with "database is locked" instead of waiting."""
    numbers, failures = concurrent_quotes(app, clock, 8, savepoint=True)
    assert failures == []
    assert sorted(numbers) == [f"Q-2026-{i:04d}" for i in range(1, 9)]


# -- from quote to invoice ----------------------------------------------------------------------
def test_a_rejected_discount_revision_keeps_the_number(clock):
    first = new_quote(clock, lines=[line(discount="15")])
    lead = db.session.scalars(select(Lead)).one().number
    second = call(
        save_quote,
        clock,
        lead_number=lead,
        lines=[line(discount="10")],
        validity_days=10,
        payment_terms_days=30,
        currency="EUR",
        notes="",
    )
    assert (first["number"], first["revision"]) == ("Q-2026-0001", 1)
    assert (second["number"], second["revision"], second["total_net"]) == ("Q-2026-0001", 2, "1035.00")
    assert second["valid_until"] == "2026-11-12"
    quote = db.session.scalars(select(Quote)).one()
    assert [(q.revision, q.discount_percent) for q in quote.all_lines] == [
        (1, Decimal("15")),
        (2, Decimal("10")),
    ]
    assert [e.action for e in history("quote", quote.id)] == ["created", "revised"]


def test_send_quote_mails_the_contact_once(clock):
    number = new_quote(clock)["number"]
    call(send_quote, clock, quote_number=number)
    call(send_quote, clock, quote_number=number)  # a retried step
    [mail] = db.session.scalars(select(OutboxMail).where(OutboxMail.kind == "quote")).all()
    assert mail.to_address == "nora@northwind.example" and "Total net 5160.00 EUR" in mail.body
    assert db.session.scalars(select(Quote)).one().status == "sent"


def test_deliveries_refuse_more_than_is_open(clock):
    order = new_order(clock)
    first = ship(clock, order, ("LAP-14", 1), ("LAP-14", 1))  # the same product twice adds up
    assert first["complete"] is False and first["number"] == "D-2026-0001"
    errors = refused(
        record_delivery,
        clock,
        order_number=order,
        lines=[{"product": "LAP-14", "qty": 3}],
        carrier="DHL",
        tracking_number="",
        shipped_on="2026-11-04",
    )
    assert errors == {"lines/0/qty": "only 2 of LAP-14 still to ship, got 3"}
    assert "lines/0/product" in refused(
        record_delivery,
        clock,
        order_number=order,
        lines=[{"product": "CBL-HDMI", "qty": 1}],
        carrier="DHL",
        tracking_number="",
        shipped_on="2026-11-04",
    )
    assert "lines/0/qty" in refused(
        record_delivery,
        clock,
        order_number=order,
        lines=[{"product": "DOCK-1", "qty": -1}],
        carrier="DHL",
        tracking_number="",
        shipped_on="2026-11-04",
    )
    last = ship(clock, order, ('Laptop 14"', 2), ("DOCK-1", 4))  # by name works too
    assert last == {"number": "D-2026-0002", "complete": True, "open_lines": []}
    assert db.session.scalar(select(func.count(Delivery.id))) == 2
    assert db.session.scalars(select(SalesOrder)).one().status == "delivered"


def test_a_retried_delivery_step_ships_once(clock):
    order = new_order(clock)
    first = ship(clock, order, ("LAP-14", 1), task_id="0b9f6c1e-task")
    again = ship(clock, order, ("LAP-14", 1), task_id="0b9f6c1e-task")  # the same step run again
    assert again == first
    assert db.session.scalars(select(SalesOrder)).one().lines[0].delivered_qty == 1
    assert ship(clock, order, ("LAP-14", 1), task_id="5d2a-next-loop")["number"] == "D-2026-0002"


def test_invoice_bills_what_was_delivered_with_due_date_from_terms(clock):
    order = new_order(clock, terms=30)
    ship(clock, order, ("LAP-14", 1))
    clock.advance(days=1)
    first = call(create_invoice, clock, source_type="sales_order", source_number=order, kind="goods")
    assert first["number"] == "INV-2026-0001"
    assert (first["issue_date"], first["due_date"], first["total"]) == ("2026-11-03", "2026-12-03", "1380.00")
    ship(clock, order, ("LAP-14", 3), ("DOCK-1", 4))
    second = call(create_invoice, clock, source_type="sales_order", source_number=order, kind="goods")
    # 3 x 1150 + 4 x 140 = 4,010.00 net, 4,812.00 gross
    assert (second["number"], second["total"]) == ("INV-2026-0002", "4812.00")
    assert db.session.scalars(select(SalesOrder)).one().status == "invoiced"
    # a retry after everything is invoiced returns the last invoice instead of a new one
    again = call(create_invoice, clock, source_type="sales_order", source_number=order, kind="goods")
    assert again["number"] == "INV-2026-0002"
    assert "kind" in refused(
        create_invoice, clock, source_type="sales_order", source_number=order, kind="repair"
    )
    assert "source_number" in refused(
        create_invoice, clock, source_type="sales_order", source_number="SO-2026-0404", kind="goods"
    )
    mails = db.session.scalars(select(OutboxMail).where(OutboxMail.kind == "invoice")).all()
    assert [m.subject for m in mails] == ["Invoice INV-2026-0001", "Invoice INV-2026-0002"]


def test_invoice_for_a_repair_ticket(clock, monkeypatch):
    from engine.business import repairs

    new_lead(clock, "Vilnius Print", email="info@vilnius.example")
    charges = [
        {
            "product": "CBL-HDMI",
            "qty": Decimal("2"),
            "unit_price": Decimal("12.00"),
            "tax_rate": Decimal("21"),
        },
        {
            "product": "Labour",
            "qty": Decimal("1.5"),
            "unit_price": Decimal("60.00"),
            "tax_rate": Decimal("21"),
        },
    ]
    monkeypatch.setattr(repairs, "invoice_lines", lambda number, kind: ("Vilnius Print", "EUR", charges))
    result = call(
        create_invoice, clock, source_type="repair_ticket", source_number="RT-2026-0001", kind="repair"
    )
    assert result["total"] == "137.94"  # (24.00 + 90.00) net + 23.94 tax
    stored = invoice(result["number"])
    assert (stored.source_type, stored.source_number, stored.sales_order_id) == (
        "repair_ticket",
        "RT-2026-0001",
        None,
    )
    assert [line.product_id is None for line in stored.lines] == [False, True]
    assert stored.due_date == date(2026, 12, 2)  # the customer's terms, net 30
    again = call(
        create_invoice, clock, source_type="repair_ticket", source_number="RT-2026-0001", kind="repair"
    )
    assert again["number"] == result["number"]
    monkeypatch.setattr(repairs, "invoice_lines", lambda number, kind: ("Nobody Ltd", "EUR", charges))
    assert "customer" in refused(
        create_invoice, clock, source_type="repair_ticket", source_number="RT-2026-0002", kind="diagnosis_fee"
    )


# -- payments, dunning, collection --------------------------------------------------------------
def test_partial_payments_reduce_the_balance_until_paid(clock):
    number = new_invoice(clock)
    assert pay(clock, number, "1000.00", "BANK-1") == {
        "paid_in_full": False,
        "balance": "5192.00",
        "invoice_status": "open",
        "payment_number": "PAY-2026-0001",
    }
    # the same bank line again books once
    assert pay(clock, number, "1000.00", "BANK-1")["balance"] == "5192.00"
    assert refused(
        register_payment, clock, invoice_number=number, amount="5.00", paid_on=None, reference="BANK-1"
    ) == {"reference": "BANK-1 is already booked on INV-2026-0001 with 1000.00"}
    assert refused(
        register_payment, clock, invoice_number=number, amount="5192.01", paid_on=None, reference="B2"
    ) == {"amount": "5192.01 EUR is more than the open balance of INV-2026-0001 (5192.00 EUR)"}
    assert "amount" in refused(
        register_payment, clock, invoice_number=number, amount="-1", paid_on=None, reference="B3"
    )
    assert "reference" in refused(
        register_payment, clock, invoice_number=number, amount="1", paid_on=None, reference=""
    )
    done = pay(clock, number, "5192.00", "BANK-2")
    assert (done["paid_in_full"], done["balance"], done["invoice_status"]) == (True, "0.00", "paid")
    assert refused(
        register_payment, clock, invoice_number=number, amount="1.00", paid_on=None, reference="B4"
    ) == {"invoice_number": "invoice INV-2026-0001 is already paid in full"}
    assert db.session.scalar(select(func.sum(Payment.amount))) == Decimal("6192.00")
    assert [e.action for e in history("invoice", invoice(number).id)] == ["issued", "partially_paid", "paid"]


def test_invoice_status_counts_days_overdue_on_the_engine_clock(clock):
    number = new_invoice(clock)
    assert call(get_invoice_status, clock, invoice_number=number)["days_overdue"] == -14
    clock.advance(days=20)
    status = call(get_invoice_status, clock, invoice_number=number)
    assert (status["days_overdue"], status["balance"], status["due_date"]) == (6, "6192.00", "2026-11-16")


def test_dunning_letter_once_per_level(clock):
    number = new_invoice(clock)
    clock.advance(days=15)
    assert call(send_dunning_letter, clock, invoice_number=number, level=1)["sent"] is True
    assert call(send_dunning_letter, clock, invoice_number=number, level=1)["sent"] is False
    pay(clock, number, "192.00", "BANK-1")
    assert call(send_dunning_letter, clock, invoice_number=number, level=2)["sent"] is True
    letters = db.session.scalars(
        select(OutboxMail).where(OutboxMail.kind == "dunning").order_by(OutboxMail.id)
    ).all()
    assert [m.subject for m in letters] == [
        "Payment reminder: invoice INV-2026-0001",
        "Second payment reminder: invoice INV-2026-0001",
    ]
    assert "6000.00 EUR" in letters[1].body and "1 days overdue" in letters[1].body
    assert (invoice(number).dunning_level, invoice(number).last_dunned_on) == (2, date(2026, 11, 17))
    assert "level" in refused(send_dunning_letter, clock, invoice_number=number, level=5)
    pay(clock, number, "6000.00", "BANK-2")
    assert call(send_dunning_letter, clock, invoice_number=number, level=2)["sent"] is False


def test_collection_actions(clock):
    hold, agency, write_off = new_invoice(clock), new_invoice(clock), new_invoice(clock)
    call(apply_collection_action, clock, invoice_number=hold, action="stop_deliveries", note="until paid")
    assert db.session.scalars(select(Customer)).one().credit_hold is True
    # a new order for a customer on hold is refused
    quote = new_quote(clock)["number"]
    call(send_quote, clock, quote_number=quote)
    assert "customer" in refused(
        convert_quote_to_order,
        clock,
        quote_number=quote,
        customer_reference="",
        requested_delivery_date="2026-12-01",
        delivery_address="1 Harbour Road",
        notes="",
    )

    call(
        apply_collection_action,
        clock,
        invoice_number=agency,
        action="collection_agency",
        note="Credit Shield Ltd",
    )
    assert (invoice(agency).status, invoice(agency).collection_note) == ("handed_over", "Credit Shield Ltd")
    assert pay(clock, agency, "6192.00", "AGENCY-1")["invoice_status"] == "paid"  # the agency collected it

    call(apply_collection_action, clock, invoice_number=write_off, action="write_off", note="insolvent")
    written = invoice(write_off)
    assert (written.status, written.balance, written.written_off) == (
        "written_off",
        Decimal("0.00"),
        Decimal("6192.00"),
    )
    assert "invoice_number" in refused(
        register_payment, clock, invoice_number=write_off, amount="1.00", paid_on=None, reference="LATE"
    )
    assert "action" in refused(apply_collection_action, clock, invoice_number=hold, action="pray", note="")
    [event] = [e for e in history("invoice", written.id) if e.action == "collection_action"]
    assert event.detail == {"measure": "write_off", "note": "insolvent", "written_off": "6192.00"}


# -- status changes -----------------------------------------------------------------------------
def test_set_status_dispatches_by_document_type(clock):
    lead = new_lead(clock)
    assert call(
        set_status, clock, document_type="lead", number=lead, status="unqualified", reason="no_budget"
    ) == {
        "status": "unqualified",
        "number": lead,
    }
    assert "status" in refused(
        set_status, clock, document_type="lead", number=lead, status="cold", reason="late"
    )
    assert "document_type" in refused(
        set_status, clock, document_type="spaceship", number="X", status="x", reason=""
    )
    assert "number" in refused(
        set_status, clock, document_type="quote", number="Q-2026-0404", status="lost", reason=""
    )
    quote = new_quote(clock, company="Baltic Amber")["number"]
    assert call(set_status, clock, document_type="quote", number=quote, status="expired", reason="too late")[
        "status"
    ] == ("expired")
    changes = [
        e.detail
        for e in history("lead", db.session.scalars(select(Lead)).first().id)
        if e.action == "status_changed"
    ]
    assert changes == [{"previous": "open", "status": "unqualified", "reason": "no_budget"}]


def test_contact_log_and_history_name_the_user(clock):
    lead = new_lead(clock)
    call(log_lead_contact, clock, actor="sam", lead_number=lead, note="Called, sends specs")
    stored = db.session.scalars(select(Lead)).one()
    assert [(c.actor, c.note) for c in stored.contact_log] == [("sam", "Called, sends specs")]
    assert [(e.action, e.actor) for e in history("lead", stored.id)] == [
        ("created", "sally"),
        ("contact_logged", "sam"),
    ]
    assert "note" in refused(log_lead_contact, clock, lead_number=lead, note=" ")


# -- reports ------------------------------------------------------------------------------------
def test_aging_report_groups_open_invoices_by_days_overdue(clock):
    numbers = [new_invoice(clock) for _ in range(7)]  # all due 2026-11-16
    today = date(2026, 11, 16)
    overdue_by = [0, 1, 30, 31, 61, 91, 5]
    for number, days in zip(numbers, overdue_by, strict=True):
        stored = invoice(number)
        stored.due_date = today - timedelta(days=days)
        db.session.commit()
    pay(clock, numbers[6], "6192.00", "PAID")  # paid invoices are not in the report
    report = aging_report(today)
    assert {bucket: [row["days_overdue"] for row in rows] for bucket, rows in report.items()} == {
        "current": [0],
        "1-30": [30, 1],
        "31-60": [31],
        "61-90": [61],
        ">90": [91],
    }
    row = report[">90"][0]
    assert (row["customer"], row["balance"], row["currency"], row["dunning_level"]) == (
        "Northwind Traders",
        Decimal("6192.00"),
        "EUR",
        0,
    )


def test_sales_funnel_counts_each_stage(clock):
    new_lead(clock, "Only a lead")
    new_quote(clock, company="Quoted")
    new_order(clock, company="Ordered")
    paid = new_invoice(clock, company="Paid")
    new_invoice(clock, company="Invoiced")
    pay(clock, paid, "6192.00", "BANK-1")
    assert sales_funnel() == {"leads": 5, "quoted": 4, "ordered": 3, "invoiced": 2, "paid": 1}


def test_lead_owner_is_the_seller_with_fewest_open_leads(clock):
    new_lead(clock)  # sally's
    result = call(
        create_lead,
        clock,
        actor="system",
        company="Web Shop",
        contact_name="Wes",
        email=None,
        phone="",
        source="web_form",
        interest="Docks",
        estimated_value=None,
        captured_by="api",
    )
    assert result["owner"] == "sam"
    assert result["created_at"] == clock.current.isoformat()
    assert sales.choose_lead_owner("sally") == "sally"
