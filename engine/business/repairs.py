"""Repair tickets: intake, dispatch, diagnosis, parts from stock, repair and the SLA report.

The `repair_ticket` process calls the operations below; the sales module calls
`invoice_lines()` to invoice a repair or a diagnosis fee. Stock is booked when inventory
issues parts; parts used at the repair are what the customer is charged for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..errors import FieldError, InvalidData, InvalidState, NotFound
from ..models import User
from ..operations import OperationContext, operation
from .common import (
    MONEY,
    Contact,
    Customer,
    Model,
    Product,
    document_by_number,
    find_or_create_customer,
    money,
    money_text,
    next_number,
    parse_day,
    product_by_code,
    record_event,
    status_setter,
    to_decimal,
)
from .mail import queue_mail

DOCUMENT = "repair_ticket"
STATUSES = ("open", "dispatched", "diagnosed", "waiting_parts", "repaired", "handed_back", "closed")
DONE = ("repaired", "handed_back", "closed")
CATEGORIES = ("appliance", "electronics", "tool", "accessory", "refurbished")
LOCATIONS = ("on_site", "in_house")
INVOICE_KINDS = ("repair", "diagnosis_fee")

DISPATCH_SLA = timedelta(hours=4)
REPAIR_SLA = timedelta(days=5)
LABOUR_RATE = Decimal("60.00")  # per hour, without tax
LABOUR_TAX_RATE = Decimal("20")
LABOUR_TEXT = "Labour"
DIAGNOSIS_FEE = Decimal("35.00")
DIAGNOSIS_FEE_TAX_RATE = Decimal("20")
DIAGNOSIS_FEE_TEXT = "Diagnosis fee"


class RepairTicket(Model):
    __tablename__ = "repair_ticket"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    product: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(20))
    serial: Mapped[str] = mapped_column(String(100), default="")
    fault: Mapped[str] = mapped_column(Text)
    purchase_date: Mapped[date | None] = mapped_column(Date)
    location: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(Text, default="")
    technician: Mapped[str | None] = mapped_column(String(80), index=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatch_notes: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str | None] = mapped_column(Text)
    estimate: Mapped[Decimal | None] = mapped_column(MONEY)
    chargeable: Mapped[bool | None] = mapped_column(Boolean)
    # {product, qty} lists; qty as decimal strings. parts_issued holds one entry per issue.
    parts_needed: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parts_issued: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parts_missing: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parts_used: Mapped[list[Any]] = mapped_column(JSON, default=list)
    labour_hours: Mapped[Decimal | None] = mapped_column(Numeric(7, 2))
    work_done: Mapped[str | None] = mapped_column(Text)
    handed_back_on: Mapped[date | None] = mapped_column(Date)
    handed_back_to: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    closed_reason: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # service levels: when each step was due and when it happened
    dispatch_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    repair_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    diagnosed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    repaired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def ticket_by_number(number: str) -> RepairTicket:
    ticket: RepairTicket = document_by_number(RepairTicket, number)
    return ticket


def _actor(ctx: OperationContext, *tasks: str) -> str:
    """Who made this change: the engine's actor, or, while the engine reports only "system",
    the user who completed the task that led here (or who started the instance)."""
    if ctx.actor and ctx.actor != "system":
        return ctx.actor
    completed_by = ctx.data.get("completed_by") or {}
    for task in tasks:
        if completed_by.get(task):
            return str(completed_by[task])
    return str(ctx.data.get("started_by") or ctx.actor or "system")


def _event(ticket: RepairTicket, action: str, ctx: OperationContext, who: str, **detail: Any) -> None:
    ticket.updated_at = ctx.now
    record_event(DOCUMENT, ticket, action, actor=who, at=ctx.now, instance_id=ctx.instance_id, **detail)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_moment(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidData([FieldError(field, f"{value!r} is not a date and time")]) from None
    return _aware(moment)


def _part_lines(lines: Any, field: str) -> list[tuple[Product, Decimal]]:
    """Catalogue products and positive quantities, or InvalidData naming every bad line."""
    if lines is None:
        return []
    if not isinstance(lines, list):
        raise InvalidData([FieldError(field, "must be a list of {product, qty}")])
    problems: list[FieldError] = []
    parts: list[tuple[Product, Decimal]] = []
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            problems.append(FieldError(f"{field}/{i}", "must be {product, qty}"))
            continue
        product = qty = None
        try:
            product = product_by_code(_text(line.get("product")), f"{field}/{i}/product")
        except InvalidData as exc:
            problems.extend(exc.errors)
        try:
            qty = to_decimal(line.get("qty"), f"{field}/{i}/qty")
            if qty <= 0:
                problems.append(FieldError(f"{field}/{i}/qty", f"must be more than 0, got {qty}"))
        except InvalidData as exc:
            problems.extend(exc.errors)
        if product is not None and qty is not None:
            parts.append((product, qty))
    if problems:
        raise InvalidData(problems)
    return parts


def _plain_parts(parts: list[tuple[Product, Decimal]]) -> list[dict[str, str]]:
    return [{"product": p.code, "qty": str(q)} for p, q in parts]


def _notify(to: str, subject: str, body: str, ctx: OperationContext, kind: str, key: str) -> None:
    """Queue a mail once: a retried step finds its dedupe key in the outbox and adds nothing."""
    queue_mail(to, subject, body, now=ctx.now, kind=kind, dedupe_key=key, instance_id=ctx.instance_id or None)


def _summary(ticket: RepairTicket) -> dict[str, Any]:
    customer = db.session.get(Customer, ticket.customer_id)
    return {
        "number": ticket.number,
        "status": ticket.status,
        "customer": customer.name if customer else None,
        "product": ticket.product,
        "product_category": ticket.category,
    }


# -- operations ----------------------------------------------------------------------------------
@operation("create_repair_ticket")
def create_repair_ticket(
    ctx: OperationContext,
    customer_name: str,
    contact_email: str | None,
    contact_phone: str,
    product: str,
    product_category: str,
    serial_number: str,
    fault_description: str,
    purchase_date: str | None,
    location: str,
    address: str,
) -> dict[str, Any]:
    """Find or create the customer and contact, open the ticket (status `open`)."""
    existing = (
        db.session.scalar(select(RepairTicket).where(RepairTicket.instance_id == ctx.instance_id))
        if ctx.instance_id
        else None
    )
    if existing is not None:  # a retry of this step: the ticket is already open
        return _created(existing, ctx)
    problems = []
    if not _text(customer_name):
        problems.append(FieldError("customer_name", "a customer name is required"))
    if not _text(product):
        problems.append(FieldError("product", "the device is required"))
    if product_category not in CATEGORIES:
        problems.append(FieldError("product_category", f"must be one of {', '.join(CATEGORIES)}"))
    if location not in LOCATIONS:
        problems.append(FieldError("location", f"must be one of {', '.join(LOCATIONS)}"))
    elif location == "on_site" and not _text(address):
        problems.append(FieldError("address", "an on-site repair needs the site address"))
    if not _text(fault_description):
        problems.append(FieldError("fault_description", "describe the fault"))
    bought = None
    if purchase_date not in (None, ""):
        try:
            bought = parse_day(purchase_date, "purchase_date")
            if bought > ctx.now.date():
                problems.append(FieldError("purchase_date", f"{bought} lies in the future"))
        except InvalidData as exc:
            problems.extend(exc.errors)
    if problems:
        raise InvalidData(problems)
    email = _text(contact_email) or None
    phone = _text(contact_phone)
    customer = find_or_create_customer(
        customer_name, now=ctx.now, email=email, phone=phone or None, address=_text(address) or None
    )
    contact = _find_or_create_contact(customer, email, phone)
    ticket = RepairTicket(
        number="",
        customer_id=customer.id,
        contact_id=contact.id if contact else None,
        product=_text(product),
        category=product_category,
        serial=_text(serial_number),
        fault=_text(fault_description),
        purchase_date=bought,
        location=location,
        address=_text(address),
        status="open",
        parts_needed=[],
        parts_issued=[],
        parts_missing=[],
        parts_used=[],
        instance_id=ctx.instance_id or None,
        created_at=ctx.now,
        updated_at=ctx.now,
        dispatch_due_at=ctx.now + DISPATCH_SLA,
        repair_due_at=ctx.now + REPAIR_SLA,
    )
    ticket.number = next_number("RT", ctx.now)
    db.session.add(ticket)
    _event(
        ticket,
        "opened",
        ctx,
        _actor(ctx),
        customer=customer.name,
        product=ticket.product,
        category=ticket.category,
        serial=ticket.serial,
        fault=ticket.fault,
        purchase_date=bought,
        location=location,
    )
    return _created(ticket, ctx)


def _created(ticket: RepairTicket, ctx: OperationContext) -> dict[str, Any]:
    days = (ctx.now.date() - ticket.purchase_date).days if ticket.purchase_date else None
    return {
        **_summary(ticket),
        "days_since_purchase": days,
        "created_at": _aware(ticket.created_at).isoformat(),
        "dispatch_due_at": _aware(ticket.dispatch_due_at).isoformat(),
        "repair_due_at": _aware(ticket.repair_due_at).isoformat(),
    }


def _find_or_create_contact(customer: Customer, email: str | None, phone: str) -> Contact | None:
    if not email and not phone:
        return None
    match = Contact.email == email if email else Contact.phone == phone
    contact = db.session.scalar(select(Contact).where(Contact.customer_id == customer.id, match).limit(1))
    if contact is None:
        contact = Contact(customer_id=customer.id, name=customer.name, email=email, phone=phone or None)
        db.session.add(contact)
        db.session.flush()
    elif phone and not contact.phone:
        contact.phone = phone
    return contact


@operation("assign_ticket")
def assign_ticket(
    ctx: OperationContext, ticket_number: str, technician: str, scheduled_at: str, notes: str | None = None
) -> dict[str, Any]:
    """Give the ticket to a technician for a slot; tell them (and the on-site customer)."""
    ticket = ticket_by_number(ticket_number)
    username = _text(technician)
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise InvalidData([FieldError("technician", f"{username!r} is not an active user")])
    if "technician" not in user.roles:
        raise InvalidData([FieldError("technician", f"{username} does not hold the technician role")])
    slot = _parse_moment(scheduled_at, "scheduled_at")
    if ticket.status not in ("open", "dispatched"):
        raise InvalidState(f"repair ticket {ticket.number} is {ticket.status}; it cannot be dispatched again")
    same = ticket.technician == username and ticket.scheduled_at and _aware(ticket.scheduled_at) == slot
    if not same:
        previous = ticket.technician
        ticket.technician, ticket.scheduled_at = username, slot
        ticket.dispatch_notes = _text(notes)
        ticket.status = "dispatched"
        if ticket.dispatched_at is None:
            ticket.dispatched_at = ctx.now
        _event(
            ticket,
            "dispatched",
            ctx,
            _actor(ctx, "dispatch_ticket"),
            technician=username,
            previous_technician=previous,
            scheduled_at=slot,
            notes=ticket.dispatch_notes,
            within_sla=_aware(ticket.dispatched_at) <= _aware(ticket.dispatch_due_at),
        )
    where = ticket.address if ticket.location == "on_site" else "the workshop"
    when = slot.strftime("%Y-%m-%d %H:%M %Z")
    if user.email:
        _notify(
            user.email,
            f"Repair {ticket.number} is yours: {ticket.product}",
            f"You are scheduled for repair ticket {ticket.number} on {when} at {where}.\n\n"
            f"Device: {ticket.product} {ticket.serial}\nFault: {ticket.fault}\n"
            f"Notes: {ticket.dispatch_notes or '-'}\n",
            ctx,
            "repair_assignment",
            f"repair:{ticket.number}:assigned:{username}:{slot.isoformat()}",
        )
    contact = db.session.get(Contact, ticket.contact_id) if ticket.contact_id else None
    if ticket.location == "on_site" and contact is not None and contact.email:
        _notify(
            contact.email,
            f"Your repair {ticket.number}: technician visit on {when}",
            f"Our technician will visit you on {when} at {ticket.address} to repair your "
            f"{ticket.product}. Your ticket number is {ticket.number}.\n",
            ctx,
            "repair_visit",
            f"repair:{ticket.number}:visit:{slot.isoformat()}",
        )
    return {**_summary(ticket), "technician": username, "scheduled_at": slot.isoformat()}


@operation("record_diagnosis")
def record_diagnosis(
    ctx: OperationContext,
    ticket_number: str,
    findings: str,
    estimate_amount: str,
    parts_needed: list[dict[str, Any]] | None,
    chargeable: bool,
) -> dict[str, Any]:
    """Store the findings, the estimate and the parts needed."""
    ticket = ticket_by_number(ticket_number)
    problems: list[FieldError] = []
    estimate = None
    try:
        estimate = money(to_decimal(estimate_amount, "estimate_amount", minimum=Decimal(0)))
    except InvalidData as exc:
        problems.extend(exc.errors)
    if not _text(findings):
        problems.append(FieldError("findings", "describe what is wrong"))
    try:
        parts = _part_lines(parts_needed or [], "parts_needed")
    except InvalidData as exc:
        problems.extend(exc.errors)
    if problems:
        raise InvalidData(problems)
    if ticket.status in ("closed",):
        raise InvalidState(f"repair ticket {ticket.number} is closed")
    ticket.findings = _text(findings)
    ticket.estimate = estimate
    ticket.chargeable = bool(chargeable)
    ticket.parts_needed = _plain_parts(parts)
    ticket.status = "diagnosed"
    ticket.diagnosed_at = ctx.now
    _event(
        ticket,
        "diagnosed",
        ctx,
        _actor(ctx, "diagnose_fault"),
        findings=ticket.findings,
        estimate=estimate,
        chargeable=ticket.chargeable,
        parts_needed=ticket.parts_needed,
    )
    return {
        **_summary(ticket),
        "chargeable": bool(chargeable),
        "estimate_total": money_text(estimate),
        "parts_needed": bool(parts),
    }


@operation("record_parts_issue")
def record_parts_issue(
    ctx: OperationContext,
    ticket_number: str,
    issued: list[dict[str, Any]] | None,
    missing: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Book the parts handed to the technician out of stock; price what must be purchased."""
    ticket = ticket_by_number(ticket_number)
    if ticket.status == "closed":
        raise InvalidState(f"repair ticket {ticket.number} is closed")
    problems: list[FieldError] = []
    given: list[tuple[Product, Decimal]] = []
    lacking: list[tuple[Product, Decimal]] = []
    for field, value, into in (("issued", issued, given), ("missing", missing, lacking)):
        try:
            into.extend(_part_lines(value or [], field))
        except InvalidData as exc:
            problems.extend(exc.errors)
    if problems:
        raise InvalidData(problems)
    # one issue per pass: the first, and one after each delivery of purchased parts
    delivery = ctx.data.get("parts_delivery") or {}
    key = f"{ctx.instance_id}/{ctx.task_spec_id}/{delivery.get('receipt_number') or 'stock'}"
    done = next((e for e in ticket.parts_issued if e.get("key") == key), None) if ctx.instance_id else None
    if done is None:
        _book_out(given)
        entry = {"key": key, "at": ctx.now.isoformat(), "lines": _plain_parts(given)}
        ticket.parts_issued = [*ticket.parts_issued, entry]
        ticket.parts_missing = _plain_parts(lacking)
        ticket.status = "waiting_parts" if lacking else "diagnosed"
        _event(
            ticket,
            "parts_issued",
            ctx,
            _actor(ctx, "issue_parts"),
            issued=entry["lines"],
            missing=ticket.parts_missing,
            after_delivery=delivery.get("receipt_number"),
        )
    missing_lines = [
        {"product": p.code, "qty": _number(q), "unit_price": money_text(p.purchase_price)} for p, q in lacking
    ]
    needed_by = max(_aware(ticket.created_at).date() + REPAIR_SLA, ctx.now.date() + timedelta(days=1))
    return {
        **_summary(ticket),
        "issued_lines": _plain_parts(given),
        "missing_count": len(missing_lines),
        "missing_lines": missing_lines,
        "needed_by": needed_by.isoformat(),
    }


