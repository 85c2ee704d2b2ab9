"""purchase_approval driven through the engine and the database as its users drive it: approval by
amount, four-eyes, rejection with a reason, revise or withdraw, reminders and escalation, then
order, partial receipts, the vendor bill's three-way match and the payment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from engine import Actor, Forbidden, InvalidData
from engine.business.common import Product, history
from engine.business.mail import OutboxMail
from engine.business.purchasing import (
    GoodsReceipt,
    PurchaseOrder,
    PurchaseRequest,
    VendorBill,
    open_approvals,
    request_by_number,
)
from engine.db import db
from engine.models import ProcessInstance
from engine.users import add_user
from tests.conftest import ALEX, DIANA, MONA, PAUL, SALLY

IVAN = Actor.of("ivan", "inventory")
PEOPLE = {
    "sally": ["sales"],
    "mona": ["manager"],
    "diana": ["director", "manager"],
    "alex": ["accounting"],
    "paul": ["purchasing"],
    "ivan": ["inventory"],
    "rita": ["receptionist"],
    "dora": ["dispatcher"],
    "tom": ["technician"],
    "cora": ["customer_service"],
}
CATALOGUE = [
    # code, name, sale price, purchase price, stock
    ("FAN-80", "Cooling fan 80 mm", "18.00", "7.50", "3"),
    ("PSU-650", "Power supply 650 W", "95.00", "58.00", "0"),
    ("MB-X2", "Mainboard for X2", "690.00", "540.00", "0"),
    ("LAP-14", 'Laptop 14"', "1150.00", "820.00", "5"),
]


# -- the office and the people in it (used by the repair ticket tests too) ---------------------------
def staff(office):
    """The office with its users (for role look-ups and e-mail) and a small catalogue."""
    for username, roles in PEOPLE.items():
        add_user(username, roles, email=f"{username}@office.example")
    for code, name, price, cost, stock in CATALOGUE:
        db.session.add(
            Product(
                code=code,
                name=name,
                unit_price=Decimal(price),
                purchase_price=Decimal(cost),
                tax_rate=Decimal("20"),
                stock=Decimal(stock),
            )
        )
    db.session.commit()
    return office


@pytest.fixture
def staffed(office):
    return staff(office)


def open_specs(office, actor: Actor) -> list[str]:
    return sorted(t.spec_id for t in office.tasks_for(actor, limit=200).tasks)


def find_task(office, actor: Actor, spec_id: str, instance_id: int | None = None):
    found = [
        t
        for t in office.tasks_for(actor, limit=200).tasks
        if t.spec_id == spec_id and (instance_id is None or t.instance_id == instance_id)
    ]
    assert len(found) == 1, f"{actor.username} sees {[t.spec_id for t in found]} for {spec_id}"
    return found[0]


def complete(office, actor: Actor, spec_id: str, data: dict[str, Any], instance_id: int | None = None):
    """Pick the task from the actor's inbox, claim it unless it is theirs already, complete it."""
    task = find_task(office, actor, spec_id, instance_id)
    if task.assignee is None:
        office.claim_task(task.id, actor)
    office.complete_task(task.id, actor, data)
    return task


def fire(office, clock, **delta: float) -> None:
    clock.advance(**delta)
    office.fire_due_timers(clock.current)


def status_of(instance_id: int) -> str:
    db.session.expire_all()
    return db.session.get(ProcessInstance, instance_id).status


def actions(document) -> list[str]:
    return [e.action for e in history(document.__tablename__, document.id)]


def request_for(instance_id: int) -> PurchaseRequest:
    db.session.expire_all()
    return db.session.scalars(select(PurchaseRequest).where(PurchaseRequest.instance_id == instance_id)).one()


def order_for(instance_id: int) -> PurchaseOrder:
    db.session.expire_all()
    return db.session.scalars(select(PurchaseOrder).where(PurchaseOrder.instance_id == instance_id)).one()


