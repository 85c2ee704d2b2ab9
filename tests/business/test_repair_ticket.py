"""repair_ticket driven through the engine and the database as reception, dispatch, technicians,
inventory, customer service, managers and accounting drive it: warranty, dispatch and repair
service levels, the customer's OK on an estimate, parts from stock or purchased, hand-back,
invoice and the satisfaction call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from engine import Actor, InvalidData
from engine.business.common import Product, history
from engine.business.purchasing import PurchaseRequest, VendorBill
from engine.business.repairs import RepairTicket, invoice_lines, sla_breaches
from engine.business.sales import Invoice
from engine.db import db
from tests.business.test_purchase_approval import (
    IVAN,
    bill_data,
    complete,
    find_task,
    fire,
    open_specs,
    order_data,
    receipt_data,
    staff,
    status_of,
)
from tests.conftest import ALEX, MONA, PAUL


@pytest.fixture
def staffed(office):
    return staff(office)


RITA = Actor.of("rita", "receptionist")
DORA = Actor.of("dora", "dispatcher")
TOM = Actor.of("tom", "technician")
CORA = Actor.of("cora", "customer_service")


def intake(clock, *, bought_days_ago: int | None = 100, **fields: Any) -> dict[str, Any]:
    bought = None if bought_days_ago is None else (clock.current - timedelta(days=bought_days_ago)).date()
    return {
        "customer_name": "Northwind Traders",
        "contact_email": "service@northwind.example",
        "contact_phone": "+44 20 7946 0001",
        "product": "Espresso machine X2",
        "product_category": "appliance",
        "serial_number": "X2-0042",
        "fault_description": "Does not heat up",
        "purchase_date": bought.isoformat() if bought else None,
        "location": "in_house",
        "address": "",
        **fields,
    }


def ticket_of(instance_id: int) -> RepairTicket:
    db.session.expire_all()
    return db.session.scalars(select(RepairTicket).where(RepairTicket.instance_id == instance_id)).one()


def dispatch(office, clock, technician: str = "tom", instance_id: int | None = None) -> None:
    complete(
        office,
        DORA,
        "dispatch_ticket",
        {
            "technician": technician,
            "scheduled_at": (clock.current + timedelta(hours=2)).isoformat(),
            "dispatch_notes": "Customer brings it to the counter",
        },
        instance_id,
    )


def diagnose(office, estimate: str, parts: list[tuple[str, float]], *, void: bool = False) -> None:
    complete(
        office,
        TOM,
        "diagnose_fault",
        {
            "findings": "Heating element burnt out",
            "estimate_amount": estimate,
            "parts_needed": [{"product": p, "qty": q} for p, q in parts],
            "warranty_void": void,
        },
    )


def repair(office, parts: list[tuple[str, float]], hours: float) -> None:
    complete(
        office,
        TOM,
        "repair_device",
        {
            "work_done": "Replaced the part, tested",
            "parts_used": [{"product": p, "qty": q} for p, q in parts],
            "labour_hours": hours,
        },
    )


def utc(moment: datetime) -> datetime:
    """SQLite gives the stored UTC moment back without its zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stock(code: str) -> Decimal:
    db.session.expire_all()
    return db.session.scalars(select(Product.stock).where(Product.code == code)).one()