def _qty(qty: Decimal) -> str:
    return format(qty.normalize(), "f")


def _number(qty: Decimal) -> int | float:
    """A quantity as the JSON number the purchase request form expects."""
    return int(qty) if qty == qty.to_integral_value() else float(qty)


def _book_out(parts: list[tuple[Product, Decimal]]) -> None:
    """Take the parts out of stock, all or none: a product with too few refuses the issue."""
    wanted: dict[int, tuple[Product, Decimal, int]] = {}
    for i, (product, qty) in enumerate(parts):
        _, total, first = wanted.get(product.id, (product, Decimal(0), i))
        wanted[product.id] = (product, total + qty, first)
    problems = []
    with db.session.begin_nested() as savepoint:
        for product, qty, i in wanted.values():
            booked: Any = db.session.execute(
                update(Product)
                .where(Product.id == product.id, Product.stock >= qty)
                .values(stock=Product.stock - qty)
                .execution_options(synchronize_session=False)
            )
            if booked.rowcount != 1:
                problems.append((product, qty, i))
        if problems:
            savepoint.rollback()
    for product, _, _ in wanted.values():
        db.session.expire(product, ["stock"])
    if problems:
        raise InvalidData(
            [
                FieldError(
                    f"issued/{i}/qty",
                    f"{product.code}: {_qty(qty)} wanted, only {_qty(product.stock)} in stock",
                )
                for product, qty, i in problems
            ]
        )


