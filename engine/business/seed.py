"""Demo data: master data and process instances at every interesting stage.

Instances are driven through the real processes with the engine's clock set back in time
(`engine.at(...)`), then the timers that fell due since are fired, so every document, task,
timer and audit event is exactly what the processes would have produced."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ..db import db
from ..engine import Actor, Engine
from ..errors import NotFound
from .common import Customer, Product, Vendor

CUSTOMERS = [
    ("Northwind Traders", "orders@northwind.example", "+44 20 7946 0001"),
    ("Baltic Amber Sp. z o.o.", "zakupy@baltic-amber.example", "+48 58 555 0102"),
    ("Vilnius Print UAB", "info@vilnius-print.example", "+370 5 255 0103"),
    ("Kama Logistics OOO", "office@kama-logistics.example", "+7 843 555 0104"),
    ("Hangzhou Tea Co.", "sales@hz-tea.example", "+86 571 5550 0105"),
]
PRODUCTS = [
    # code, name, sale price, purchase price, tax %, stock
    ("LAP-14", 'Laptop 14"', "1150.00", "820.00", "20", "25"),
    ("MON-27", 'Monitor 27"', "320.00", "210.00", "20", "40"),
    ("DOCK-1", "USB-C dock", "140.00", "85.00", "20", "60"),
    ("PRN-L", "Laser printer", "480.00", "330.00", "20", "8"),
    ("SRV-CARE", "Service contract (year)", "600.00", "0.00", "20", "999"),
    ("FAN-80", "Cooling fan 80 mm", "18.00", "7.50", "20", "3"),
    ("PSU-650", "Power supply 650 W", "95.00", "58.00", "20", "0"),
    ("CBL-HDMI", "HDMI cable 2 m", "12.00", "3.20", "20", "150"),
]
VENDORS = [
    ("Central Components GmbH", "orders@central-components.example"),
    ("Parts Express Ltd", "sales@parts-express.example"),
    ("Office Supply Hub", "hello@office-supply-hub.example"),
]


def seed_master_data() -> None:
    now = datetime.now(UTC)
    if db.session.scalar(select(Customer.id).limit(1)) is None:
        for name, email, phone in CUSTOMERS:
            db.session.add(Customer(name=name, email=email, phone=phone, created_at=now))
    if db.session.scalar(select(Product.id).limit(1)) is None:
        for code, name, price, cost, tax, stock in PRODUCTS:
            db.session.add(
                Product(
                    code=code,
                    name=name,
                    unit_price=Decimal(price),
                    purchase_price=Decimal(cost),
                    tax_rate=Decimal(tax),
                    stock=Decimal(stock),
                )
            )
    if db.session.scalar(select(Vendor.id).limit(1)) is None:
        for name, email in VENDORS:
            db.session.add(Vendor(name=name, email=email))
    db.session.commit()


class Office:
    """Drives processes the way the demo users would, at a chosen moment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.users = {u: Actor(u, frozenset(r)) for u, r in _users().items()}

    def actor(self, username: str) -> Actor:
        return self.users[username]

    def complete(
        self,
        instance_id: int,
        spec_id: str,
        username: str,
        data: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        from ..models import HumanTask

        task_id = db.session.scalar(
            select(HumanTask.id).where(
                HumanTask.instance_id == instance_id,
                HumanTask.spec_id == spec_id,
                HumanTask.status.in_(("open", "claimed")),
            )
        )
        if task_id is None:
            raise NotFound(f"instance {instance_id} has no open task {spec_id!r}")
        actor = self.actor(username)
        task = self.engine.task(task_id)
        if task.assignee is None:
            self.engine.claim_task(task_id, actor)
        form = data(self.engine.instance_data(instance_id)) if callable(data) else data
        self.engine.complete_task(task_id, actor, form)


def _users() -> dict[str, set[str]]:
    from ..models import User

    return {u.username: set(u.roles) for u in db.session.scalars(select(User))}


def _lead(company: str, contact: str, email: str, value: str) -> dict[str, Any]:
    return {
        "company": company,
        "contact_name": contact,
        "email": email,
        "phone": "+44 20 7946 0000",
        "source": "web_form",
        "interest": "Office equipment refresh",
        "estimated_value": value,
    }


def _quote(lines: list[tuple[str, int, str, str]]) -> dict[str, Any]:
    return {
        "lines": [
            {"product": p, "qty": q, "unit_price": price, "discount_percent": disc, "tax_rate": "20"}
            for p, q, price, disc in lines
        ],
        "validity_days": 30,
        "payment_terms_days": 14,
        "currency": "EUR",
        "quote_notes": "",
    }


def _to_invoice(office: Office, start: datetime, company: str, email: str) -> int:
    """A lead taken all the way to an issued invoice on `start`."""
    engine = office.engine
    with engine.at(start):
        iid = engine.start_process(
            "lead_to_invoice", _lead(company, "Anna Buyer", email, "5000.00"), office.actor("sally")
        )
        office.complete(
            iid, "qualify_lead", "sally", {"qualification": "qualified", "contact_note": "Budget ok"}
        )
        office.complete(
            iid,
            "prepare_quote",
            "sally",
            _quote([("LAP-14", 2, "1150.00", "0"), ("DOCK-1", 2, "140.00", "0")]),
        )
        office.complete(
            iid,
            "record_customer_decision",
            "sally",
            {"customer_decision": "accepted", "customer_reference": "PO-77"},
        )
        office.complete(
            iid,
            "create_sales_order",
            "olga",
            {
                "customer_reference": "PO-77",
                "requested_delivery_date": (start + timedelta(days=3)).date().isoformat(),
                "delivery_address": "1 Demo Street",
                "order_notes": "",
            },
        )
        office.complete(
            iid,
            "ship_order",
            "ivan",
            {
                "shipped_lines": [{"product": "LAP-14", "qty": 2}, {"product": "DOCK-1", "qty": 2}],
                "carrier": "DHL",
                "tracking_number": "JD0001",
                "shipped_on": start.date().isoformat(),
            },
        )
    return iid


def seed_demo(engine: Engine, now: datetime | None = None) -> int:
    """Seed everything; returns how many process instances were started."""
    seed_master_data()
    office = Office(engine)
    now = now or engine.now()
    started: list[int] = []

    # a lead waiting for qualification
    with engine.at(now - timedelta(hours=20)):
        started.append(
            engine.start_process(
                "lead_to_invoice",
                _lead("Vilnius Print UAB", "Jonas Petraitis", "jonas@vilnius-print.example", "2400.00"),
                office.actor("mark"),
            )
        )

    # a quote waiting for the manager's discount approval (15 % discount)
    with engine.at(now - timedelta(days=2)):
        iid = engine.start_process(
            "lead_to_invoice",
            _lead("Baltic Amber Sp. z o.o.", "Ewa Nowak", "ewa@baltic-amber.example", "8000.00"),
            office.actor("sally"),
        )
        office.complete(
            iid, "qualify_lead", "sally", {"qualification": "qualified", "contact_note": "Wants 5"}
        )
        office.complete(
            iid,
            "prepare_quote",
            "sally",
            _quote([("LAP-14", 5, "1150.00", "15"), ("MON-27", 5, "320.00", "10")]),
        )
        started.append(iid)

    # invoices: current, and at dunning levels 1, 2 and 3 (issued so that due + 1 / 15 / 30 passed)
    for days_ago, company, email in [
        (5, "Northwind Traders", "orders@northwind.example"),
        (20, "Kama Logistics OOO", "office@kama-logistics.example"),
        (34, "Hangzhou Tea Co.", "sales@hz-tea.example"),
        (50, "Northwind Traders", "orders@northwind.example"),
    ]:
        started.append(_to_invoice(office, now - timedelta(days=days_ago), company, email))
    oldest_invoice = started[-1]

    # a repair waiting for dispatch
    with engine.at(now - timedelta(hours=1)):
        started.append(
            engine.start_process(
                "repair_ticket",
                {
                    "customer_name": "Northwind Traders",
                    "contact_email": "orders@northwind.example",
                    "contact_phone": "+44 20 7946 0001",
                    "product": "Laser printer",
                    "product_category": "electronics",
                    "serial_number": "PRN-0042",
                    "fault_description": "Paper jam error on every print",
                    "purchase_date": (now - timedelta(days=400)).date().isoformat(),
                    "location": "on_site",
                    "address": "1 Demo Street, London",
                },
                office.actor("rita"),
            )
        )

    # a purchase request waiting for the director (7,500 > 5,000: manager approved already)
    with engine.at(now - timedelta(days=1)):
        iid = engine.start_process(
            "purchase_approval",
            {
                "lines": [
                    {"product": "LAP-14", "qty": 9, "unit_price": "820.00"},
                    {"product": "MON-27", "qty": 1, "unit_price": "120.00"},
                ],
                "suggested_vendor": "Central Components GmbH",
                "purchase_reason": "Laptops for the new sales team",
                "needed_by": (now + timedelta(days=14)).date().isoformat(),
            },
            office.actor("paul"),
        )
        office.complete(iid, "approve_manager", "mona", {"decision": "approve"})
        started.append(iid)

    # what fell due since fires day by day, as the scheduler would have: reminders, each dunning
    # letter in turn, call and escalation tasks
    moment = now - timedelta(days=51)
    while moment < now:
        engine.fire_due_timers(moment)
        with engine.at(moment), suppress(NotFound):  # accounting calls the oldest debtor when asked
            office.complete(
                oldest_invoice,
                "call_customer",
                "alex",
                {"call_outcome": "unreachable", "call_note": "Voicemail, left a message"},
            )
        moment += timedelta(days=1)
    engine.fire_due_timers(now)
    return len(started)