def test_in_warranty_repair_from_intake_to_satisfaction_call(staffed, clock):
    """Every step reloads the instance from the database (the engine's cache is emptied)."""
    cache = staffed._cache
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    ticket = ticket_of(instance_id)
    assert (ticket.number, ticket.status, ticket.category) == ("RT-2026-0001", "open", "appliance")
    data = staffed.instance_data(instance_id)
    assert (data["ticket"]["days_since_purchase"], data["in_warranty"], data["chargeable"]) == (
        100,
        True,
        False,
    )
    assert open_specs(staffed, DORA) == ["dispatch_ticket"]

    cache.clear()
    clock.advance(hours=1)
    dispatch(staffed, clock)
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.technician, utc(ticket.dispatched_at)) == (
        "dispatched",
        "tom",
        clock.current,
    )
    cache.clear()
    fire(staffed, clock, hours=4)  # the dispatch SLA timer went with the dispatch task
    assert open_specs(staffed, MONA) == []
    diagnose_task = find_task(staffed, TOM, "diagnose_fault")
    assert (diagnose_task.assignee, diagnose_task.title) == ("tom", "Diagnose RT-2026-0001")

    cache.clear()
    diagnose(staffed, "0.00", [("FAN-80", 1)])
    assert open_specs(staffed, CORA) == []  # in warranty: no estimate to approve
    assert ticket_of(instance_id).status == "diagnosed"
    cache.clear()
    complete(
        staffed, IVAN, "issue_parts", {"parts_issued": [{"product": "FAN-80", "qty": 1}], "parts_missing": []}
    )
    assert stock("FAN-80") == Decimal("2")
    cache.clear()
    repair(staffed, [("FAN-80", 1)], 1.5)
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.labour_hours, ticket.parts_used) == (
        "repaired",
        Decimal("1.50"),
        [{"product": "FAN-80", "qty": "1"}],
    )

    cache.clear()
    handed_on = clock.current.date().isoformat()
    complete(
        staffed,
        CORA,
        "hand_back",
        {"handed_back_on": handed_on, "collected_by": "Ann Baker", "note": "Showed her the descaling"},
    )
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.closed_reason, ticket.handed_back_to) == ("closed", "repaired", "Ann Baker")
    assert ticket.handed_back_on.isoformat() == handed_on
    hand_back = staffed.instance_data(instance_id)["hand_back"]
    assert (hand_back["status"], hand_back["handed_back_on"], hand_back["handed_back_to"]) == (
        "handed_back",
        handed_on,
        "Ann Baker",
    )
    assert open_specs(staffed, ALEX) == []  # under warranty: no invoice
    cache.clear()
    fire(staffed, clock, days=2, hours=23)
    assert open_specs(staffed, CORA) == []
    fire(staffed, clock, hours=1, minutes=1)
    call = find_task(staffed, CORA, "satisfaction_call")
    assert call.title == "Satisfaction call for RT-2026-0001"
    cache.clear()
    complete(staffed, CORA, "satisfaction_call", {"reached": True, "satisfaction": 5})
    fire(staffed, clock, days=2)  # the 5-day repair check finds the ticket closed
    assert open_specs(staffed, MONA) == []
    assert status_of(instance_id) == "completed"
    events = history("repair_ticket", ticket.id)
    assert [(e.action, e.actor) for e in events] == [
        ("opened", "rita"),
        ("dispatched", "dora"),
        ("diagnosed", "tom"),
        ("parts_issued", "ivan"),
        ("repaired", "tom"),
        ("handed_back", "cora"),
        ("status_changed", "cora"),
    ]
    handed_back, closed = events[-2], events[-1]
    assert handed_back.detail == {
        "on": handed_on,
        "to": "Ann Baker",
        "note": "Showed her the descaling",
        "previous": "repaired",
    }
    # the ticket was handed_back before it was closed
    assert (closed.detail["previous"], closed.detail["status"]) == ("handed_back", "closed")
    assert all(e.instance_id == instance_id for e in events)
    assert events[1].detail["within_sla"] is True


def test_not_dispatched_within_4_hours_escalates_to_the_manager(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    fire(staffed, clock, hours=3, minutes=59)
    assert open_specs(staffed, MONA) == []
    assert sla_breaches(clock.current) == []
    fire(staffed, clock, minutes=2)
    escalation = find_task(staffed, MONA, "escalate_dispatch")
    assert (escalation.title, escalation.priority) == (
        "Ticket RT-2026-0001 not dispatched within 4 hours",
        90,
    )
    [breach] = sla_breaches(clock.current)
    assert (breach.number, breach.kind, breach.overdue_by) == (
        "RT-2026-0001",
        "dispatch",
        timedelta(minutes=1),
    )
    complete(staffed, MONA, "escalate_dispatch", {"action_taken": "Called Dora, Tom takes it today"})
    assert open_specs(staffed, DORA) == ["dispatch_ticket"]  # dispatching is still Dora's
    dispatch(staffed, clock)
    assert sla_breaches(clock.current) == []
    assert history("repair_ticket", ticket_of(instance_id).id)[-1].detail["within_sla"] is False


def test_not_repaired_within_5_days_escalates_to_the_manager(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    dispatch(staffed, clock)
    diagnose(staffed, "0.00", [])
    assert open_specs(staffed, TOM) == ["repair_device"]  # no parts needed
    fire(staffed, clock, days=4, hours=23)
    assert open_specs(staffed, MONA) == []
    fire(staffed, clock, hours=1, minutes=1)
    escalation = find_task(staffed, MONA, "escalate_repair")
    assert escalation.title == "Repair RT-2026-0001 is late (5 days)"
    [breach] = sla_breaches(clock.current)
    assert (breach.kind, breach.technician) == ("repair", "tom")
    complete(staffed, MONA, "escalate_repair", {"action_taken": "Customer informed, Tom prioritises it"})
    repair(staffed, [], 1)
    assert sla_breaches(clock.current) == []
    assert ticket_of(instance_id).status == "repaired"


def test_dispatch_refuses_someone_who_is_not_a_technician(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    with pytest.raises(InvalidData) as refused:
        dispatch(staffed, clock, technician="sally")
    assert [e.field for e in refused.value.errors] == ["technician"]
    assert "technician role" in refused.value.errors[0].message
    with pytest.raises(InvalidData) as unknown:
        dispatch(staffed, clock, technician="nobody")
    assert [e.field for e in unknown.value.errors] == ["technician"]
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.technician) == ("open", None)
    assert open_specs(staffed, DORA) == ["dispatch_ticket"]  # nothing happened: fix and retry
    dispatch(staffed, clock)
    assert ticket_of(instance_id).technician == "tom"


def test_customer_declines_a_chargeable_estimate_and_pays_the_diagnosis_fee(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock, bought_days_ago=None), RITA)
    data = staffed.instance_data(instance_id)
    assert (data["chargeable"], data["approval_threshold"]) == (True, "100.00")
    dispatch(staffed, clock)
    diagnose(staffed, "250.00", [("MB-X2", 1)])
    approval = find_task(staffed, CORA, "approve_estimate")
    assert approval.title == "Estimate 250.00 for RT-2026-0001: customer's OK"
    complete(staffed, CORA, "approve_estimate", {"customer_decision": "declined", "contact_channel": "phone"})
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.closed_reason) == ("closed", "estimate declined")
    assert open_specs(staffed, IVAN) == [] and open_specs(staffed, TOM) == []
    invoice = db.session.scalars(select(Invoice).where(Invoice.source_number == ticket.number)).one()
    assert (invoice.kind, invoice.total_net, invoice.total) == (
        "diagnosis_fee",
        Decimal("35.00"),
        Decimal("42.00"),
    )
    fire(staffed, clock, days=5, minutes=1)  # the repair check finds the ticket closed: no escalation
    assert open_specs(staffed, MONA) == []
    assert status_of(instance_id) == "completed"