@operation("record_repair")
def record_repair(
    ctx: OperationContext,
    ticket_number: str,
    parts_used: list[dict[str, Any]] | None,
    labour_hours: Any,
    work_done: str,
) -> dict[str, Any]:
    """Store the work done, the parts built in and the labour; the ticket is `repaired`."""
    ticket = ticket_by_number(ticket_number)
    problems: list[FieldError] = []
    hours = None
    try:
        hours = to_decimal(labour_hours, "labour_hours", minimum=Decimal(0), maximum=Decimal(1000))
    except InvalidData as exc:
        problems.extend(exc.errors)
    try:
        used = _part_lines(parts_used or [], "parts_used")
    except InvalidData as exc:
        problems.extend(exc.errors)
    if not _text(work_done):
        problems.append(FieldError("work_done", "describe the work done"))
    if problems:
        raise InvalidData(problems)
    if ticket.status == "closed":
        raise InvalidState(f"repair ticket {ticket.number} is closed")
    ticket.parts_used = _plain_parts(used)
    ticket.labour_hours = hours
    ticket.work_done = _text(work_done)
    ticket.status = "repaired"
    if ticket.repaired_at is None:
        ticket.repaired_at = ctx.now
    _event(
        ticket,
        "repaired",
        ctx,
        _actor(ctx, "repair_device"),
        parts_used=ticket.parts_used,
        labour_hours=hours,
        work_done=ticket.work_done,
        within_sla=_aware(ticket.repaired_at) <= _aware(ticket.repair_due_at),
    )
    return {**_summary(ticket), "labour_hours": str(hours)}


