"""The purchasing and repair documents themselves: refusals that name the field and write
nothing, the three-way match in plain words, numbering per year, retried steps that book
once, and the reports (open approvals, SLA breaches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from engine import InvalidData, InvalidState, NotFound
from engine.business import purchasing, repairs
from engine.business.common import Product, history
from engine.business.mail import OutboxMail
from engine.business.purchasing import GoodsReceipt, PurchaseRequest, VendorBill, open_approvals
from engine.business.repairs import RepairTicket, invoice_lines, sla_breaches
from engine.db import db
from engine.models import ProcessInstance
from engine.operations import OperationContext
from tests.business.test_purchase_approval import (
    IVAN,
    complete,
    find_task,
    open_specs,
    order_data,
    order_for,
    receipt_data,
    staff,
    start_request,
)
from tests.business.test_repair_ticket import RITA, intake
from tests.conftest import ALEX, MONA, PAUL, SALLY


@pytest.fixture
def staffed(office):
    return staff(office)


def ctx(
    clock, task: str = "step", instance_id: int = 0, actor: str = "paul", **data: Any
) -> OperationContext:
    return OperationContext(
        instance_id=instance_id,
        process_id="purchase_approval",
        task_spec_id=task,
        now=clock.current,
        data=data,
        actor=actor,
    )


def fields(refused: pytest.ExceptionInfo[InvalidData]) -> list[str]:
    return [e.field for e in refused.value.errors]


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def stock(code: str) -> Decimal:
    db.session.expire_all()
    return db.session.scalars(select(Product.stock).where(Product.code == code)).one()


def ordered(clock, *lines: tuple[str, float, str], instance_id: int = 0) -> str:
    """A purchase order issued straight through the operations (approved request first)."""
    request = purchasing.create_purchase_request(
        ctx(clock, instance_id=instance_id),
        lines=[{"product": p, "qty": q, "unit_price": price} for p, q, price in lines],
        suggested_vendor="",
        reason="Stock",
        needed_by=(clock.current + timedelta(days=20)).date().isoformat(),
        requested_by="sally",
    )
    purchasing.set_request_status(request["number"], "approved", "test", ctx(clock))
    order = purchasing.create_purchase_order(
        ctx(clock, instance_id=instance_id),
        request_number=request["number"],
        vendor="Central Components GmbH",
        vendor_email="orders@central-components.example",
        vendor_reference="",
        rfq_summary="",
        lines=[{"product": p, "qty": q, "unit_price": price, "tax_rate": "20"} for p, q, price in lines],
        expected_date=(clock.current + timedelta(days=7)).date().isoformat(),
    )
    db.session.commit()
    return str(order["number"])


def receive(clock, order: str, *lines: tuple[str, float], **context: Any) -> dict[str, Any]:
    result = purchasing.record_goods_receipt(
        ctx(clock, **context),
        purchase_order_number=order,
        lines=[{"product": p, "qty": q} for p, q in lines],
        delivery_note="",
        received_on=clock.current.date().isoformat(),
    )
    db.session.commit()
    return result


def bill(clock, order: str, number: str, *lines: tuple[str, float, str, str]) -> dict[str, Any]:
    result = purchasing.match_vendor_bill(
        ctx(clock),
        purchase_order_number=order,
        bill_number=number,
        bill_date="2026-11-03",
        due_date="2026-12-03",
        lines=[{"product": p, "qty": q, "unit_price": price, "tax_rate": tax} for p, q, price, tax in lines],
    )
    db.session.commit()
    return result


# -- refusals ------------------------------------------------------------------------------------------
def test_receiving_more_than_ordered_is_refused_naming_the_line_and_nothing_is_booked(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("FAN-80", 10, "7.50"))
    complete(staffed, PAUL, "select_vendor", order_data(clock, ("FAN-80", 10, "7.20")))
    with pytest.raises(InvalidData) as refused:
        complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 11)))
    assert fields(refused) == ["lines/0/qty"]
    assert refused.value.errors[0].message == (
        "FAN-80: receiving 11 is more than is open on PO-2026-0001 line 1 (ordered 10, received 0, open 10)"
    )
    assert (count(GoodsReceipt), stock("FAN-80")) == (0, Decimal("3"))
    assert open_specs(staffed, IVAN) == ["receive_goods"]  # the task stays open: count again

    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 6)))
    with pytest.raises(InvalidData) as refused:
        complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 5)))
    assert "(ordered 10, received 6, open 4)" in refused.value.errors[0].message
    with pytest.raises(InvalidData) as refused:
        complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("PSU-650", 1)))
    assert fields(refused) == ["lines/0/product"]
    assert "PSU-650 is not on purchase order PO-2026-0001" in refused.value.errors[0].message
    assert (count(GoodsReceipt), stock("FAN-80"), order_for(instance_id).status) == (
        1,
        Decimal("9"),
        "partially_received",
    )


def test_a_request_for_an_unknown_product_leaves_nothing_behind(staffed, clock):
    with pytest.raises(InvalidData) as refused:
        start_request(staffed, SALLY, clock, ("FAN-80", 1, "7.50"), ("NO-SUCH", 1, "1.00"))
    assert fields(refused) == ["lines/1/product"]
    assert (count(PurchaseRequest), count(ProcessInstance)) == (0, 0)
    start_request(staffed, SALLY, clock, ("FAN-80", 1, "7.50"))
    assert db.session.scalars(select(PurchaseRequest.number)).one() == "PR-2026-0001"  # no gap


def test_operations_name_every_bad_field(staffed, clock):
    with pytest.raises(InvalidData) as refused:
        purchasing.create_purchase_request(
            ctx(clock),
            lines=[
                {"product": "FAN-80", "qty": -1, "unit_price": "7.50"},
                {"product": "FAN-80", "qty": 1, "unit_price": "x"},
            ],
            suggested_vendor="",
            reason="",
            needed_by="soon",
            requested_by="sally",
        )
    assert fields(refused) == ["lines/0/qty", "lines/1/unit_price", "reason", "needed_by"]
    with pytest.raises(InvalidData) as refused:
        purchasing.create_purchase_request(
            ctx(clock),
            lines=[],
            suggested_vendor="",
            reason="r",
            needed_by="2026-12-01",
            requested_by="sally",
        )
    assert fields(refused) == ["lines"]
    number = ordered(clock, ("FAN-80", 2, "7.20"))
    with pytest.raises(InvalidData) as refused:
        bill(clock, number, "", ("FAN-80", 0, "7.20", "120"))
    assert fields(refused) == ["lines/0/qty", "lines/0/tax_rate", "bill_number"]
    db.session.rollback()
    assert count(PurchaseRequest) == 1 and count(VendorBill) == 0


def test_unknown_document_numbers_are_not_found(staffed, clock):
    with pytest.raises(NotFound):
        receive(clock, "PO-2026-0099", ("FAN-80", 1))
    with pytest.raises(NotFound):
        purchasing.schedule_vendor_payment(ctx(clock), bill_number="VB-2026-0099")
    with pytest.raises(NotFound):
        purchasing.reschedule_delivery(ctx(clock), purchase_order_number="PO-1", expected_date="2026-12-01")
    with pytest.raises(NotFound):
        repairs.get_repair_status(ctx(clock), ticket_number="RT-2026-0099")
    with pytest.raises(NotFound):
        invoice_lines("RT-2026-0099", "repair")


def test_an_order_needs_an_approved_request_and_a_vendor_address(staffed, clock):
    request = purchasing.create_purchase_request(
        ctx(clock),
        lines=[{"product": "LAP-14", "qty": 1, "unit_price": "820.00"}],
        suggested_vendor="",
        reason="New hire",
        needed_by="2026-12-01",
        requested_by="sally",
    )
    arguments = {
        "request_number": request["number"],
        "vendor": "Central Components GmbH",
        "vendor_email": "orders@central-components.example",
        "vendor_reference": "",
        "rfq_summary": "",
        "lines": [{"product": "LAP-14", "qty": 1, "unit_price": "800.00", "tax_rate": "20"}],
        "expected_date": "2026-11-10",
    }
    with pytest.raises(InvalidState):
        purchasing.create_purchase_order(ctx(clock), **arguments)
    purchasing.set_request_status(request["number"], "approved", "manager said yes", ctx(clock))
    with pytest.raises(InvalidData) as refused:
        purchasing.create_purchase_order(
            ctx(clock), **{**arguments, "vendor_email": "orders at cc", "expected_date": "2026-11-01"}
        )
    assert fields(refused) == ["vendor_email", "expected_date"]


# -- the three-way match ----------------------------------------------------------------------------------
def test_the_three_way_match_lists_differences_in_plain_words(staffed, clock):
    number = ordered(clock, ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00"))
    receive(clock, number, ("FAN-80", 6), ("PSU-650", 4))
    # a cent off is within the tolerance; the rest is not
    result = bill(
        clock,
        number,
        "CC-1",
        ("FAN-80", 8, "7.21", "20"),
        ("PSU-650", 4, "57.00", "8"),
        ("LAP-14", 1, "800.00", "20"),
    )
    assert result["matched"] is False
    assert result["differences"] == [
        "PSU-650 (bill line 2): billed with 8 % tax, ordered with 20 %",
        "LAP-14 (bill line 3): not on purchase order PO-2026-0001",
        "FAN-80: billed 8, but only 6 received",
    ]
    saved = db.session.scalars(select(VendorBill)).one()
    assert (saved.number, saved.status, saved.differences) == (
        "VB-2026-0001",
        "mismatch",
        result["differences"],
    )


def test_a_matching_bill_after_a_partial_receipt_and_a_second_bill_for_the_rest(staffed, clock):
    number = ordered(clock, ("FAN-80", 10, "7.20"))
    receive(clock, number, ("FAN-80", 6))
    first = bill(clock, number, "CC-2", ("FAN-80", 6, "7.20", "20"))
    assert (first["matched"], first["total"]) == (True, "51.84")
    purchasing.schedule_vendor_payment(ctx(clock), bill_number=first["number"])
    too_early = bill(clock, number, "CC-3", ("FAN-80", 4, "7.20", "20"))
    assert too_early["differences"] == ["FAN-80: billed 4 (plus 6 billed earlier), but only 6 received"]
    receive(clock, number, ("FAN-80", 4))
    rest = bill(clock, number, "CC-4", ("FAN-80", 4, "7.20", "20"))
    assert rest["matched"] is True
    statuses = db.session.execute(select(VendorBill.number, VendorBill.status).order_by(VendorBill.id)).all()
    assert [tuple(s) for s in statuses] == [
        ("VB-2026-0001", "scheduled"),
        ("VB-2026-0002", "superseded"),
        ("VB-2026-0003", "matched"),
    ]


def test_the_same_vendor_bill_is_not_entered_twice(staffed, clock):
    number = ordered(clock, ("FAN-80", 2, "7.20"))
    receive(clock, number, ("FAN-80", 2))
    entered = bill(clock, number, "CC-9", ("FAN-80", 2, "7.20", "20"))
    purchasing.schedule_vendor_payment(ctx(clock), bill_number=entered["number"])
    with pytest.raises(InvalidData) as refused:
        bill(clock, number, "CC-9", ("FAN-80", 2, "7.20", "20"))
    assert fields(refused) == ["bill_number"]
    assert "already entered as VB-2026-0001" in refused.value.errors[0].message


# -- numbering, retries, history -----------------------------------------------------------------------------
def test_numbers_are_per_kind_and_year(staffed, clock):
    clock.current = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    first = ordered(clock, ("FAN-80", 1, "7.20"))
    clock.current = datetime(2027, 1, 1, 8, 0, tzinfo=UTC)
    second = ordered(clock, ("FAN-80", 1, "7.20"))
    assert (first, second) == ("PO-2026-0001", "PO-2027-0001")
    numbers = db.session.scalars(select(PurchaseRequest.number).order_by(PurchaseRequest.id)).all()
    assert numbers == ["PR-2026-0001", "PR-2027-0001"]


def test_a_retried_step_books_once(staffed, clock):
    number = ordered(clock, ("FAN-80", 10, "7.20"), instance_id=7)
    assert count(OutboxMail) == 1  # the order went to the vendor
    first = receive(clock, number, ("FAN-80", 4), instance_id=7, task="book_receipt")
    again = receive(clock, number, ("FAN-80", 4), instance_id=7, task="book_receipt")
    assert first == again
    assert (count(GoodsReceipt), stock("FAN-80")) == (1, Decimal("7"))
    # the next pass of the loop (the process knows the first receipt) is a new receipt
    second = receive(clock, number, ("FAN-80", 6), instance_id=7, task="book_receipt", receipt=first)
    assert (second["number"], second["complete"], stock("FAN-80")) == ("GR-2026-0002", True, Decimal("13"))
    request = db.session.scalars(select(PurchaseRequest)).one()
    retried = purchasing.create_purchase_order(
        ctx(clock, instance_id=7),
        request_number=request.number,
        vendor="Central Components GmbH",
        vendor_email="orders@central-components.example",
        vendor_reference="",
        rfq_summary="",
        lines=[{"product": "FAN-80", "qty": 10, "unit_price": "7.20", "tax_rate": "20"}],
        expected_date="2026-11-10",
    )
    assert retried["number"] == number
    assert count(OutboxMail) == 1


def test_a_retried_parts_issue_books_the_stock_once(staffed, clock):
    ticket = repairs.create_repair_ticket(
        ctx(clock, instance_id=5, actor="rita"),
        customer_name="Northwind Traders",
        contact_email=None,
        contact_phone="+44 20 7946 0001",
        product="Espresso machine X2",
        product_category="appliance",
        serial_number="",
        fault_description="Leaks",
        purchase_date=None,
        location="in_house",
        address="",
    )
    again = repairs.create_repair_ticket(
        ctx(clock, instance_id=5, actor="rita"),
        customer_name="Northwind Traders",
        contact_email=None,
        contact_phone="+44 20 7946 0001",
        product="Espresso machine X2",
        product_category="appliance",
        serial_number="",
        fault_description="Leaks",
        purchase_date=None,
        location="in_house",
        address="",
    )
    assert ticket["number"] == again["number"] == "RT-2026-0001"
    assert ticket["days_since_purchase"] is None
    issue = {"ticket_number": ticket["number"], "issued": [{"product": "FAN-80", "qty": 2}], "missing": []}
    for _ in range(2):
        repairs.record_parts_issue(ctx(clock, task="book_parts_issue", instance_id=5, actor="ivan"), **issue)
        db.session.commit()
    assert stock("FAN-80") == Decimal("1")
    with pytest.raises(InvalidData) as refused:  # a new issue, all or nothing: no power supply left
        repairs.record_parts_issue(
            ctx(
                clock,
                task="book_parts_issue",
                instance_id=5,
                actor="ivan",
                parts_delivery={"receipt_number": "GR-1"},
            ),
            ticket_number=ticket["number"],
            issued=[{"product": "FAN-80", "qty": 1}, {"product": "PSU-650", "qty": 1}],
            missing=[],
        )
    assert fields(refused) == ["issued/1/qty"]
    assert refused.value.errors[0].message == "PSU-650: 1 wanted, only 0 in stock"
    assert stock("FAN-80") == Decimal("1")
    events = history("repair_ticket", db.session.scalars(select(RepairTicket.id)).one())
    assert [(e.action, e.actor) for e in events] == [("opened", "rita"), ("parts_issued", "ivan")]


def test_intake_refuses_a_purchase_date_in_the_future(staffed, clock):
    tomorrow = (clock.current + timedelta(days=1)).date().isoformat()
    with pytest.raises(InvalidData) as refused:
        staffed.start_process("repair_ticket", {**intake(clock), "purchase_date": tomorrow}, RITA)
    assert fields(refused) == ["purchase_date"]
    assert (count(RepairTicket), count(ProcessInstance)) == (0, 0)


def test_request_history_keeps_every_revision(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    request = db.session.scalars(select(PurchaseRequest)).one()
    for round_, price in enumerate(("700.00", "650.00"), start=1):
        complete(
            staffed, MONA, "approve_manager", {"decision": "reject", "reason": f"Round {round_}: cheaper"}
        )
        complete(
            staffed,
            SALLY,
            "revise_request",
            {
                "revision_action": "resubmit",
                "lines": [{"product": "LAP-14", "qty": 1, "unit_price": price}],
                "suggested_vendor": "",
                "purchase_reason": "New hire",
                "needed_by": "2026-12-01",
                "revision_comment": f"Now {price}",
            },
        )
    db.session.expire_all()
    events = history("purchase_request", request.id)
    assert [(e.action, e.actor) for e in events] == [
        ("submitted", "sally"),
        ("rejected", "mona"),
        ("revised", "sally"),
        ("rejected", "mona"),
        ("revised", "sally"),
    ]
    assert [e.detail.get("reason") for e in events if e.action == "rejected"] == [
        "Round 1: cheaper",
        "Round 2: cheaper",
    ]
    assert (request.revision, request.amount) == (3, Decimal("650.00"))
    assert find_task(staffed, MONA, "approve_manager").instance_id == instance_id


# -- reports ----------------------------------------------------------------------------------------------
def test_open_approvals_are_listed_oldest_first_with_their_age(staffed, clock):
    start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    clock.advance(days=1)
    start_request(staffed, ALEX, clock, ("LAP-14", 7, "820.00"))
    start_request(staffed, ALEX, clock, ("FAN-80", 1, "7.50"))  # below 500: nothing to decide
    clock.advance(hours=6)
    report = open_approvals(clock.current)
    assert [(a.number, a.level, a.requested_by, a.amount) for a in report] == [
        ("PR-2026-0001", "manager", "sally", Decimal("820.00")),
        ("PR-2026-0002", "manager", "alex", Decimal("5740.00")),
    ]
    assert [(a.age, a.overdue) for a in report] == [
        (timedelta(days=1, hours=6), False),
        (timedelta(hours=6), False),
    ]


def test_sla_breaches_and_what_a_ticket_invoices(staffed, clock):
    staffed.start_process("repair_ticket", intake(clock), RITA)
    clock.advance(hours=5)
    [late] = sla_breaches(clock.current)
    assert (late.number, late.kind, late.customer, late.overdue_by) == (
        "RT-2026-0001",
        "dispatch",
        "Northwind Traders",
        timedelta(hours=1),
    )
    assert [b.kind for b in sla_breaches(clock.current + timedelta(days=5))] == ["dispatch", "repair"]
    name, currency, lines = invoice_lines("RT-2026-0001", "diagnosis_fee")
    assert (name, currency, lines) == (
        "Northwind Traders",
        "EUR",
        [
            {
                "product": "Diagnosis fee",
                "qty": Decimal(1),
                "unit_price": Decimal("35.00"),
                "tax_rate": Decimal("20"),
            }
        ],
    )
    with pytest.raises(InvalidState):  # under warranty and not repaired: no repair invoice
        invoice_lines("RT-2026-0001", "repair")
    with pytest.raises(InvalidData):
        invoice_lines("RT-2026-0001", "goods")