def test_chargeable_on_site_repair_is_invoiced(staffed, clock):
    on_site = intake(clock, bought_days_ago=800, location="on_site", address="12 Dock Road, London")
    instance_id = staffed.start_process("repair_ticket", on_site, RITA)
    dispatch(staffed, clock)
    diagnose(staffed, "80.00", [])  # below the 100.00 threshold: no call to the customer
    assert open_specs(staffed, CORA) == []
    repair(staffed, [("FAN-80", 1)], 2)
    assert open_specs(staffed, CORA) == []  # on site: the technician hands it back
    complete(
        staffed,
        TOM,
        "hand_back_on_site",
        {"handed_back_on": clock.current.date().isoformat(), "accepted_by": "Site manager"},
    )
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.handed_back_to) == ("closed", "Site manager")
    events = history("repair_ticket", ticket.id)
    assert [e.action for e in events][-3:] == ["repaired", "handed_back", "status_changed"]
    handed_back, closed = events[-2:]  # handed back by the technician, then closed
    assert (handed_back.actor, handed_back.detail["to"], handed_back.detail["previous"]) == (
        "tom",
        "Site manager",
        "repaired",
    )
    assert (closed.detail["previous"], closed.detail["status"]) == ("handed_back", "closed")
    name, currency, lines = invoice_lines(ticket.number, "repair")
    assert (name, currency) == ("Northwind Traders", "EUR")
    assert lines == [
        {
            "product": "FAN-80",
            "qty": Decimal("1"),
            "unit_price": Decimal("18.00"),
            "tax_rate": Decimal("20.000"),
        },
        {
            "product": "Labour",
            "qty": Decimal("2.00"),
            "unit_price": Decimal("60.00"),
            "tax_rate": Decimal("20"),
        },
    ]
    invoice = db.session.scalars(select(Invoice).where(Invoice.source_number == ticket.number)).one()
    assert (invoice.kind, invoice.total_net, invoice.total) == (
        "repair",
        Decimal("138.00"),
        Decimal("165.60"),
    )