@operation("get_repair_status")
def get_repair_status(ctx: OperationContext, ticket_number: str) -> dict[str, Any]:
    """Read only: is the repair still outstanding (neither repaired nor closed)?"""
    ticket = ticket_by_number(ticket_number)
    return {
        **_summary(ticket),
        "sla_breached": ticket.status not in DONE,
        "technician": ticket.technician,
        "repair_due_at": _aware(ticket.repair_due_at).isoformat(),
    }


@operation("record_hand_back")
def record_hand_back(
    ctx: OperationContext,
    ticket_number: str,
    handed_back_on: str,
    handed_back_to: str,
) -> dict[str, Any]:
    """The repaired device is back with the customer: record when and to whom (and the hand-back
    form's optional `note`, from the task data); the ticket is `handed_back` until it is closed."""
    ticket = ticket_by_number(ticket_number)
    problems: list[FieldError] = []
    day = None
    try:
        day = parse_day(handed_back_on, "handed_back_on")
    except InvalidData as exc:
        problems.extend(exc.errors)
    to = _text(handed_back_to)
    if not to:
        problems.append(FieldError("handed_back_to", "who took the device back?"))
    if problems:
        raise InvalidData(problems)
    assert day is not None
    if ticket.status == "closed":
        raise InvalidState(f"repair ticket {ticket.number} is closed")
    retry = (ticket.status, ticket.handed_back_on, ticket.handed_back_to) == ("handed_back", day, to)
    if not retry:
        previous = ticket.status
        ticket.handed_back_on, ticket.handed_back_to = day, to
        ticket.status = "handed_back"
        _event(
            ticket,
            "handed_back",
            ctx,
            _actor(ctx, "hand_back", "hand_back_on_site"),
            on=day,
            to=to,
            note=_text(ctx.data.get("note")),
            previous=previous,
        )
    return {**_summary(ticket), "handed_back_on": day.isoformat(), "handed_back_to": to}