def utc(moment: datetime) -> datetime:
    """SQLite gives the stored UTC moment back without its zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start_request(office, actor: Actor, clock, *lines: tuple[str, float, str], **fields: Any) -> int:
    data = {
        "lines": [{"product": p, "qty": q, "unit_price": price} for p, q, price in lines],
        "suggested_vendor": fields.get("suggested_vendor", ""),
        "purchase_reason": fields.get("purchase_reason", "Stock for the service van"),
        "needed_by": fields.get("needed_by", (clock.current + timedelta(days=10)).date().isoformat()),
    }
    return office.start_process("purchase_approval", data, actor)


def order_data(clock, *lines: tuple[str, float, str], days: int = 7) -> dict[str, Any]:
    return {
        "rfq_summary": "Asked two vendors; Central Components is cheapest",
        "vendor": "Central Components GmbH",
        "vendor_email": "orders@central-components.example",
        "vendor_quote_reference": "CC-Q-7781",
        "order_lines": [
            {"product": p, "qty": q, "unit_price": price, "tax_rate": "20"} for p, q, price in lines
        ],
        "expected_date": (clock.current + timedelta(days=days)).date().isoformat(),
    }


def receipt_data(clock, *lines: tuple[str, float], note: str = "") -> dict[str, Any]:
    return {
        "received_lines": [{"product": p, "qty": q} for p, q in lines],
        "delivery_note": note,
        "received_on": clock.current.date().isoformat(),
    }


def bill_data(clock, number: str, *lines: tuple[str, float, str]) -> dict[str, Any]:
    return {
        "vendor_bill_number": number,
        "bill_date": clock.current.date().isoformat(),
        "bill_due_date": (clock.current + timedelta(days=30)).date().isoformat(),
        "bill_lines": [
            {"product": p, "qty": q, "unit_price": price, "tax_rate": "20"} for p, q, price in lines
        ],
    }


# -- approval by amount ----------------------------------------------------------------------------------
def test_below_500_is_approved_automatically(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("FAN-80", 20, "7.50"))
    request = request_for(instance_id)
    assert (request.number, request.amount, request.status) == ("PR-2026-0001", Decimal("150.00"), "approved")
    assert request.requested_by == "sally"
    assert open_specs(staffed, MONA) == []
    assert open_specs(staffed, PAUL) == ["select_vendor"]
    assert actions(request) == ["submitted", "approved"]
    approved = history("purchase_request", request.id)[-1]
    assert (approved.actor, approved.detail["level"], request.decided_by) == ("system", "auto", None)


def test_manager_approves_between_500_and_5000(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    assert open_specs(staffed, MONA) == ["approve_manager"]
    task = find_task(staffed, MONA, "approve_manager")
    assert task.title == "Approve purchase request PR-2026-0001 (820.00 EUR)"
    assert (task.document_type, task.document_key) == ("purchase_request", "PR-2026-0001")
    assert open_specs(staffed, PAUL) == []
    complete(staffed, MONA, "approve_manager", {"decision": "approve", "reason": "Needed for the new hire"})
    request = request_for(instance_id)
    assert (request.status, request.decided_by) == ("approved", "mona")
    assert open_specs(staffed, DIANA) == []
    assert open_specs(staffed, PAUL) == ["select_vendor"]
    approved = history("purchase_request", request.id)[-1]
    assert (approved.actor, approved.detail["level"], approved.detail["comment"]) == (
        "mona",
        "manager",
        "Needed for the new hire",
    )


def test_5000_and_above_needs_the_manager_then_the_director(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 7, "820.00"))
    assert request_for(instance_id).amount == Decimal("5740.00")
    complete(staffed, MONA, "approve_manager", {"decision": "approve"})
    assert open_specs(staffed, MONA) == []  # the second approval is the director's
    assert open_specs(staffed, PAUL) == []
    assert request_for(instance_id).status == "submitted"
    complete(staffed, DIANA, "approve_director", {"decision": "approve", "reason": "Budgeted"})
    request = request_for(instance_id)
    assert (request.status, request.decided_by) == ("approved", "diana")
    assert open_specs(staffed, PAUL) == ["select_vendor"]


def test_a_requester_who_is_a_manager_can_neither_see_nor_decide_their_request(staffed, clock):
    start_request(staffed, MONA, clock, ("LAP-14", 1, "820.00"))
    assert open_specs(staffed, MONA) == []
    task = find_task(staffed, DIANA, "approve_manager")
    assert task.excluded_users == ("mona",)
    with pytest.raises(Forbidden):
        staffed.claim_task(task.id, MONA)
    with pytest.raises(Forbidden):
        staffed.complete_task(task.id, MONA, {"decision": "approve"})
    complete(staffed, DIANA, "approve_manager", {"decision": "approve"})
    assert open_specs(staffed, PAUL) == ["select_vendor"]


# -- rejection, revision, withdrawal -------------------------------------------------------------------------
def test_rejection_needs_a_reason_and_the_requester_revises_and_resubmits(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    task = find_task(staffed, MONA, "approve_manager")
    staffed.claim_task(task.id, MONA)
    with pytest.raises(InvalidData) as refused:
        staffed.complete_task(task.id, MONA, {"decision": "reject"})
    assert [e.field for e in refused.value.errors] == ["reason"]
    staffed.complete_task(task.id, MONA, {"decision": "reject", "reason": "Too expensive, take a used one"})
    rejected_at = clock.current
    request = request_for(instance_id)  # recorded now, not when the requester gets to it
    assert (request.status, request.decided_by, utc(request.decided_at)) == ("rejected", "mona", rejected_at)
    assert actions(request) == ["submitted", "rejected"]
    clock.advance(days=1)  # the requester revises the next day

    revise = find_task(staffed, SALLY, "revise_request")
    assert (revise.assignee, revise.title) == ("sally", "Revise purchase request PR-2026-0001")
    assert open_specs(staffed, PAUL) == []  # assigned to the requester, not to the fallback role
    with pytest.raises(Forbidden):
        staffed.complete_task(revise.id, PAUL, {"revision_action": "withdraw", "revision_comment": "no"})
    complete(
        staffed,
        SALLY,
        "revise_request",
        {
            "revision_action": "resubmit",
            "lines": [{"product": "LAP-14", "qty": 1, "unit_price": "450.00"}],
            "suggested_vendor": "Refurb Ltd",
            "purchase_reason": "Used laptop for the new hire",
            "needed_by": (clock.current + timedelta(days=14)).date().isoformat(),
            "revision_comment": "A used one instead",
        },
    )
    request = request_for(instance_id)
    assert (request.amount, request.revision, request.status) == (Decimal("450.00"), 2, "approved")
    assert request.suggested_vendor == "Refurb Ltd"
    assert open_specs(staffed, PAUL) == ["select_vendor"]  # below 500 now: approved automatically
    events = history("purchase_request", request.id)
    assert [e.action for e in events] == ["submitted", "rejected", "revised", "approved"]
    rejected, revised, approved = events[1], events[2], events[3]
    assert (approved.actor, approved.detail["level"], approved.detail["comment"]) == ("system", "auto", None)
    assert (rejected.actor, rejected.detail["reason"], rejected.detail["level"]) == (
        "mona",
        "Too expensive, take a used one",
        "manager",
    )
    assert (utc(rejected.at), rejected.detail["revision"]) == (rejected_at, 1)
    assert utc(revised.at) == rejected_at + timedelta(days=1)
    assert revised.actor == "sally"
    assert revised.detail["comment"] == "A used one instead"
    assert revised.detail["before"] == {
        "lines": [{"product": "LAP-14", "qty": "1", "unit_price": "820.00"}],
        "amount": "820.00",
    }


def test_a_director_rejection_is_recorded_with_the_director_and_the_reason(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 7, "820.00"))
    complete(staffed, MONA, "approve_manager", {"decision": "approve", "reason": "Fine by me"})
    clock.advance(hours=3)
    complete(
        staffed, DIANA, "approve_director", {"decision": "reject", "reason": "Over the quarter's budget"}
    )
    request = request_for(instance_id)
    assert (request.status, request.decided_by, utc(request.decided_at)) == (
        "rejected",
        "diana",
        clock.current,
    )
    rejected = history("purchase_request", request.id)[-1]
    assert (rejected.action, rejected.actor, utc(rejected.at)) == ("rejected", "diana", clock.current)
    assert (rejected.detail["reason"], rejected.detail["level"]) == ("Over the quarter's budget", "director")
    assert staffed.instance_data(instance_id)["request_status"]["status"] == "rejected"
    assert find_task(staffed, SALLY, "revise_request").assignee == "sally"


def test_the_requester_withdraws_a_rejected_request(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 2, "820.00"))
    complete(staffed, MONA, "approve_manager", {"decision": "reject", "reason": "Not this quarter"})
    with pytest.raises(InvalidData) as refused:  # withdrawing needs a comment
        complete(staffed, SALLY, "revise_request", {"revision_action": "withdraw", "revision_comment": ""})
    assert "revision_comment" in [e.field for e in refused.value.errors]
    complete(staffed, SALLY, "revise_request", {"revision_action": "withdraw", "revision_comment": "Agreed"})
    assert status_of(instance_id) == "completed"
    request = request_for(instance_id)
    assert request.status == "withdrawn"
    assert actions(request) == ["submitted", "rejected", "withdrawn"]
    assert history("purchase_request", request.id)[-1].detail["reason"] == "Agreed"


# -- reminders and escalation --------------------------------------------------------------------------------
def reminders() -> list[tuple[str, str]]:
    db.session.expire_all()
    return sorted(
        db.session.execute(
            select(OutboxMail.to_address, OutboxMail.subject).where(OutboxMail.kind == "approval_reminder")
        ).tuples()
    )


def test_reminder_after_two_days_and_escalation_to_the_director_after_five(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    started = clock.current
    fire(staffed, clock, days=1, hours=23)
    assert reminders() == []
    fire(staffed, clock, hours=1, minutes=1)
    sent = reminders()
    assert [to for to, _ in sent] == ["diana@office.example", "mona@office.example"]
    assert all("PR-2026-0001" in subject for _, subject in sent)
    [waiting] = open_approvals(clock.current)
    assert (waiting.number, waiting.level, waiting.requested_by) == ("PR-2026-0001", "manager", "sally")
    assert (waiting.age_days, waiting.overdue) == (2, True)
    assert open_specs(staffed, MONA) == ["approve_manager"]  # the reminder leaves the task open

    fire(staffed, clock, days=3)  # day 5: the director takes over
    assert open_specs(staffed, MONA) == []
    assert open_specs(staffed, DIANA) == ["approve_director"]
    [waiting] = open_approvals(clock.current)
    assert (waiting.level, waiting.waiting_since) == ("director", started + timedelta(days=5, minutes=1))
    complete(staffed, DIANA, "approve_director", {"decision": "approve"})
    assert request_for(instance_id).status == "approved"
    assert open_approvals(clock.current) == []
    assert open_specs(staffed, PAUL) == ["select_vendor"]


# -- order, receipts, bill, payment --------------------------------------------------------------------------
def approved_request(office, clock) -> int:
    """A request below 500: 10 fans and 4 power supplies, approved at once."""
    return start_request(office, SALLY, clock, ("FAN-80", 10, "7.50"), ("PSU-650", 4, "58.00"))


def test_order_partial_receipt_rest_matched_bill_and_payment(staffed, clock):
    instance_id = approved_request(staffed, clock)
    complete(
        staffed, PAUL, "select_vendor", order_data(clock, ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00"))
    )
    order = order_for(instance_id)
    assert (order.number, order.status, order.total) == ("PO-2026-0001", "open", Decimal("360.00"))
    assert request_for(instance_id).status == "ordered"
    [mail] = db.session.scalars(select(OutboxMail).where(OutboxMail.kind == "purchase_order")).all()
    assert mail.to_address == "orders@central-components.example"
    assert "PO-2026-0001" in mail.subject and "CC-Q-7781" in mail.body
    receive = find_task(staffed, IVAN, "receive_goods")
    assert (receive.document_type, receive.document_key) == ("purchase_order", "PO-2026-0001")

    fire(staffed, clock, days=2)
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 6), ("PSU-650", 4), note="DN-1"))
    assert order_for(instance_id).status == "partially_received"
    assert open_specs(staffed, IVAN) == ["receive_goods"]  # the rest is still to come
    assert open_specs(staffed, ALEX) == []
    fire(staffed, clock, days=1)
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 4), note="DN-2"))
    order = order_for(instance_id)
    assert order.status == "received"
    assert [(line.product, line.received_qty) for line in order.lines] == [
        ("FAN-80", Decimal("10")),
        ("PSU-650", Decimal("4")),
    ]
    receipts = db.session.scalars(select(GoodsReceipt).order_by(GoodsReceipt.id)).all()
    assert [(r.number, r.delivery_note, r.complete) for r in receipts] == [
        ("GR-2026-0001", "DN-1", False),
        ("GR-2026-0002", "DN-2", True),
    ]
    stock = dict(db.session.execute(select(Product.code, Product.stock)).tuples().all())
    assert (stock["FAN-80"], stock["PSU-650"]) == (Decimal("13"), Decimal("4"))

    complete(
        staffed,
        ALEX,
        "enter_vendor_bill",
        bill_data(clock, "CC-INV-501", ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00")),
    )
    assert status_of(instance_id) == "completed"
    bill = db.session.scalars(select(VendorBill)).one()
    assert (bill.number, bill.vendor_bill_number, bill.matched, bill.differences) == (
        "VB-2026-0001",
        "CC-INV-501",
        True,
        [],
    )
    assert (bill.status, bill.payment_date, bill.total) == (
        "scheduled",
        (clock.current + timedelta(days=30)).date(),
        Decimal("360.00"),
    )
    assert order_for(instance_id).status == "billed"
    assert actions(bill) == ["entered", "payment_scheduled"]
    assert actions(order_for(instance_id)) == ["issued", "goods_received", "goods_received", "billed"]


@pytest.mark.parametrize("resolution", ["corrected_bill", "accept_difference"])
def test_a_bill_that_does_not_match_goes_to_purchasing(staffed, clock, resolution):
    instance_id = approved_request(staffed, clock)
    complete(
        staffed, PAUL, "select_vendor", order_data(clock, ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00"))
    )
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 10), ("PSU-650", 4)))
    complete(
        staffed,
        ALEX,
        "enter_vendor_bill",
        bill_data(clock, "CC-INV-502", ("FAN-80", 10, "7.90"), ("PSU-650", 5, "57.00")),
    )
    assert open_specs(staffed, ALEX) == []
    task = find_task(staffed, PAUL, "resolve_bill_mismatch")
    assert task.title == "Bill VB-2026-0001 does not match PO-2026-0001"
    differences = staffed.instance_data(instance_id)["bill"]["differences"]
    assert differences == [
        "FAN-80 (bill line 1): billed at 7.90, ordered at 7.20 EUR",
        "PSU-650: billed 5, but only 4 received",
        "Total: billed 436.80 EUR, the order's prices give 428.40 EUR",
    ]
    if resolution == "corrected_bill":
        complete(
            staffed, PAUL, "resolve_bill_mismatch", {"resolution": resolution, "resolution_note": "New bill"}
        )
        assert open_specs(staffed, ALEX) == ["enter_vendor_bill"]
        complete(
            staffed,
            ALEX,
            "enter_vendor_bill",
            bill_data(clock, "CC-INV-502-C", ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00")),
        )
        bills = db.session.scalars(select(VendorBill).order_by(VendorBill.id)).all()
        assert [(b.number, b.status) for b in bills] == [
            ("VB-2026-0001", "superseded"),
            ("VB-2026-0002", "scheduled"),
        ]
    else:
        note = "Vendor credits the extra unit next month"
        complete(staffed, PAUL, "resolve_bill_mismatch", {"resolution": resolution, "resolution_note": note})
        bill = db.session.scalars(select(VendorBill)).one()
        assert (bill.status, bill.resolution_note) == ("scheduled", note)
        assert actions(bill) == ["entered", "difference_accepted", "payment_scheduled"]
    assert status_of(instance_id) == "completed"


def test_an_overdue_delivery_gives_purchasing_a_follow_up_task(staffed, clock):
    instance_id = approved_request(staffed, clock)
    complete(staffed, PAUL, "select_vendor", order_data(clock, ("FAN-80", 10, "7.20"), days=3))
    order = order_for(instance_id)
    assert order.delivery_due.isoformat().startswith("2026-11-05T23:59:59")
    fire(staffed, clock, days=3, hours=14)  # 2026-11-05 23:00: still due today
    assert open_specs(staffed, PAUL) == []
    fire(staffed, clock, hours=1)
    chase = find_task(staffed, PAUL, "chase_vendor")
    assert chase.title == "Chase vendor for PO-2026-0001"
    assert open_specs(staffed, IVAN) == ["receive_goods"]  # still waiting for the goods
    complete(
        staffed,
        PAUL,
        "chase_vendor",
        {"vendor_response": "Stuck in customs, ships Monday", "new_expected_date": "2026-11-10"},
    )
    order = order_for(instance_id)
    assert (order.expected_date.isoformat(), order.vendor_note) == (
        "2026-11-10",
        "Stuck in customs, ships Monday",
    )
    rescheduled = history("purchase_order", order.id)[-1]
    assert (rescheduled.action, rescheduled.actor, rescheduled.detail["previous_expected_date"]) == (
        "rescheduled",
        "paul",
        "2026-11-05",
    )
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 10)))
    assert open_specs(staffed, ALEX) == ["enter_vendor_bill"]


def test_request_document_is_linked_to_its_instance(staffed, clock):
    instance_id = start_request(staffed, SALLY, clock, ("LAP-14", 1, "820.00"))
    request = request_by_number("PR-2026-0001")
    assert request.instance_id == instance_id
    assert [(line.product, line.qty, line.unit_price, line.amount) for line in request.lines] == [
        ("LAP-14", Decimal("1"), Decimal("820.00"), Decimal("820.00"))
    ]
    assert history("purchase_request", request.id)[0].instance_id == instance_id


def test_a_rescheduled_delivery_is_followed_up_at_the_new_date_not_before(staffed, clock):
    instance_id = approved_request(staffed, clock)
    complete(
        staffed,
        PAUL,
        "select_vendor",
        order_data(clock, ("FAN-80", 10, "7.20"), ("PSU-650", 4, "57.00"), days=3),
    )
    fire(staffed, clock, days=3, hours=15)  # 2026-11-06 00:00: the delivery of 2026-11-05 is overdue
    assert open_specs(staffed, PAUL) == ["chase_vendor"]
    complete(
        staffed,
        PAUL,
        "chase_vendor",
        {"vendor_response": "Stuck in customs, ships Monday", "new_expected_date": "2026-11-10"},
    )
    assert staffed.instance_data(instance_id)["purchase_order"]["delivery_due"] == "2026-11-10T23:59:59+00:00"
    receive = find_task(staffed, IVAN, "receive_goods")  # the receipt now waits for the new date
    assert (receive.title, receive.due_at) == (
        "Receive goods for PO-2026-0001",
        utc(order_for(instance_id).delivery_due),
    )
    assert receive.due_at.isoformat() == "2026-11-10T23:59:59+00:00"

    fire(staffed, clock, minutes=1)  # nothing falls due again for the old date
    assert open_specs(staffed, PAUL) == []
    fire(staffed, clock, days=2)  # a partial delivery before the new date
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("FAN-80", 10)))
    assert open_specs(staffed, PAUL) == []  # the rest is not overdue: still no follow-up
    assert find_task(staffed, IVAN, "receive_goods").due_at.isoformat() == "2026-11-10T23:59:59+00:00"
    fire(staffed, clock, days=2, hours=23, minutes=58)  # 2026-11-10 23:59: the new date has not passed
    assert open_specs(staffed, PAUL) == []

    fire(staffed, clock, minutes=2)  # 2026-11-11 00:01: it has
    chase = find_task(staffed, PAUL, "chase_vendor")
    assert chase.title == "Chase vendor for PO-2026-0001"
    assert open_specs(staffed, PAUL) == ["chase_vendor"]  # exactly one follow-up
    assert open_specs(staffed, IVAN) == ["receive_goods"]
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("PSU-650", 4)))
    assert open_specs(staffed, ALEX) == ["enter_vendor_bill"]