def test_missing_parts_are_purchased_and_the_ticket_goes_on_when_they_arrive(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    dispatch(staffed, clock)
    diagnose(staffed, "0.00", [("MB-X2", 1), ("FAN-80", 1)])
    complete(
        staffed,
        IVAN,
        "issue_parts",
        {
            "parts_issued": [{"product": "FAN-80", "qty": 1}],
            "parts_missing": [{"product": "MB-X2", "qty": 1}],
        },
    )
    assert ticket_of(instance_id).status == "waiting_parts"
    assert open_specs(staffed, TOM) == []  # no repair before the parts are in
    request = db.session.scalars(select(PurchaseRequest)).one()
    assert (request.requested_by, request.amount, request.reason) == (
        "ivan",
        Decimal("540.00"),
        "Parts for repair ticket RT-2026-0001",
    )
    assert request.needed_by == (clock.current + timedelta(days=5)).date()
    approval = find_task(staffed, MONA, "approve_manager")
    assert (approval.instance_id, approval.process_id) == (instance_id, "purchase_approval")
    complete(staffed, MONA, "approve_manager", {"decision": "approve"})
    complete(staffed, PAUL, "select_vendor", order_data(clock, ("MB-X2", 1, "535.00"), days=2))
    fire(staffed, clock, days=1)
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("MB-X2", 1)))
    assert stock("MB-X2") == Decimal("1")
    # the goods are in: inventory issues them while accounting still waits for the bill
    assert open_specs(staffed, IVAN) == ["issue_parts"]
    assert open_specs(staffed, ALEX) == ["enter_vendor_bill"]
    assert staffed.instance_data(instance_id)["parts_delivery"]["purchase_order_number"] == "PO-2026-0001"
    complete(
        staffed, IVAN, "issue_parts", {"parts_issued": [{"product": "MB-X2", "qty": 1}], "parts_missing": []}
    )
    assert stock("MB-X2") == Decimal("0")
    ticket = ticket_of(instance_id)
    assert ticket.status == "diagnosed"
    assert [entry["lines"] for entry in ticket.parts_issued] == [
        [{"product": "FAN-80", "qty": "1"}],
        [{"product": "MB-X2", "qty": "1"}],
    ]
    repair(staffed, [("MB-X2", 1), ("FAN-80", 1)], 3)
    complete(staffed, ALEX, "enter_vendor_bill", bill_data(clock, "CC-77", ("MB-X2", 1, "535.00")))
    assert db.session.scalars(select(VendorBill.status)).one() == "scheduled"
    complete(
        staffed,
        CORA,
        "hand_back",
        {"handed_back_on": clock.current.date().isoformat(), "collected_by": "Ann"},
    )
    assert ticket_of(instance_id).status == "closed"
    fire(staffed, clock, days=3, minutes=1)
    complete(staffed, CORA, "satisfaction_call", {"reached": False})
    fire(staffed, clock, days=2)
    assert status_of(instance_id) == "completed"
    assert open_specs(staffed, MONA) == []


def test_a_rescheduled_parts_delivery_is_followed_up_at_the_new_date(staffed, clock):
    """The purchase runs inside the ticket (call activity): the new date reaches its goods receipt."""
    staffed.start_process("repair_ticket", intake(clock), RITA)
    dispatch(staffed, clock)
    diagnose(staffed, "0.00", [("MB-X2", 1)])
    complete(
        staffed, IVAN, "issue_parts", {"parts_issued": [], "parts_missing": [{"product": "MB-X2", "qty": 1}]}
    )
    complete(staffed, MONA, "approve_manager", {"decision": "approve"})
    complete(staffed, PAUL, "select_vendor", order_data(clock, ("MB-X2", 1, "535.00"), days=2))
    fire(staffed, clock, days=2, hours=15)  # 2026-11-05 00:00: the delivery of 2026-11-04 is overdue
    complete(
        staffed, PAUL, "chase_vendor", {"vendor_response": "Ships Friday", "new_expected_date": "2026-11-08"}
    )
    assert find_task(staffed, IVAN, "receive_goods").due_at.isoformat() == "2026-11-08T23:59:59+00:00"
    fire(staffed, clock, days=3, hours=23, minutes=55)  # 2026-11-08 23:55
    assert open_specs(staffed, PAUL) == []
    fire(staffed, clock, minutes=10)  # 2026-11-09 00:05
    assert open_specs(staffed, PAUL) == ["chase_vendor"]
    complete(staffed, IVAN, "receive_goods", receipt_data(clock, ("MB-X2", 1)))
    assert open_specs(staffed, IVAN) == ["issue_parts"]  # the ticket got its parts


def test_a_withdrawn_purchase_closes_the_ticket_without_repair(staffed, clock):
    instance_id = staffed.start_process("repair_ticket", intake(clock), RITA)
    dispatch(staffed, clock)
    diagnose(staffed, "0.00", [("MB-X2", 1)])
    complete(
        staffed, IVAN, "issue_parts", {"parts_issued": [], "parts_missing": [{"product": "MB-X2", "qty": 1}]}
    )
    complete(
        staffed, MONA, "approve_manager", {"decision": "reject", "reason": "Replace the machine instead"}
    )
    revise = find_task(staffed, IVAN, "revise_request")
    assert revise.assignee == "ivan"  # the requester is whoever found the parts missing
    complete(
        staffed,
        IVAN,
        "revise_request",
        {"revision_action": "withdraw", "revision_comment": "Customer agrees"},
    )
    ticket = ticket_of(instance_id)
    assert (ticket.status, ticket.closed_reason) == ("closed", "parts could not be purchased")
    assert db.session.scalars(select(PurchaseRequest.status)).one() == "withdrawn"
    assert open_specs(staffed, TOM) == []