@status_setter(DOCUMENT)
def set_ticket_status(number: str, status: str, reason: str | None, ctx: OperationContext) -> dict[str, Any]:
    """Set a ticket's status with a reason; closing after a hand-back records the hand-back."""
    if status not in STATUSES:
        raise InvalidData([FieldError("status", f"{status!r} is not a repair ticket status")])
    ticket = ticket_by_number(number)
    who = _actor(ctx, "hand_back", "hand_back_on_site", "approve_estimate", "revise_request")
    handed_on = ctx.data.get("handed_back_on")
    if status == "closed" and handed_on and ticket.handed_back_on is None:
        ticket.handed_back_on = parse_day(handed_on, "handed_back_on")
        ticket.handed_back_to = _text(ctx.data.get("collected_by") or ctx.data.get("accepted_by")) or None
        _event(
            ticket,
            "handed_back",
            ctx,
            who,
            on=ticket.handed_back_on,
            to=ticket.handed_back_to,
            note=_text(ctx.data.get("note")),
        )
    if ticket.status != status:
        previous = ticket.status
        ticket.status = status
        if status == "closed":
            ticket.closed_at, ticket.closed_reason = ctx.now, _text(reason) or None
        _event(ticket, "status_changed", ctx, who, previous=previous, status=status, reason=_text(reason))
    return {**_summary(ticket), "status": ticket.status}


# -- for invoicing and reports -----------------------------------------------------------------------
def invoice_lines(ticket_number: str, kind: str) -> tuple[str, str, list[dict[str, Any]]]:
    """(customer name, currency, lines) to invoice a ticket: `repair` charges the parts used at
    the catalogue price plus the labour hours at LABOUR_RATE; `diagnosis_fee` one DIAGNOSIS_FEE line.
    Lines are dicts of product, qty, unit_price and tax_rate (Decimals)."""
    if kind not in INVOICE_KINDS:
        raise InvalidData([FieldError("kind", f"{kind!r} is not one of {', '.join(INVOICE_KINDS)}")])
    ticket = ticket_by_number(ticket_number)
    customer = db.session.get(Customer, ticket.customer_id)
    if customer is None:  # pragma: no cover - the foreign key prevents it
        raise NotFound(f"repair ticket {ticket_number} has no customer")
    if kind == "diagnosis_fee":
        lines = [
            {
                "product": DIAGNOSIS_FEE_TEXT,
                "qty": Decimal(1),
                "unit_price": DIAGNOSIS_FEE,
                "tax_rate": DIAGNOSIS_FEE_TAX_RATE,
            }
        ]
        return customer.name, customer.currency, lines
    if not ticket.chargeable:
        raise InvalidState(f"repair ticket {ticket.number} is under warranty: nothing to invoice")
    if ticket.status not in DONE:
        raise InvalidState(f"repair ticket {ticket.number} is {ticket.status}, not repaired yet")
    lines = []
    for part in ticket.parts_used:
        product = product_by_code(part["product"])
        lines.append(
            {
                "product": product.code,
                "qty": Decimal(part["qty"]),
                "unit_price": product.unit_price,
                "tax_rate": product.tax_rate,
            }
        )
    if ticket.labour_hours:
        lines.append(
            {
                "product": LABOUR_TEXT,
                "qty": ticket.labour_hours,
                "unit_price": LABOUR_RATE,
                "tax_rate": LABOUR_TAX_RATE,
            }
        )
    return customer.name, customer.currency, lines


@dataclass(frozen=True)
class SlaBreach:
    number: str
    customer: str
    kind: str  # "dispatch" (not dispatched within 4 hours) or "repair" (not repaired within 5 days)
    status: str
    technician: str | None
    due_at: datetime
    overdue_by: timedelta


def sla_breaches(now: datetime) -> list[SlaBreach]:
    """Tickets breaching a service level at `now`: not dispatched 4 hours after intake, or not
    repaired 5 days after intake. Closed tickets are history, not breaches. Oldest first."""
    rows = db.session.execute(
        select(RepairTicket, Customer.name)
        .join(Customer, Customer.id == RepairTicket.customer_id)
        .where(
            RepairTicket.status != "closed",
            or_(
                (RepairTicket.dispatched_at.is_(None)) & (RepairTicket.dispatch_due_at < now),
                (RepairTicket.repaired_at.is_(None)) & (RepairTicket.repair_due_at < now),
            ),
        )
        .order_by(RepairTicket.created_at, RepairTicket.id)
    ).all()
    breaches = []
    for ticket, customer in rows:
        for kind, due, done in (
            ("dispatch", ticket.dispatch_due_at, ticket.dispatched_at),
            ("repair", ticket.repair_due_at, ticket.repaired_at),
        ):
            if done is None and _aware(due) < now:
                breaches.append(
                    SlaBreach(
                        ticket.number,
                        customer,
                        kind,
                        ticket.status,
                        ticket.technician,
                        _aware(due),
                        now - _aware(due),
                    )
                )
    return breaches
